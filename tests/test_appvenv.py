"""The companion venv, built for real from PyPI: reuse without pip, a new key beside, failures, vtk, cross-minor."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from pvwtasks import appvenv
from pvwtasks.errors import VenvError
from pvwtasks.layout import Layout, VenvRecord
from support.venvs import HOST_MINOR, host_interpreter_path, pip_cache, subprocess_audit  # noqa: F401

pytestmark = pytest.mark.timeout(600)
OTHER_MINOR = "3.12" if HOST_MINOR != "3.12" else "3.11"


def _spec(*requirements: str, **kwargs) -> appvenv.VenvSpec:
    return appvenv.VenvSpec(HOST_MINOR, tuple(requirements), **kwargs)


def test_host_minor_venv_is_built_reused_without_pip_and_a_new_set_goes_beside(tmp_path, pip_cache):
    layout = Layout(tmp_path / "root")
    first = appvenv.ensure_venv(layout, _spec("trame-client==4.1.4"), search_path=host_interpreter_path(),
                                cache_dir=pip_cache)
    assert first.action == "built"
    assert first.record.mode == "venv"
    assert first.path == layout.venvs / first.record.key
    assert first.record.key.startswith(f"py{HOST_MINOR}-")
    assert (first.path / f"lib/python{HOST_MINOR}/site-packages/trame_client").is_dir()
    assert "trame-client==4.1.4" in first.record.packages
    assert VenvRecord.load(layout.venv_record(first.record.key)) == first.record
    # Renamed into place: the venv's own Python runs from its final folder.
    proc = subprocess.run([str(first.path / "bin/python"), "-c", "import sys, trame_client; print(sys.prefix)"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == first.path
    assert not [p for p in layout.venvs.iterdir() if p.name.startswith(".")]

    audit = subprocess_audit()
    with audit:
        again = appvenv.ensure_venv(layout, _spec("trame-client==4.1.4"), search_path=host_interpreter_path(),
                                    cache_dir=pip_cache)
    assert again.action == "reused"
    assert again.record.key == first.record.key
    assert audit.started == []  # no pip, no interpreter probe: nothing ran

    changed = appvenv.ensure_venv(layout, _spec("trame-client==4.1.3"), search_path=host_interpreter_path(),
                                  cache_dir=pip_cache)
    assert changed.action == "built"
    assert changed.record.key != first.record.key
    assert set(appvenv.built_venvs(layout)) == {first.record.key, changed.record.key}
    assert (first.path / f"lib/python{HOST_MINOR}/site-packages/trame_client").is_dir()

    assert appvenv.prune(layout, [changed.record.key]) == [first.record.key]
    assert not first.path.exists()
    assert set(appvenv.built_venvs(layout)) == {changed.record.key}


def test_unknown_requirement_fails_with_one_line_naming_it_and_nothing_counts_as_built(tmp_path, pip_cache):
    layout = Layout(tmp_path / "root")
    with pytest.raises(VenvError) as caught:
        appvenv.ensure_venv(layout, _spec("trame-client==4.1.4", "pvwtasks-no-such-package==1"),
                            interpreter=None, cache_dir=pip_cache)
    message = str(caught.value)
    assert "pvwtasks-no-such-package==1" in message
    assert "\n" not in message
    assert appvenv.built_venvs(layout) == {}
    assert not layout.venvs.exists() or list(layout.venvs.iterdir()) == []


def test_vtk_is_refused_unless_allowed(tmp_path, pip_cache):
    layout = Layout(tmp_path / "root")
    with pytest.raises(VenvError, match=r"'vtk'.*allow_vtk") as caught:
        appvenv.ensure_venv(layout, _spec("vtk==9.5.2"), interpreter=None, cache_dir=pip_cache)
    assert "\n" not in str(caught.value)
    assert appvenv.built_venvs(layout) == {}
    assert not layout.venvs.exists() or list(layout.venvs.iterdir()) == []


def test_cross_minor_build_fills_the_release_minor_site_packages(tmp_path, pip_cache):
    layout = Layout(tmp_path / "root")
    no_python_here = str(tmp_path / "empty-path")  # no python3.X on this PATH: pip --target for the other minor
    Path(no_python_here).mkdir()
    result = appvenv.ensure_venv(layout, appvenv.VenvSpec(OTHER_MINOR, ("trame-client==4.1.4", "msgpack==1.1.0")),
                                 search_path=no_python_here, cache_dir=pip_cache)
    assert result.action == "built"
    assert result.record.mode == "target"
    assert result.record.launcher_python == sys.executable
    site = result.path / f"lib/python{OTHER_MINOR}/site-packages"
    assert result.site_packages == site
    assert (site / "trame_client").is_dir()
    tag = OTHER_MINOR.replace(".", "")
    assert list((site / "msgpack").glob(f"_cmsgpack.cpython-{tag}-*.so")), list((site / "msgpack").iterdir())
    assert not (result.path / f"lib/python{HOST_MINOR}").exists()
    assert not list(site.rglob("*.pyc"))  # never compiled by the host's Python


def test_interrupted_builds_never_count_and_are_removed(tmp_path):
    layout = Layout(tmp_path / "root")
    half = layout.venvs / f"{appvenv.BUILDING_PREFIX}py3.12-0123456789abcdef-999999999"
    renamed_without_record = layout.venv_dir("py3.12-fedcba9876543210")
    for folder in (half, renamed_without_record):
        (folder / "lib/python3.12/site-packages").mkdir(parents=True)
    assert appvenv.built_venvs(layout) == {}
    assert sorted(appvenv.remove_leftovers(layout)) == sorted([half.name, renamed_without_record.name])
    assert list(layout.venvs.iterdir()) == []


def test_index_credentials_never_reach_the_log_or_the_error(tmp_path, pip_cache, http_server, caplog):
    layout = Layout(tmp_path / "root")
    index = http_server.url("simple").replace("http://", "http://pvw-user:s3cret-token@")
    caplog.set_level(logging.DEBUG, logger="pvwtasks")
    with pytest.raises(VenvError) as caught:
        appvenv.ensure_venv(layout, _spec("pvwtasks-no-such-package==1", index_url=index), interpreter=None,
                            cache_dir=pip_cache)
    assert "pvwtasks-no-such-package==1" in str(caught.value)
    assert "s3cret-token" not in str(caught.value)
    assert "s3cret-token" not in caplog.text
    assert "pvw-user:***@" not in caplog.text and "://***@127.0.0.1" in caplog.text
    assert any("/simple/pvwtasks-no-such-package/" in path for _m, path, _h in http_server.log)


@pytest.mark.parametrize("output, expected", [
    ("ERROR: Could not find a version that satisfies the requirement foo==9 (from versions: 1)\n"
     "ERROR: No matching distribution found for foo==9\n", "'foo==9'"),
    ("ERROR: Invalid requirement: 'foo=>1'\n", "'foo=>1'"),
    ("ERROR: Cannot install a==1 and b==2 because these package versions have conflicting dependencies.\n"
     "The conflict is caused by:\n    a 1 depends on c==1\n    b 2 depends on c==2\n"
     "ERROR: ResolutionImpossible: for help visit ...\n", "a 1 depends on c==1"),
    ("WARNING: Location 'file:///x' is ignored\nERROR: something else broke\n", "ERROR: something else broke"),
])
def test_pip_failure_names_the_requirement(output, expected):
    reason = appvenv.pip_failure(output)
    assert expected in reason
    assert "\n" not in reason


def test_redact_hides_url_credentials():
    assert appvenv.redact("--index-url https://me:pw@host/simple x") == "--index-url https://***@host/simple x"
    assert appvenv.redact("https://host/simple") == "https://host/simple"


def test_key_follows_the_resolved_set_not_its_order():
    a = [appvenv.Resolved("b", "1"), appvenv.Resolved("a", "2")]
    assert appvenv.venv_key("3.12", a) == appvenv.venv_key("3.12", list(reversed(a)))
    assert appvenv.venv_key("3.12", a) != appvenv.venv_key("3.10", a)
    assert appvenv.venv_key("3.12", a) != appvenv.venv_key("3.12", [appvenv.Resolved("b", "1"),
                                                                     appvenv.Resolved("a", "2", local="ff")])


def test_a_local_folder_requirement_is_hashed_by_content_and_left_untouched(tmp_path, pip_cache):
    app = tmp_path / "lab-app"
    (app / "lab_app").mkdir(parents=True)
    (app / "lab_app" / "__init__.py").write_text("VALUE = 1\n")
    (app / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=61"]\n'
                                        'build-backend = "setuptools.build_meta"\n'
                                        '[project]\nname = "lab-app"\nversion = "1.0"\n')
    layout = Layout(tmp_path / "root")
    spec = appvenv.VenvSpec(OTHER_MINOR, (str(app),))
    first = appvenv.ensure_venv(layout, spec, interpreter=None, cache_dir=pip_cache)
    line, = first.record.packages
    assert line == f"lab-app==1.0 sha256:{appvenv.tree_sha256(app)}"
    assert (first.site_packages / "lab_app/__init__.py").read_text() == "VALUE = 1\n"
    assert sorted(p.name for p in app.iterdir()) == ["lab_app", "pyproject.toml"]  # pip built a copy
    (app / "lab_app" / "__init__.py").write_text("VALUE = 2\n")  # same version, new content: a new venv
    second = appvenv.ensure_venv(layout, spec, interpreter=None, cache_dir=pip_cache)
    assert second.action == "built" and second.record.key != first.record.key
    assert (second.site_packages / "lab_app/__init__.py").read_text() == "VALUE = 2\n"


def test_a_build_killed_mid_pip_never_counts_and_the_next_run_builds(tmp_path, pip_cache):
    import os
    import signal
    import time

    import psutil

    from conftest import end_processes

    layout = Layout(tmp_path / "root")
    requirements = ("trame-client==4.1.4", "msgpack==1.1.0")
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
              "from pathlib import Path\nfrom pvwtasks import appvenv\nfrom pvwtasks.layout import Layout\n"
              f"appvenv.ensure_venv(Layout(Path({str(layout.root)!r})), appvenv.VenvSpec({OTHER_MINOR!r}, "
              f"{requirements!r}), interpreter=None, cache_dir=Path({str(pip_cache)!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def installing() -> bool:  # pip's install run (not the dry-run resolve) into the .building folder
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    cmd = child.cmdline()
                except psutil.Error:
                    continue
                if "--target" in cmd and "--dry-run" not in cmd and any(appvenv.BUILDING_PREFIX in a for a in cmd):
                    return True
            return False

        deadline = time.monotonic() + 120
        seen = False
        while time.monotonic() < deadline and proc.poll() is None and not seen:
            seen = installing()
            time.sleep(0.02)
        assert seen and proc.poll() is None, "pip's install run was not seen while the build was running"
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its pip, at once
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            parent = psutil.Process(proc.pid)
            end_processes([parent, *parent.children(recursive=True)], 5)
    assert appvenv.built_venvs(layout) == {}
    result = appvenv.ensure_venv(layout, appvenv.VenvSpec(OTHER_MINOR, requirements), interpreter=None,
                                 cache_dir=pip_cache)
    assert result.action == "built"
    assert sorted(p.name for p in layout.venvs.iterdir()) == [result.record.key]


def test_a_wheel_folder_alone_builds_offline_and_resolves_to_the_same_key(tmp_path, pip_cache):
    requirements = ("trame-client==4.1.4",)
    online = appvenv.ensure_venv(Layout(tmp_path / "online"), appvenv.VenvSpec(OTHER_MINOR, requirements),
                                 interpreter=None, cache_dir=pip_cache)
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels),
                           "--cache-dir", str(pip_cache), *requirements], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    offline_layout = Layout(tmp_path / "offline")
    spec = appvenv.VenvSpec(OTHER_MINOR, requirements, find_links=(wheels,))
    offline = appvenv.ensure_venv(offline_layout, spec, interpreter=None, cache_dir=tmp_path / "empty-cache")
    assert offline.action == "built"
    assert offline.record.key == online.record.key  # the same resolved set, wherever it came from
    assert (offline.site_packages / "trame_client").is_dir()
    # A requirement the folder lacks fails at once (no index asked) and is named.
    with pytest.raises(VenvError, match="msgpack==1.1.0"):
        appvenv.ensure_venv(offline_layout, appvenv.VenvSpec(OTHER_MINOR, (*requirements, "msgpack==1.1.0"),
                                                             find_links=(wheels,)),
                            interpreter=None, cache_dir=tmp_path / "empty-cache")
