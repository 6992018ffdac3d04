"""Trame apps end to end through the doit graph: a 6.1 stand-in with the cone viewer, deployed by ``doit update``.

The companion venv is built by the graph (trame, trame-vtk, trame-vuetify and
vtk from PyPI, through the session's pip cache of tests/support/venvs.py, so
the suite downloads the wheels once), the client and the page by the
``web_client`` task, launch.json, start.sh and the vhost by the render tasks.
Then a real Apache runs the *rendered* vhost and Chromium loads
``/cone_viewer.html`` through it.  A second test upgrades with unchanged
requirements (no pip run) and then fails a requirement before the switch.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest
import requests

from conftest import build_release, stop_deployment_processes, write_config
from pvwtasks import config, demo_apps, releases
from pvwtasks.layout import ReleaseRecord, VenvRecord
from render_support import Apache, env_without_display, httpd_conf
from support.browser import canvas_drawn, chromium  # noqa: F401 - chromium is a fixture
from support.doit import run_doit
from support.ports import free_port
from support.venvs import HOST_MINOR, host_interpreter_path, pip_cache  # noqa: F401
from support.waiting import launcher_log_tail, wait_until

pytestmark = pytest.mark.timeout(900)

APP = demo_apps.CONE_VIEWER_APP
BAD_REQUIREMENT = "pvwtasks-no-such-package==1"


def _trame_config(tmp_path: Path, url: str, extra_requirements: tuple[str, ...] = ()) -> Path:
    """A config deploying ``url`` with the demo's [apps] (vtk allowed: the stand-in has none) and the cone viewer."""
    common = [*demo_apps.TRAME_REQUIREMENTS, *extra_requirements]
    own = [*demo_apps.DEMO_ONLY_REQUIREMENTS, str(demo_apps.CONE_VIEWER)]
    apps = textwrap.dedent(f"""
        [apps]
        requirements = {json.dumps(common)}
        allow_vtk = true

        [apps.{APP}]
        module = "{demo_apps.CONE_VIEWER_MODULE}"
        requirements = {json.dumps(own)}
        client = "{demo_apps.CONE_VIEWER_CLIENT}"
        client_modules = {json.dumps(list(demo_apps.CONE_VIEWER_WWW_MODULES))}
        """)
    web = textwrap.dedent(f"""
        [web]
        server_name = "127.0.0.1"
        http_port = {free_port()}
        https_port = {free_port()}
        proxy_timeout = 600
        """)
    first = free_port()
    return write_config(tmp_path / "pvw.toml", url, tmp_path / "root", extra=apps + web, launcher_timeout=60,
                        port_range=(first, first + 20) if first + 20 < 65535 else (first, first))


def _env(pip_cache: Path) -> dict:
    """No display; the session's pip cache; ``python<host minor>`` on PATH first (a real venv of this Python)."""
    env = env_without_display()
    env["PIP_CACHE_DIR"] = str(pip_cache)
    env["PATH"] = host_interpreter_path() + ":" + env.get("PATH", "")
    return env


def _wait(check, timeout: float, what: str, log: Path):
    return wait_until(check, timeout, 0.2, what, lambda: launcher_log_tail(log))


def _lines(path: Path, pattern: str) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if re.search(pattern, line)]
    except OSError:
        return []


def _sessions(proxy_file: Path) -> dict[str, str]:
    found = {}
    for line in proxy_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            found[parts[0]] = parts[1]
    return found


