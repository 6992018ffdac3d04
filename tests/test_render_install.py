"""`doit install_cron` / `uninstall_cron` / `install_vhost`: they touch only their own part of the system."""

from __future__ import annotations

import dataclasses
import os
import textwrap
from pathlib import Path

import pytest

from conftest import build_release
from support.doit import run_doit
from pvwtasks import apache, config, cron, render
from pvwtasks.errors import MissingProgram, RenderError
from support import tomlfile
from render_support import fake_crontab, httpd_conf, render_config, tls_files

pytestmark = pytest.mark.timeout(120)

OTHER_LINES = ["MAILTO=ops@example.org", "# someone else's job", "*/5 * * * * /usr/local/bin/backup --quiet"]


@pytest.fixture
def cron_setup(tmp_path, http_server):
    program, store, calls = fake_crontab(tmp_path / "fakecron")
    release = build_release(http_server.root)
    cfg = render_config(tmp_path, http_server.url(release.name), crontab=program)
    return {"config": cfg, "store": store, "calls": calls, "program": program, "url": http_server.url(release.name)}


def _writes(calls: Path) -> int:
    return calls.read_text().splitlines().count("-") if calls.exists() else 0


def test_install_cron_adds_only_its_block_and_keeps_other_lines(cron_setup):
    store, cfg = cron_setup["store"], cron_setup["config"]
    store.write_text("\n".join(OTHER_LINES) + "\n")
    result = run_doit(cfg, "install_cron")
    assert result.returncode == 0, result.output
    lines = store.read_text().splitlines()
    assert lines[:3] == OTHER_LINES
    root = config.load(cfg).layout.root
    begin, end = cron.cron_markers(config.load(cfg).layout)
    assert begin == f"# BEGIN pvwtasks {root}" and lines[3] == begin and lines[-1] == end
    body = [line for line in lines[4:-1] if not line.startswith("#")]
    assert len(body) == 4  # update, @reboot and watchdog (cron supervision), logrotate
    assert body[0].startswith("0 4 * * 1 ") and f"update config={cfg}" in body[0]
    assert body[1].startswith("@reboot ") and body[2].startswith("*/5 * * * * ") and "pvwtasks.watchdog" in body[2]
    assert body[3].startswith("55 3 * * 1 ") and "logrotate -s" in body[3]


def test_install_cron_twice_writes_once(cron_setup):
    assert run_doit(cron_setup["config"], "install_cron").returncode == 0
    before = cron_setup["store"].read_text()
    assert run_doit(cron_setup["config"], "install_cron").returncode == 0
    assert cron_setup["store"].read_text() == before
    assert _writes(cron_setup["calls"]) == 1


def test_install_cron_replaces_its_block_in_place_after_a_schedule_change(cron_setup):
    store, cfg = cron_setup["store"], cron_setup["config"]
    store.write_text(OTHER_LINES[0] + "\n")
    assert run_doit(cfg, "install_cron").returncode == 0
    store.write_text(store.read_text() + OTHER_LINES[2] + "\n")
    tomlfile.update(cfg, {"cron": {"update": "30 2 * * *"}})
    result = run_doit(cfg, "install_cron")
    assert result.returncode == 0, result.output
    lines = store.read_text().splitlines()
    assert lines[0] == OTHER_LINES[0] and lines[-1] == OTHER_LINES[2]
    assert sum(line.startswith("# BEGIN pvwtasks") for line in lines) == 1
    assert any(line.startswith("30 2 * * * ") for line in lines)
    assert not any(line.startswith("0 4 * * 1 ") for line in lines)


def test_two_deployments_keep_separate_blocks_and_uninstall_removes_only_its_own(cron_setup, tmp_path):
    store, cfg = cron_setup["store"], cron_setup["config"]
    store.write_text("\n".join(OTHER_LINES) + "\n")
    other_dir = tmp_path / "second"
    other_dir.mkdir()
    other = render_config(other_dir, cron_setup["url"], crontab=cron_setup["program"])
    assert run_doit(cfg, "install_cron").returncode == 0
    assert run_doit(other, "install_cron").returncode == 0
    text = store.read_text()
    assert text.count("# BEGIN pvwtasks") == 2 and f"# BEGIN pvwtasks {other_dir / 'root'}" in text
    result = run_doit(cfg, "uninstall_cron")
    assert result.returncode == 0, result.output
    lines = store.read_text().splitlines()
    assert lines[:3] == OTHER_LINES
    assert f"# BEGIN pvwtasks {tmp_path / 'root'}" not in lines
    assert f"# BEGIN pvwtasks {other_dir / 'root'}" in lines and f"# END pvwtasks {other_dir / 'root'}" in lines
    # Nothing left to remove: no write.
    writes = _writes(cron_setup["calls"])
    assert run_doit(cfg, "uninstall_cron").returncode == 0
    assert _writes(cron_setup["calls"]) == writes


def test_install_cron_into_an_empty_crontab(cron_setup):
    assert not cron_setup["store"].exists()
    assert run_doit(cron_setup["config"], "install_cron").returncode == 0
    assert cron_setup["store"].read_text().startswith("# BEGIN pvwtasks ")


def test_a_failing_crontab_program_fails_the_task_with_one_line(cron_setup, tmp_path):
    broken = tmp_path / "brokencron"
    broken.write_text("#!/bin/sh\necho 'crontab: cannot open spool' >&2\nexit 1\n")
    broken.chmod(0o755)
    cfg = cron_setup["config"]
    tomlfile.update(cfg, {"cron": {"crontab": str(broken)}})
    result = run_doit(cfg, "install_cron")
    assert result.returncode == 1
    assert "ERROR: install_cron:" in result.stderr and "cannot open spool" in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_crontab_program_says_how_to_install_it(cron_setup):
    cfg = cron_setup["config"]
    tomlfile.update(cfg, {"cron": {"crontab": "pvw-no-such-crontab"}})
    result = run_doit(cfg, "install_cron")
    assert result.returncode == 1
    assert "ERROR: install_cron: reading the crontab: the pvw-no-such-crontab program is missing" in result.stderr
    assert "apt-get install cron" in result.stderr
    assert "Traceback" not in result.output


