"""`doit status` and `python -m pvwtasks.status`: one screen or JSON, non-zero when down or after a failed update."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import build_release, deploy, make_deployment, open_session, pidfile_pid
from support.doit import run_doit

from pvwtasks import launcher


def test_status_of_an_empty_deployment_says_down_and_fails(tmp_path, http_server):
    d = make_deployment(tmp_path, http_server.url("nothing.tar.gz"))
    shown = run_doit(d["config"], "status")
    assert shown.returncode != 0
    assert "live         none installed" in shown.stdout and "launcher     DOWN" in shown.stdout
    assert "last update  never" in shown.stdout
    plain = subprocess.run([sys.executable, "-m", "pvwtasks.status", "--json", str(d["config"])],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1 and "launcher is not running" in plain.stderr
    data = json.loads(plain.stdout)
    assert data["live"] is None and data["launcher"]["running"] is False and data["sessions"] == []


def test_status_shows_state_and_fails_when_launcher_down(dep):
    deploy(dep)
    settings = dep["settings"]
    session = open_session(settings)
    text = run_doit(dep["config"], "status")
    assert text.returncode == 0, text.output
    assert "5.13.0" in text.stdout and f"PID {pidfile_pid(settings)}" in text.stdout
    assert "1 active" in text.stdout and "last update  ok" in text.stdout

    as_json = run_doit(dep["config"], "status", "--json")
    assert as_json.returncode == 0, as_json.output
    data = json.loads(as_json.stdout[as_json.stdout.index("{"):])
    assert data["live"]["version"] == "5.13.0" and len(data["live"]["sha256"]) == 64
    assert data["launcher"]["pid"] == pidfile_pid(settings) and data["launcher"]["answering"]
    assert [s["id"] for s in data["sessions"] if s["alive"]] == [session["id"]]
    assert data["last_update"]["result"] == "ok" and data["disk"]["total_bytes"] > 0

    plain = subprocess.run([sys.executable, "-m", "pvwtasks.status", "--json", str(dep["config"])],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and json.loads(plain.stdout)["launcher"]["running"] is True

    launcher.stop(settings)
    down = run_doit(dep["config"], "status", "--json")
    assert down.returncode != 0
    assert json.loads(down.stdout[down.stdout.index("{"):])["launcher"]["running"] is False
    assert "launcher is not running" in down.stderr


def test_status_fails_when_the_launcher_serves_another_release_than_the_live_link(dep):
    deploy(dep)
    settings = dep["settings"]
    serving = json.loads(settings.layout.launcher_record.read_text())["release"]
    # The install task alone switches the live link; the running launcher keeps the old release.
    build_release(dep["server"].root, "5.13.1", name=dep["release"].name)
    done = run_doit(dep["config"], "download", "verify", "install")
    assert done.returncode == 0, done.output
    shown = run_doit(dep["config"], "status")
    assert shown.returncode != 0
    assert f"the launcher serves {serving} but the live release is" in shown.stderr, shown.output
    assert "NOT the live release" in shown.stdout
    as_json = run_doit(dep["config"], "status", "--json")
    assert as_json.returncode != 0
    assert json.loads(as_json.stdout[as_json.stdout.index("{"):])["launcher"]["release"] == serving
    # The next update restarts the launcher on the live release, and status is happy again.
    deploy(dep)
    again = run_doit(dep["config"], "status")
    assert again.returncode == 0, again.output
    assert "5.13.1" in again.stdout and "NOT the live release" not in again.stdout
