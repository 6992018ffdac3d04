"""Logs do not grow without bound: Apache's logs are rotated, old session logs deleted (real logrotate)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from apache_support import ManagedApache
from conftest import build_release, stop_deployment_processes
from support.doit import run_doit
from support.ports import free_port
from pvwtasks import config, logfiles, render
from render_support import render_config

pytestmark = pytest.mark.timeout(300)
DAY = 86400


def _logrotate(settings, state) -> subprocess.CompletedProcess:
    conf = settings.layout.logrotate_conf
    done = subprocess.run(["logrotate", "-f", "-s", str(state), str(conf)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def _age(path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_unmanaged_apache_logs_are_copied_and_truncated(tmp_path):
    cfg = render_config(tmp_path, "unused.tar.gz")
    settings = config.load(cfg)
    assert settings.web.manage_apache is False
    render.render_file(settings, "logrotate")
    layout = settings.layout
    for log in (layout.apache_access_log, layout.apache_error_log):
        log.write_text("GET / 200\n" * 10)
    inode = layout.apache_access_log.stat().st_ino
    _logrotate(settings, tmp_path / "state")
    for log in (layout.apache_access_log, layout.apache_error_log):
        assert log.with_name(log.name + ".1.gz").is_file()
        assert log.stat().st_size == 0  # truncated in place: Apache keeps writing to the same file
    assert layout.apache_access_log.stat().st_ino == inode
    assert "postrotate" not in layout.logrotate_conf.read_text()


def test_managed_apache_logs_are_rotated_then_apache_reloads_and_reopens_them(tmp_path, http_server):
    release = build_release(http_server.root)
    port = free_port()
    managed = ManagedApache(tmp_path / "apache", [port])
    cfg = render_config(tmp_path, http_server.url(release.name), http_port=port, web=managed.web_toml())
    settings = config.load(cfg)
    layout = settings.layout
    try:
        done = run_doit(cfg, "update")
        assert done.returncode == 0, done.output
        pid = managed.pid()
        assert requests.get(f"http://127.0.0.1:{port}/index.html?before", timeout=10).status_code == 200
        conf_text = layout.logrotate_conf.read_text()
        assert f"{managed.ctl} graceful" in conf_text and "delaycompress" in conf_text
        calls = len(managed.calls_made())

        _logrotate(settings, tmp_path / "state")
        rotated = layout.apache_access_log.with_name("access.log.1")
        assert "GET /index.html?before" in rotated.read_text()
        assert managed.calls_made()[calls:] == ["graceful"]  # postrotate, once for both logs (sharedscripts)
        # Apache reopened its logs: the next request lands in a fresh access.log, not the rotated one.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            requests.get(f"http://127.0.0.1:{port}/index.html?after", timeout=10)
            if layout.apache_access_log.exists() and "?after" in layout.apache_access_log.read_text():
                break
            time.sleep(0.2)
        assert "?after" in layout.apache_access_log.read_text()
        assert "?after" not in rotated.read_text()
        assert managed.pid() == pid
    finally:
        stop_deployment_processes(tmp_path / "root")
        managed.stop()


def test_old_session_logs_are_deleted_except_live_sessions(tmp_path):
    cfg = render_config(tmp_path, "unused.tar.gz", extra="[logrotate]\nsession_log_days = 7\n")
    settings = config.load(cfg)
    folder = settings.layout.session_logs
    folder.mkdir(parents=True)
    files = {name: folder / name for name in ("old.txt", "fresh.txt", "alive.txt", "old.txt.2.gz", "fresh.txt.1.gz",
                                              "launcherLog.log", "notes.md")}
    for name, path in files.items():
        path.write_text(name)
        if not name.startswith("fresh"):
            _age(path, 8)
    settings.layout.proxy_file.write_text("alive 127.0.0.1:9999\n")

    done = run_doit(cfg, "prune_logs")
    assert done.returncode == 0, done.output
    left = sorted(p.name for p in folder.iterdir())
    assert left == ["alive.txt", "fresh.txt", "fresh.txt.1.gz", "launcherLog.log", "notes.md"]
    assert "deleted 2 session log(s) older than 7 days" in done.output
    # Nothing older left: says so, deletes nothing.
    assert logfiles.prune_session_logs(settings)["deleted"] == []


def test_logrotate_drops_rotated_session_logs_older_than_the_limit(tmp_path):
    cfg = render_config(tmp_path, "unused.tar.gz", extra="[logrotate]\nsession_log_days = 7\n")
    settings = config.load(cfg)
    render.render_file(settings, "logrotate")
    assert "maxage 7" in settings.layout.logrotate_conf.read_text()
    folder = settings.layout.session_logs
    current = folder / "s1.txt"
    current.write_text("x" * 100 + "\n")
    old, recent = folder / "s1.txt.2.gz", folder / "s1.txt.1.gz"
    for path in (old, recent):
        subprocess.run(["gzip", "-c"], input=b"old\n", stdout=path.open("wb"), check=True)
    _age(old, 10)
    _age(recent, 3)
    _logrotate(settings, tmp_path / "state")
    names = sorted(p.name for p in folder.iterdir())
    # s1.txt rotated to .1.gz; the 3-day-old copy moved to .2.gz; the 10-day-old one is gone.
    assert names == ["s1.txt", "s1.txt.1.gz", "s1.txt.2.gz"], names
    assert current.stat().st_size == 0
