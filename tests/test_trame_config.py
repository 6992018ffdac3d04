"""The [apps] section and [apps.NAME] tables, and how the trame apps become launcher commands (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvwtasks import config, families, trame
from pvwtasks.errors import ConfigError, InstallError
from pvwtasks.layout import ReleaseRecord

GOOD = "[deploy]\nroot = 'r'\n[source]\nurl = 'http://x/y.tar.gz'\n"
APPS = ("[apps]\nrequirements = ['trame==4.0.0']\nallow_vtk = false\n"
        "[apps.viewer]\nmodule = 'viewer'\nrequirements = ['./app']\nclient_modules = ['vtk']\n")


def _load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "pvw.toml"
    path.write_text(text)
    return config.load(path)


def test_apps_tables_sit_beside_the_shared_keys_and_local_requirements_resolve(tmp_path):
    settings = _load(tmp_path, GOOD + APPS)
    assert settings.apps.requirements == ["trame==4.0.0"]
    viewer = settings.apps.apps["viewer"]
    assert viewer.module == "viewer" and viewer.client == "vue3" and viewer.ready_line == "App running at"
    assert viewer.requirements == [str(tmp_path / "app")]
    assert trame.requirements(settings) == ("trame==4.0.0", str(tmp_path / "app"))


def test_no_apps_section_means_no_trame_apps(tmp_path):
    settings = _load(tmp_path, GOOD)
    assert settings.apps.apps == {} and not trame.configured(settings)


@pytest.mark.parametrize("text, expected", [
    (APPS.replace("allow_vtk", "allow_vkt"), "[apps] allow_vkt: unknown key (did you mean 'allow_vtk'?)"),
    (APPS.replace("module = 'viewer'", "modul = 'viewer'"), "[apps.viewer] modul: unknown key"),
    (APPS.replace("module = 'viewer'", "module = 'viewer'\nscript = 'v.py'"),
     "[apps.viewer] module: set exactly one of module, trame_app or script"),
    (APPS + "client = 'vue4'\n", "[apps.viewer] client: expected 'vue2' or 'vue3'"),
    (APPS.replace("[apps.viewer]", "[apps.index]"), "[apps.index]: a trame app's name is letters"),
    (APPS.replace("requirements = ['trame==4.0.0']", "requirements = []").replace("requirements = ['./app']",
                                                                                  "requirements = []"),
     "[apps] requirements: trame apps need requirements"),
    (APPS + "[launcher.apps.viewer]\nmodule = 'x'\n", "[apps.viewer]: also in [launcher.apps]"),
])
def test_bad_apps_config_is_one_line_naming_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, GOOD + text)
    assert expected in str(err.value) and "\n" not in str(err.value)


def _info(family: str) -> families.ReleaseInfo:
    return families.ReleaseInfo(family=family, paraview_version="6.1.0", python_version="3.12", variant="",
                                bundles_wslink=False, pvpython="bin/pvpython", pvpython_real="",
                                site_packages="lib/python3.12/site-packages", share_web="", server_apps=(),
                                static_apps=())


def _release(family: str, venv: str | None) -> ReleaseRecord:
    return ReleaseRecord("rel", "ParaView-6.1.0", "6.1.0", "0" * 64, "u", 1, 0.0, "bin/pvpython",
                         "lib/python3.12/site-packages", "3.12", info=_info(family).to_json(), venv=venv)


def test_trame_app_commands_are_kitwares(tmp_path):
    settings = _load(tmp_path, GOOD + APPS + "[apps.vis]\ntrame_app = 'pv_visualizer'\nargs = ['--data', '/d']\n")
    tree = tmp_path / "tree"
    specs = trame.app_specs(settings, _release(families.FAMILY_6, "py3.12-abc"), tree)
    venv = str(settings.layout.venv_dir("py3.12-abc"))
    tail = ["--host", "${host}", "--port", "${port}", "--authKey", "${secret}", "--server"]
    assert specs["viewer"].cmd == (str(tree / "bin/pvpython"), "--venv", venv, "-m", "viewer", *tail)
    assert specs["vis"].cmd == (str(tree / "bin/pvpython"), "--venv", venv, "-m", "paraview.apps.trame",
                                "--trame-app", "pv_visualizer", *tail, "--data", "/d")
    assert all(spec.ready_line == "App running at" for spec in specs.values())


@pytest.mark.parametrize("family", [families.LEGACY, families.FAMILY_5_6, families.FAMILY_5_10])
def test_trame_apps_on_a_release_without_venv_option_are_a_clear_error(tmp_path, family):
    settings = _load(tmp_path, GOOD + APPS)
    with pytest.raises(InstallError) as err:
        trame.app_specs(settings, _release(family, "py3.12-abc"), tmp_path)
    assert "pvpython --venv" in str(err.value) and "5.13" in str(err.value)


def test_a_release_without_its_venv_is_not_served(tmp_path):
    settings = _load(tmp_path, GOOD + APPS)
    with pytest.raises(InstallError, match="no companion venv"):
        trame.app_specs(settings, _release(families.FAMILY_6, None), tmp_path)