def test_an_unterminated_block_is_left_alone(cron_setup):
    settings = config.load(cron_setup["config"])
    begin, _end = cron.cron_markers(settings.layout)
    cron_setup["store"].write_text(f"{begin}\n* * * * * true\n")
    with pytest.raises(RenderError, match="no '# END pvwtasks"):
        cron.uninstall_cron(settings)
    assert cron_setup["store"].read_text() == f"{begin}\n* * * * * true\n"


FAKE_APACHECTL = """#!/bin/sh
# Stand-in for apache2ctl: configtest is the real apache2 -t on a private config; graceful is recorded.
echo "$*" >> {calls}
case "$1" in
  configtest) exec apache2 -f {conf} -t ;;
  graceful) exit 0 ;;
  *) echo "unsupported: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def apache_setup(tmp_path, http_server):
    sites, enabled = tmp_path / "apache" / "sites-available", tmp_path / "apache" / "sites-enabled"
    sites.mkdir(parents=True)
    enabled.mkdir(parents=True)
    release = build_release(http_server.root)
    calls = tmp_path / "apache" / "apachectl.calls"
    ctl = tmp_path / "apache" / "apachectl"
    web = textwrap.dedent(f"""
        sites_dir = "{sites}"
        enabled_dir = "{enabled}"
        apachectl = "{ctl}"
        """)
    cfg = render_config(tmp_path, http_server.url(release.name), web=web)
    settings = config.load(cfg)
    conf = httpd_conf(tmp_path / "httpd", [settings.web.http_port, settings.web.https_port], str(enabled / "*.conf"), ssl=True)
    ctl.write_text(FAKE_APACHECTL.format(calls=calls, conf=conf))
    ctl.chmod(0o755)
    settings.layout.proxy_file.parent.mkdir(parents=True, exist_ok=True)
    settings.layout.proxy_file.touch()
    return {"config": cfg, "settings": settings, "sites": sites, "enabled": enabled, "calls": calls}


def test_install_vhost_copies_enables_tests_then_reloads(apache_setup):
    result = run_doit(apache_setup["config"], "install_vhost")
    assert result.returncode == 0, result.output
    settings = apache_setup["settings"]
    dest = apache_setup["sites"] / "pvw-vhost.conf"
    link = apache_setup["enabled"] / "pvw-vhost.conf"
    assert dest.read_bytes() == render.output_path(settings.layout, "vhost").read_bytes()
    assert link.is_symlink() and os.readlink(link) == "../sites-available/pvw-vhost.conf"
    assert link.resolve() == dest.resolve()
    assert apache_setup["calls"].read_text().splitlines() == ["configtest", "graceful"]
    # Already installed: nothing is copied, tested or reloaded again.
    apache.install_vhost(settings)
    assert apache_setup["calls"].read_text().splitlines() == ["configtest", "graceful"]


def test_install_vhost_refuses_a_config_that_fails_configtest_and_restores_the_previous(apache_setup, tmp_path):
    settings = apache_setup["settings"]
    render.render_file(settings, "vhost")
    apache.install_vhost(settings)
    dest = apache_setup["sites"] / "pvw-vhost.conf"
    good = dest.read_bytes()
    # Broken: TLS with a certificate that is gone by the time the vhost is installed.
    cert, key, _ca = tls_files(tmp_path / "tls")
    broken = dataclasses.replace(settings, web=dataclasses.replace(settings.web, tls_certificate=str(cert),
                                                                     tls_key=str(key)))
    render.render_file(broken, "vhost")
    cert.unlink()
    with pytest.raises(RenderError) as err:
        apache.install_vhost(broken)
    message = str(err.value)
    assert "configtest` rejects pvw-vhost.conf, previous state restored" in message
    assert "SSLCertificateFile" in message and "\n" not in message
    assert dest.read_bytes() == good
    assert (apache_setup["enabled"] / "pvw-vhost.conf").resolve() == dest.resolve()
    assert apache_setup["calls"].read_text().splitlines() == ["configtest", "graceful", "configtest"]


def test_install_vhost_failing_first_install_leaves_nothing(apache_setup, tmp_path):
    settings = apache_setup["settings"]
    cert, key, _ca = tls_files(tmp_path / "tls")
    broken = dataclasses.replace(settings, web=dataclasses.replace(
        settings.web, tls_certificate=str(cert), tls_key=str(key)))
    render.render_file(broken, "vhost")
    cert.unlink()  # gone between rendering and installing
    with pytest.raises(RenderError, match="configtest"):
        apache.install_vhost(broken)
    assert not list(apache_setup["sites"].iterdir()) and not list(apache_setup["enabled"].iterdir())
    assert "graceful" not in apache_setup["calls"].read_text()


def test_install_vhost_without_apachectl_leaves_nothing_enabled(apache_setup):
    settings = apache_setup["settings"]
    render.render_file(settings, "vhost")
    missing = dataclasses.replace(settings, web=dataclasses.replace(settings.web, apachectl="pvw-no-such-apachectl"))
    with pytest.raises(MissingProgram, match="apt-get install apache2"):
        apache.install_vhost(missing)
    assert not list(apache_setup["sites"].iterdir()) and not list(apache_setup["enabled"].iterdir())