def test_update_deploys_the_cone_viewer_and_chromium_draws_it_through_the_rendered_vhost(
        tmp_path, http_server, pip_cache, chromium):
    from selenium.webdriver.common.by import By

    release = build_release(http_server.root, "6.1.0", family="6.1", python_tag=HOST_MINOR)
    cfg = _trame_config(tmp_path, http_server.url(release.name))
    settings = config.load(cfg)
    layout = settings.layout
    apache = None
    try:
        result = run_doit(cfg, "update", env=_env(pip_cache), timeout=900)
        assert result.returncode == 0, result.output
        update_seconds = result.seconds

        # The live release records its venv; launch.json runs Kitware's command from it.
        live = releases.live_release(layout)
        assert live is not None and live.venv and live.venv.startswith(f"py{HOST_MINOR}-")
        venv = layout.venv_dir(live.venv)
        record = VenvRecord.load(layout.venv_record(live.venv))
        assert record is not None and any(p.startswith("vtk==") for p in record.packages)
        launch = json.loads(layout.launch_json.read_text())
        tree = layout.release_dir(live.name)
        assert launch["apps"] == {APP: {
            "cmd": [str(tree / "bin" / "pvpython"), "--venv", str(venv), "-m", demo_apps.CONE_VIEWER_MODULE,
                    "--host", "${host}", "--port", "${port}", "--authKey", "${secret}", "--server"],
            "ready_line": "App running at"}}
        assert launch["configuration"]["sessionURL"] == "ws://USE_HOST/proxy?sessionId=${id}&path=ws"
        # The launcher runs from a Python with wslink >= 2.5: here the venv's own.
        assert f"exec {venv}/bin/python -m wslink.launcher" in layout.start_script.read_text()
        assert layout.app_page(APP).is_file() and 'data-session-manager-url="/paraview/"' in \
            layout.app_page(APP).read_text()

        # A second update changes nothing: the venv, the client and the page are up to date.
        again = run_doit(cfg, "update", env=_env(pip_cache), timeout=300)
        assert again.returncode == 0, again.output
        assert "pip " not in again.output and "trame.tools" not in again.output, again.output
        for task in ("venv", "web_client"):
            assert f"-- {task}" in again.output, again.output

        ports = [settings.web.http_port]
        apache = Apache(httpd_conf(tmp_path / "httpd", ports, layout.vhost_file), ports[0]).start()
        base = f"http://127.0.0.1:{ports[0]}"
        assert f'href="{APP}.html"' in requests.get(f"{base}/", timeout=10).text  # linked from the landing page

        loaded = time.monotonic()
        chromium.get(f"{base}/{APP}.html")
        access, log = layout.apache_access_log, layout.launcher_log
        _wait(lambda: _lines(access, r'"POST /paraview/ HTTP/1\.1" 200 '), 60, "the launcher POST", log)
        sessions = _wait(lambda: _sessions(layout.proxy_file), 60, "a line in proxy.txt", log)
        (session_id, target), = sessions.items()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", target)

        def first_frame():
            found = canvas_drawn(chromium, tmp_path, "cone.png")
            return found if found and found[0] > 0.01 else None

        fraction, shot = _wait(first_frame, 90, "a drawn canvas", log)
        first_frame_seconds = time.monotonic() - loaded
        assert fraction < 0.9  # a cone on a background, not a flat colour

        label = chromium.find_element(By.ID, "points")
        assert label.text.strip() == "6 / 7 points", label.text
        chromium.find_element(By.ID, "more").click()
        _wait(lambda: label.text.strip() == "16 / 17 points", 30, "the server's answer to resolution=16", log)
        _wait(lambda: (canvas_drawn(chromium, tmp_path, "cone-16.png") or (0, b""))[1] != shot, 30,
              "a new frame after the change", log)

        # Kitware's per-session rule of the rendered vhost reaches the session's own trame server.
        answer = requests.get(f"{base}/api/{session_id}/index.html", timeout=10)
        assert answer.status_code == 200 and "data-app-name" in answer.text

        chromium.get("about:blank")  # closing the websocket makes Apache log its upgrade (lowercased URL)
        _wait(lambda: _lines(access, rf'"GET /proxy\?sessionid={session_id}&path=ws HTTP/1\.1" 101 '), 30,
              "the websocket's 101 in Apache's access log", log)
        assert (tmp_path / "cone.png").stat().st_size > 0
        figures = {"cold_update_s": round(update_seconds, 1), "venv_build_s": record.seconds,
                   "venv_size_mb": round(record.size / 1e6, 1), "first_frame_s": round(first_frame_seconds, 2)}
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
        print("trame deploy figures:", json.dumps(figures))
    finally:
        if apache is not None:
            apache.stop()
        stop_deployment_processes(layout.root)


def test_upgrade_reuses_the_venv_without_pip_and_a_bad_requirement_fails_before_the_switch(
        tmp_path, http_server, pip_cache):
    first = build_release(http_server.root, "6.1.0", family="6.1", python_tag=HOST_MINOR)
    cfg = _trame_config(tmp_path, http_server.url(first.name))
    settings = config.load(cfg)
    layout = settings.layout
    try:
        assert run_doit(cfg, "update", env=_env(pip_cache), timeout=900).returncode == 0
        key = releases.live_release(layout).venv

        # A new ParaView with the same requirements: the same venv, and pip never runs.
        newer = build_release(http_server.root, "6.1.1", family="6.1", python_tag=HOST_MINOR)
        cfg.write_text(cfg.read_text().replace(first.name, newer.name))
        upgrade = run_doit(cfg, "update", env=_env(pip_cache), timeout=300)
        assert upgrade.returncode == 0, upgrade.output
        live = releases.live_release(layout)
        assert live.version == "6.1.1" and live.venv == key
        assert "pip " not in upgrade.output and "up to date (requirements unchanged)" in upgrade.output
        assert sorted(p.name for p in layout.venvs.iterdir()) == [key]
        launch = json.loads(layout.launch_json.read_text())
        assert launch["apps"][APP]["cmd"][:3] == [str(layout.release_dir(live.name) / "bin" / "pvpython"),
                                                  "--venv", str(layout.venv_dir(key))]

        # A requirement pip cannot find: one line naming it, the live release and its venv untouched.
        broken = build_release(http_server.root, "6.1.2", family="6.1", python_tag=HOST_MINOR)
        cfg = _trame_config(tmp_path, http_server.url(broken.name), extra_requirements=(BAD_REQUIREMENT,))
        failed = run_doit(cfg, "update", env=_env(pip_cache), timeout=300)
        assert failed.returncode != 0
        errors = failed.error_lines()
        assert len(errors) == 1 and errors[0].startswith("ERROR: install: ") and BAD_REQUIREMENT in errors[0], \
            failed.output
        assert releases.live_release(layout).name == live.name
        assert sorted(p.name for p in layout.venvs.iterdir()) == [key]
        installed = ReleaseRecord.load(layout.installed_record)
        assert installed.name == live.name and installed.venv == key
    finally:
        stop_deployment_processes(layout.root)
