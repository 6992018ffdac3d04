"""Rendered config files, each checked by the real program that reads it (Apache, logrotate, cron)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from crontab import CronTab

from conftest import build_release, write_config
from support.doit import run_doit
from support.ports import free_port
from pvwtasks import config, outputs, render
from pvwtasks.cron import doit_command
from pvwtasks.errors import PvwError, RenderError
from pvwtasks.layout import LastRun
from support import tomlfile
from render_support import apache_configtest, httpd_conf, render_config, tls_files

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def deployed(tmp_path, http_server):
    """A stand-in release installed under tmp_path/root by the real pipeline steps (no launcher)."""
    release = build_release(http_server.root)
    cfg = render_config(tmp_path, http_server.url(release.name))
    result = run_doit(cfg, "install")
    assert result.returncode == 0, result.output
    settings = config.load(cfg)
    settings.layout.proxy_file.touch()  # the RewriteMap file must exist for apache2 -t
    return settings


def _with(settings: config.Settings, **web) -> config.Settings:
    return dataclasses.replace(settings, web=dataclasses.replace(settings.web, **web))


def _vhost_conf(settings: config.Settings, folder: Path) -> Path:
    render.render_file(settings, "vhost")
    ports = [settings.web.http_port] + ([settings.web.https_port] if settings.web.tls else [])
    return httpd_conf(folder, ports, render.output_path(settings.layout, "vhost"), ssl=settings.web.tls)


def test_apache_accepts_the_vhost_without_tls(deployed, tmp_path):
    conf = _vhost_conf(deployed, tmp_path / "httpd")
    check = apache_configtest(conf)
    assert check.returncode == 0, check.stderr
    text = render.output_path(deployed.layout, "vhost").read_text()
    port = deployed.launcher.port
    # New sessions go to the slot named in conf/active.txt (slot a's launcher until an upgrade switches).
    assert f"RewriteMap active \"txt:{deployed.layout.active_map}\"" in text
    assert f"http://${{active:launcher|127.0.0.1:{port}}}/paraview/$2 [P,L]" in text
    assert deployed.layout.active_map.read_text() == f"launcher 127.0.0.1:{port}\n"
    assert f'RewriteMap session-to-port "txt:{deployed.layout.proxy_file}"' in text
    assert f"<VirtualHost *:{deployed.web.http_port}>" in text
    assert "ProxyTimeout 600" in text and "SSLEngine" not in text
    assert f'DocumentRoot "{deployed.layout.www}"' in text


def test_apache_accepts_the_vhost_with_tls(deployed, tmp_path):
    cert, key, _ca = tls_files(tmp_path / "tls")
    settings = _with(deployed, tls_certificate=str(cert), tls_key=str(key))
    conf = _vhost_conf(settings, tmp_path / "httpd")
    check = apache_configtest(conf)
    assert check.returncode == 0, check.stderr
    text = render.output_path(settings.layout, "vhost").read_text()
    assert text.count("<VirtualHost") == 2
    assert f"<VirtualHost *:{settings.web.https_port}>" in text and "SSLEngine on" in text
    assert f"https://127.0.0.1:{settings.web.https_port}/$1 [R=301,L]" in text
    assert render.session_url(settings).startswith(f"wss://127.0.0.1:{settings.web.https_port}/proxy?")


def test_apache_rejects_a_vhost_whose_certificate_is_missing(deployed, tmp_path):
    """The TLS check above can fail: a missing certificate makes apache2 -t fail."""
    settings = _with(deployed, tls_certificate=str(tmp_path / "nope.pem"), tls_key=str(tmp_path / "nope.key"))
    vhost = render.output_path(settings.layout, "vhost")
    vhost.parent.mkdir(parents=True, exist_ok=True)
    vhost.write_text(render.render_text(settings, "vhost"))  # bypass render_file's own check
    ports = [settings.web.http_port, settings.web.https_port]
    check = apache_configtest(httpd_conf(tmp_path / "httpd", ports, vhost, ssl=True))
    assert check.returncode != 0
    with pytest.raises(RenderError, match="nope.pem"):  # and render_file refuses to publish it
        render.render_file(settings, "vhost")


def test_no_trailing_comment_on_any_directive_line(deployed, tmp_path):
    cert, key, _ca = tls_files(tmp_path / "tls")
    for settings in (deployed, _with(deployed, tls_certificate=str(cert), tls_key=str(key))):
        for name in ("vhost", "logrotate", "cron"):
            render.render_file(settings, name)
            for line in render.output_path(settings.layout, name).read_text().splitlines():
                if not line.strip().startswith("#"):
                    assert " #" not in line, f"{name}: {line}"


def test_a_server_name_with_a_space_is_refused(deployed):
    with pytest.raises(RenderError, match="server_name"):
        render.render_text(_with(deployed, server_name="evil.example\n    Include /etc/shadow"), "vhost")


def test_logrotate_accepts_the_config_and_rotates_with_the_configured_mode(deployed, tmp_path):
    render.render_file(deployed, "logrotate")
    conf = render.output_path(deployed.layout, "logrotate")
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    check = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    # (lines starting "error", since Apache's error.log is now one of the rotated files)
    assert not [line for line in check.stderr.lower().splitlines() if line.startswith("error")], check.stderr
    layout = deployed.layout
    for log in (layout.update_log, layout.logs / "launcher.log", render.session_log_dir(layout) / "s1.txt",
                render.session_log_dir(layout) / "launcherLog.log"):
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("x" * 100 + "\n")
    for pattern in ("update.log", "launcher.log", "launcherLog.log", "*.txt"):
        assert pattern in check.stderr or pattern in conf.read_text()
    # Force a real rotation: each log is rotated, compressed, and update.log is re-created 0660.
    run = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (layout.update_logs / "update.log.1.gz").is_file()
    assert stat.S_IMODE(layout.update_log.stat().st_mode) == 0o660
    assert (layout.logs / "launcher.log.1.gz").is_file()
    assert (render.session_log_dir(layout) / "s1.txt.1.gz").is_file()
    assert (render.session_log_dir(layout) / "launcherLog.log.1.gz").is_file()


def test_a_config_logrotate_rejects_is_not_published(deployed):
    render.render_file(deployed, "logrotate")
    conf = render.output_path(deployed.layout, "logrotate")
    before = conf.read_text()
    bad = dataclasses.replace(deployed, logrotate=dataclasses.replace(deployed.logrotate, owner="no-such-user-x"))
    with pytest.raises(RenderError, match="logrotate rejects"):
        render.render_file(bad, "logrotate")
    assert conf.read_text() == before
    assert not list(conf.parent.glob(".logrotate.conf*"))


def test_a_world_writable_log_folder_is_reported(deployed):
    logs = deployed.layout.update_logs
    logs.mkdir(parents=True, exist_ok=True)
    logs.chmod(0o777)
    with pytest.raises(RenderError, match="writable by group or others"):
        render.render_file(deployed, "logrotate")


def test_crontab_parses_and_runs_this_dodo_with_the_venv(deployed):
    render.render_file(deployed, "cron", dodo="/abs/dodo.py")
    text = render.output_path(deployed.layout, "cron").read_text()
    cron = CronTab(tab=text)
    jobs = list(cron)
    assert len(jobs) == 4 and all(job.is_valid() for job in jobs)  # cron supervision adds @reboot + watchdog
    update, reboot, watchdog, rotate = jobs
    assert str(update.slices) == "0 4 * * 1" and str(rotate.slices) == "55 3 * * 1"
    assert str(reboot.slices) == "@reboot" and str(watchdog.slices) == "*/5 * * * *"
    assert all(f"-m pvwtasks.watchdog {deployed.path}" in job.command for job in (reboot, watchdog))
    doit = doit_command()[0]
    assert os.access(doit, os.X_OK)
    assert f"{doit} -f /abs/dodo.py update config={deployed.path}" in update.command
    assert update.command.endswith(f">> {deployed.layout.update_log} 2>&1")
    assert update.command.startswith("PATH=" + str(Path(doit).parent) + ":")
    assert rotate.command.endswith(f"logrotate -s {deployed.layout.logrotate_state} "
                                   f"{render.output_path(deployed.layout, 'logrotate')}")


def test_crontab_update_line_really_runs(deployed, tmp_path):
    """Run the rendered update command the way cron does (/bin/sh -c, cron's bare environment)."""
    render.render_file(deployed, "cron", dodo=str(Path(__file__).resolve().parent.parent / "dodo.py"))
    update = list(CronTab(tab=render.output_path(deployed.layout, "cron").read_text()))[0]
    command = update.command.replace(" update ", " list ")
    proc = subprocess.run(["/bin/sh", "-c", command], env={"HOME": str(tmp_path), "SHELL": "/bin/sh"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "render_vhost" in deployed.layout.update_log.read_text()


def test_index_page_escapes_everything_and_shows_the_release(deployed, tmp_path):
    apps = {"visualizer": config.App(script="paraview/web/pv_web_visualizer.py")}
    apps['<script>alert("x")</script>'] = apps["visualizer"]
    settings = dataclasses.replace(deployed, launcher=dataclasses.replace(deployed.launcher, apps=apps))
    LastRun(started=0, finished=0, result="failed", host="h<b>", failed={"down<load>": "x"}).save(
        deployed.layout.last_run_record)
    render.render_file(settings, "index")
    html = render.output_path(settings.layout, "index").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "h&lt;b&gt;" in html and "down&lt;load&gt;" in html
    assert "5.13.0" in html
    live = render.live_tree(settings)[0]
    assert live.sha256 in html and 'href="hash.json"' in html
    assert '<meta name="pvwtasks-last-result" content="failed">' in html
    assert render.index_current(settings)


def test_index_page_without_a_last_run(deployed):
    render.render_file(deployed, "index")
    html = render.output_path(deployed.layout, "index").read_text()
    assert "No update has finished yet" in html


_REFRESH_PROBE = ("import sys; from pathlib import Path; from pvwtasks import config, render; "
                  "s = config.load(Path(sys.argv[1])); print(render.refresh_file(s, 'index'), 'jinja2' in sys.modules)")


def _refresh_index_in_a_fresh_interpreter(settings) -> subprocess.CompletedProcess:
    """``render.refresh_file(settings, "index")`` in a new Python: prints its answer and whether Jinja2 got imported."""
    return subprocess.run([sys.executable, "-c", _REFRESH_PROBE, str(settings.path)], capture_output=True, text=True,
                          timeout=60)


def test_refreshing_the_index_renders_only_what_changed(deployed):
    layout, page = deployed.layout, render.output_path(deployed.layout, "index")
    LastRun(started=0, finished=0, result="ok").save(layout.last_run_record)
    assert render.refresh_file(deployed, "index") is True
    first = page.read_text()
    assert '<meta name="pvwtasks-last-result" content="ok">' in first
    assert render.refresh_file(deployed, "index") is False  # same inputs, same page
    assert page.read_text() == first

    # Nothing else imports Jinja2 in a fresh interpreter: an unchanged page is left without it.
    fresh = _refresh_index_in_a_fresh_interpreter(deployed)
    assert fresh.stdout.split() == ["False", "False"], fresh.stderr

    page.write_text("edited by hand")  # the file no longer holds what was written
    assert render.refresh_file(deployed, "index") is True and page.read_text() == first
    LastRun(started=0, finished=60, result="failed", failed={"download": "404"}).save(layout.last_run_record)
    assert render.refresh_file(deployed, "index") is True  # a new result is news to the page
    assert '<meta name="pvwtasks-last-result" content="failed">' in page.read_text()
    renamed = _with(deployed, server_name="pvw.example.org")
    assert render.refresh_file(renamed, "index") is True and "pvw.example.org" in page.read_text()


def test_a_new_run_line_is_filled_into_the_page_without_jinja(deployed):
    """A weekly no-op changes only the last run's line: the page is Jinja's text for it, made without Jinja."""
    layout, page = deployed.layout, render.output_path(deployed.layout, "index")
    LastRun(started=0, finished=0, result="ok", host="first").save(layout.last_run_record)
    assert render.refresh_file(deployed, "index") is True
    runs = [LastRun(started=0, finished=7 * 86400, result="ok", host="n1.example.org"),
            LastRun(started=0, finished=14 * 86400, result="ok", host='<b>&"quoted\' host'),
            LastRun(started=0, finished=21 * 86400, result="failed", failed={"download": "404", "<v>": "x"},
                    host="n1"),
            LastRun(started=0, finished=28 * 86400, result="failed", failed={"install": "disk full"}, host="n2")]
    shown = []
    for number, run in enumerate(runs):
        run.save(layout.last_run_record)
        fresh = _refresh_index_in_a_fresh_interpreter(deployed)
        jinja_needed = number == 2  # a first failed run adds a branch to the page: rendered once by Jinja
        assert fresh.stdout.split() == ["True", str(jinja_needed)], fresh.stderr
        assert page.read_text() == render.render_text(deployed, "index")  # what Jinja itself writes
        shown.append(page.read_text())
    assert "on &lt;b&gt;&amp;&#34;quoted&#39; host." in shown[1]
    assert "on n1: &lt;v&gt;, download failed." in shown[2]
    assert "finished 1970-01-29 00:00 UTC on n2: install failed." in shown[3] and "n1" not in shown[3]


def test_launch_json_is_valid_and_guards_every_property(deployed):
    render.render_file(deployed, "launcher")
    data = json.loads(render.output_path(deployed.layout, "launcher").read_text())
    conf = data["configuration"]
    assert set(conf["sanitize"]) == set(data["properties"]) >= {"python_exec", "python_path", "data"}
    assert conf["sessionURL"] == f"ws://127.0.0.1:{deployed.web.http_port}/proxy?sessionId=${{id}}&path=ws"
    assert all(app["ready_line"] for app in data["apps"].values())



def test_crontab_escapes_percent_signs(tmp_path, http_server):
    """cron turns a bare % into a newline: a config path holding one is escaped."""
    release = build_release(http_server.root)
    folder = tmp_path / "50%off"
    folder.mkdir()
    settings = config.load(render_config(folder, http_server.url(release.name)))
    render.render_file(settings, "cron", dodo="/abs/dodo.py")
    lines = [line for line in render.output_path(settings.layout, "cron").read_text().splitlines()
             if not line.startswith("#")]
    assert len(lines) == 4 and all(job.is_valid() for job in CronTab(tab="\n".join(lines)))
    assert all("50\\%off" in line for line in lines)
    assert all("%" not in line.replace("\\%", "") for line in lines)


def test_index_links_the_installed_docs(deployed):
    render.render_file(deployed, "index")
    assert render.index_current(deployed)
    assert 'href="docs/"' not in render.output_path(deployed.layout, "index").read_text()
    docs = deployed.layout.autodeploy / "docs-123"
    docs.mkdir()
    (docs / "index.html").write_text("docs")
    (deployed.layout.autodeploy / "docs").symlink_to("docs-123")
    assert not render.index_current(deployed)
    render.render_file(deployed, "index")
    assert 'href="docs/"' in render.output_path(deployed.layout, "index").read_text()
    assert (deployed.layout.www / "docs" / "index.html").read_text() == "docs"
    assert render.index_current(deployed)


def test_render_vhost_is_checked_by_apache_and_a_rejected_one_is_not_published(tmp_path):
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=f"[web]\nhttp_port = {free_port()}\nhttps_port = {free_port()}\n")
    assert run_doit(config, "render_vhost").returncode == 0
    vhost = tmp_path / "root" / "conf" / "pvw-vhost.conf"
    good = vhost.read_text()

    tomlfile.update(config, {"web": {"tls_certificate": "missing.pem", "tls_key": "missing.key"}})
    result = run_doit(config, "render_vhost")

    assert result.returncode != 0
    assert "ERROR: render_vhost: apache2 -t rejects the rendered vhost" in result.stderr
    assert "missing.pem" in result.stderr
    assert vhost.read_text() == good
    assert not list(vhost.parent.glob(".pvw-vhost.conf*"))


def test_each_render_task_depends_on_its_registry_template(deployed):
    assert set(render.OUTPUTS) == set(outputs.TEMPLATES)  # one table: dodo.py and the registry
    for name in render.OUTPUTS:
        task = f"render_systemd:{name.removeprefix('systemd_')}" if name.startswith("systemd_") else f"render_{name}"
        info = run_doit(deployed.path, "info", task)  # exits 1 while the task is not up to date
        assert "file_dep" in info.stdout, info.output
        file_dep = info.stdout.split("file_dep", 1)[1].split("targets", 1)[0]
        assert f" - {render.template_file(name)}\n" in file_dep, (task, file_dep)


@pytest.mark.parametrize("name", list(render.OUTPUTS))
def test_each_output_is_published_with_its_mode_and_passes_its_check(deployed, name):
    entry = render.OUTPUTS[name]
    deployed = _as_front(deployed) if name == "front" else deployed  # only a fleet front renders it
    assert render.template_file(name).is_file()
    render.render_file(deployed, name)
    out = entry.path(deployed.layout)
    assert out == render.output_path(deployed.layout, name)
    assert stat.S_IMODE(out.stat().st_mode) == entry.mode
    assert not list(out.parent.glob(f".{out.name}*"))  # no candidate or temp file left
    if entry.check is not None:
        entry.check(deployed, out)  # raises RenderError when the program that reads it rejects it


def _as_front(settings):
    """``settings`` with two ``[fleet] hosts``: a fleet front's config."""
    hosts = {"a": config.FleetHost(url="http://127.0.0.1:8001"), "b": config.FleetHost(url="http://127.0.0.1:8002")}
    return dataclasses.replace(settings, fleet=dataclasses.replace(settings.fleet, hosts=hosts))


_BROKEN = {"vhost": "<VirtualHost *:80>\n", "front": "<Proxy balancer://x>\n", "launcher": '{"apps": [1, 2', "start": "if then fi\n",
           "logrotate": "/tmp/x.log {\n    rotate\n"}


@pytest.mark.parametrize("name", [name for name, entry in render.OUTPUTS.items() if entry.check is not None])
def test_each_check_rejects_a_broken_file(deployed, tmp_path, name):
    broken = tmp_path / "broken"
    broken.write_text(_BROKEN[name])
    with pytest.raises(RenderError):
        render.OUTPUTS[name].check(deployed, broken)


def _changed_value(value):
    """Another value of the same type, or None for the kinds this probe leaves alone (tables)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.5
    if isinstance(value, Path):
        return value.with_name(value.name + "x")
    if isinstance(value, str):
        return value + "x" if value else "x"
    if isinstance(value, (list, tuple)) and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return type(value)(item + 1 for item in value) if value else None  # a port range, shifted
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return type(value)([*value, "x"])
    return None


def test_every_config_key_a_rendered_file_shows_is_in_its_reads(deployed, caplog):
    """A key whose change changes a rendered file must be in outputs.READS: else its render task would not rerun.

    Each key holding a number, string, path, switch, port range or list of words is changed in turn;
    tables (apps, fleet hosts) are left alone.
    """
    deployed = dataclasses.replace(deployed, fleet=dataclasses.replace(deployed.fleet, hosts={
        "n1": config.FleetHost(url="http://127.0.0.1:8081")}))
    extra = {"cron": {"dodo": "/srv/pvw/dodo.py"}, "systemd_update": {"dodo": "/srv/pvw/dodo.py"}}
    unread = []
    sections = [f.name for f in dataclasses.fields(deployed)
                if f.name != "base" and dataclasses.is_dataclass(getattr(deployed, f.name))]
    assert {"deploy", "web", "launcher", "cron", "logrotate", "apps", "fleet"} <= set(sections)
    for section in sections:
        current = getattr(deployed, section)
        for key in (f.name for f in dataclasses.fields(current)):
            if (section, key) == ("deploy", "root"):  # another root is another deployment (its own doit state)
                continue
            changed = _changed_value(getattr(current, key))
            if changed is None:
                continue
            other = dataclasses.replace(deployed, **{section: dataclasses.replace(current, **{key: changed})})
            for name, reads in outputs.READS.items():
                caplog.clear()
                try:
                    before = render.render_text(deployed, name, **extra.get(name, {}))
                    after = render.render_text(other, name, **extra.get(name, {}))
                except (PvwError, ValueError, TypeError):
                    continue  # the changed value is not one this output can take: nothing to compare
                if any(record.levelno >= logging.WARNING for record in caplog.records):
                    continue  # nor is one it renders around with a warning (an app the release lacks)
                keys = reads.get(section, ())
                if before != after and keys != outputs.ALL and key not in keys:
                    unread.append(f"{name}: [{section}] {key}")
    assert unread == []
