"""Configuration contract: where the config comes from, and one clear line for each mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import build_release, write_config
from support.doit import run_doit
from pvwtasks import config
from pvwtasks.errors import ConfigError

GOOD = """
[deploy]
root = "deploy"
[source]
url = "releases/x.tar.gz"
"""


def load_text(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "pvw.toml"
    path.write_text(text)
    return config.load(path)


def test_defaults_and_relative_paths(tmp_path):
    settings = load_text(tmp_path, GOOD)
    assert settings.deploy.root == tmp_path / "deploy"
    assert settings.deploy.keep == 2
    assert settings.source.url == str(tmp_path / "releases" / "x.tar.gz")
    assert settings.launcher.apps == {}  # no apps named: the release family's bundled apps
    assert settings.launcher.health_app == ""
    assert settings.cron.update == "0 4 * * 1" and settings.cron.logrotate == "55 3 * * 1"


def test_shipped_default_config_is_valid():
    settings = config.load(config.DEFAULT_CONFIG)
    assert settings.notify.method == "none"


@pytest.mark.parametrize("text, expected", [
    ("[deploy]\nkeep = 2\n[source]\nurl = 'x'\n", "[deploy] root: missing required key"),
    (GOOD + "urll = 'y'\n", "[source] urll: unknown key (did you mean 'url'?)"),
    (GOOD.replace("[deploy]\n", "[deploy]\nkeep = 'two'\n"), "[deploy] keep: expected int, got str 'two'"),
    (GOOD + "[sourse]\nurl = 'x'\n", "[sourse]: unknown section (did you mean 'source'?)"),
    (GOOD + "[launcher]\nport_range = [1, 'b']\n", "[launcher] port_range: expected a list of int"),
    (GOOD + "sha256 = 'abc'\n", "[source] sha256: expected 64 hex digits"),
    (GOOD + "pattern = 'x'\n", "[source] pattern: only used together with [source] listing"),
    (GOOD + "listing = 'l.txt'\npattern = 'x'\n", "[source] url: set either url, or listing with pattern"),
    ("[deploy]\nroot = 'd'\n[source]\nlisting = 'l.txt'\npattern = '('\n", "[source] pattern: not a valid regex"),
    (GOOD + "[notify]\nmethod = 'smtp'\n", "[notify] to: needs at least one address"),
    (GOOD + "[launcher.apps.viewer]\nargs = []\n", "[launcher.apps.viewer] script: set either script or module"),
    ("[deploy\nroot=1", "not valid TOML"),
])
def test_bad_config_gives_one_line_naming_file_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    message = str(err.value)
    assert expected in message
    assert message.startswith(str(tmp_path / "pvw.toml"))
    assert "\n" not in message


@pytest.mark.parametrize("text, expected", [
    (GOOD + "[launcher]\ntimeout = -5\n", "[launcher] timeout: must be greater than 0, got -5"),
    (GOOD + "[launcher]\nport = 0\n", "[launcher] port: must be at least 1, got 0"),
    (GOOD + "[launcher]\nport = 70000\n", "[launcher] port: must be at most 65535, got 70000"),
    (GOOD + "[launcher]\nport_range = [9200, 9100]\n", "[launcher] port_range: expected [first, last] ports in order"),
    (GOOD + "[launcher]\nport_range = [9100, 70000]\n", "[launcher] port_range: must be at most 65535"),
    (GOOD + "[launcher]\nstart_timeout = 0\n", "[launcher] start_timeout: must be greater than 0"),
    (GOOD.replace("[deploy]\n", "[deploy]\nkeep = 0\n"), "[deploy] keep: must be greater than 0, got 0"),
    (GOOD + "retries = -1\n", "[source] retries: must be at least 0"),
    (GOOD + "timeout = 0\n", "[source] timeout: must be greater than 0"),
    (GOOD + "[cron]\nupdate = '0 4 * *'\n", "[cron] update: expected 5 schedule fields"),
    (GOOD + "[cron]\nupdate = '0 25 * * 1'\n", "[cron] update: '25' is out of range 0-23"),
    (GOOD + "[cron]\nupdate = '0 4 * * funday'\n", "[cron] update: 'funday' is out of range 0-7"),
    (GOOD + "[cron]\nlogrotate = '*/x 4 * * 1'\n", "[cron] logrotate: '*/x' is not a cron field"),
    (GOOD + "[notify]\nto = ['ops at example.org']\n", "[notify] to: expected a mail address"),
    (GOOD + "[notify]\nfrom = 'pvw@'\n", "[notify] from: expected a mail address"),
    (GOOD + "[notify]\nmethod = 'pigeon'\n", "[notify] method: expected 'none', 'smtp' or 'sendmail', got 'pigeon'"),
    (GOOD + "[notify]\nsecurity = 'ssl'\n", "[notify] security: expected 'none', 'starttls' or 'tls'"),
    (GOOD + "[web]\nhttps_port = -1\n", "[web] https_port: must be at least 1"),
    (GOOD + "[logrotate]\ncreate_mode = '0999'\n", "[logrotate] create_mode: expected an octal mode"),
    (GOOD + "[launcher.apps.viewer]\nscript = 'v.py'\nready_line = ''\n", "[launcher.apps.viewer] ready_line"),
])
def test_out_of_range_value_gives_one_line_naming_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_valid_schedules_and_addresses_are_accepted(tmp_path):
    settings = load_text(tmp_path, GOOD + "[cron]\nupdate = '*/15 1-5 * jan-dec mon,wed'\nlogrotate = '@daily'\n"
                                          "[notify]\nto = ['ops@lab.example.org', 'x@localhost']\n")
    assert settings.cron.update.startswith("*/15") and settings.notify.to[1] == "x@localhost"


def test_path_keys_are_paths_resolved_against_the_config_folder(tmp_path):
    settings = load_text(tmp_path, GOOD + "[web]\ntls_certificate = 'tls/c.pem'\ntls_key = 'tls/k.pem'\n"
                                          "[notify]\npassword_file = 'pw'\nuser = 'u'\n")
    assert settings.web.tls_certificate == tmp_path / "tls" / "c.pem"
    assert settings.notify.password_file == tmp_path / "pw"
    assert settings.web.tls and isinstance(settings.web.sites_dir, Path)
    assert load_text(tmp_path, GOOD).web.tls_certificate is None


@pytest.mark.parametrize("mistake", [
    ("root = ", "rooot = "),
    ("keep = 2", "keep = true"),
    ("[source]", "[sorce]"),
])
def test_bad_config_through_doit_exits_nonzero_and_touches_nothing(tmp_path, mistake):
    config_path = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root")
    config_path.write_text(config_path.read_text().replace(*mistake))
    before = sorted(os.listdir(tmp_path))

    result = run_doit(config_path, "update")

    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(config_path) in lines[0]
    assert sorted(os.listdir(tmp_path)) == before  # no root, no dep file


def test_config_chosen_by_environment_variable(tmp_path):
    (tmp_path / "rel").mkdir()
    release = build_release(tmp_path / "rel")
    chosen = write_config(tmp_path / "chosen.toml", str(release), tmp_path / "chosen-root")
    import subprocess
    import sys

    from support.doit import DODO

    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "install", "publish_hash"],
                          env={**os.environ, "PVW_CONFIG": str(chosen)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "chosen-root" / "www" / "hash.json").is_file()


def test_two_deployments_from_one_checkout_keep_separate_task_state(tmp_path):
    (tmp_path / "rel").mkdir()
    release = build_release(tmp_path / "rel")
    first = write_config(tmp_path / "a.toml", str(release), tmp_path / "a")
    second = write_config(tmp_path / "b.toml", str(release), tmp_path / "b")
    assert run_doit(first, "install", "publish_hash").returncode == 0
    # The second deployment's tasks are not up to date just because the first ran.
    result = run_doit(second, "install", "publish_hash")
    assert result.returncode == 0
    assert ".  install\n" in result.stdout
    assert (tmp_path / "a" / ".pvwtasks" / "doit-deps.sqlite3").is_file()
    assert (tmp_path / "b" / ".pvwtasks" / "doit-deps.sqlite3").is_file()
    assert run_doit(first, "install", "publish_hash").stdout.count("-- install") == 1


def test_a_config_error_never_shows_a_password(tmp_path):
    config_path = write_config(tmp_path / "pvw.toml", "x", tmp_path / "root")
    config_path.write_text(config_path.read_text().replace('url = "x"', 'url = ["https://user:s3cr@t@example.org/x"]'))
    result = run_doit(config_path, "update")
    assert result.returncode == 3
    assert "[source] url" in result.stderr
    assert "s3cr" not in result.output and "t@example" not in result.output


def test_redaction_hides_the_whole_password_even_with_an_at_sign():
    from pvwtasks.runlog import redact_text

    assert redact_text("get https://u:p@ss@host/x.tar.gz now") == "get https://***@host/x.tar.gz now"
    assert redact_text("http://host/a@b and http://:pw@h/x") == "http://host/a@b and http://***@h/x"
