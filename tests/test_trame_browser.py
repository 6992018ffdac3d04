"""A real trame app in a real browser: Chromium loads /cone_viewer.html through Apache and the wslink launcher.

The demo venv (trame 4, trame-vtk, trame-vuetify, vtk, the cone viewer) is
built with appvenv, the page with webclient; the launcher runs from the
venv's Python with Kitware's trame command line.  The test checks each hop:
the launcher's POST through Apache, the proxy line, the websocket's 101, a
drawn canvas (WebGL on SwiftShader), and a state change answered by the server.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from pvwtasks import demo_apps
from support.browser import canvas_drawn, chromium  # noqa: F401 - chromium is a fixture
from support.trame_site import TrameSite
from support.venvs import demo  # noqa: F401

pytestmark = pytest.mark.timeout(900)


def test_cone_viewer_draws_and_answers_in_chromium_through_apache(tmp_path, demo, chromium):
    from selenium.webdriver.common.by import By

    site = TrameSite(tmp_path / "site", demo.layout.www, demo_apps.CONE_VIEWER_APP,
                     demo_apps.app_command(demo.python), demo.venv.record.launcher_python)
    site.folder.mkdir()
    site.start()
    try:
        loaded = time.monotonic()
        chromium.get(f"{site.url}/{demo_apps.CONE_VIEWER_APP}.html")

        # The client POSTed to the launcher through Apache and the launcher wrote the proxy line.
        site.wait_for(lambda: site.access_lines(r'"POST /paraview/ HTTP/1\.1" 200 '), 60, "the launcher POST")
        sessions = site.wait_for(site.sessions, 60, "a line in proxy.txt")
        (session_id, target), = sessions.items()
        session_ready_seconds = time.monotonic() - loaded
        assert re.fullmatch(r"127\.0\.0\.1:\d+", target)
        assert site.session_ports[0] <= int(target.split(":")[1]) <= site.session_ports[1]

        # The view drew something: non-background pixels in the canvas (WebGL, client side).
        def first_frame():
            found = canvas_drawn(chromium, tmp_path, "cone.png")
            return found if found and found[0] > 0.01 else None

        fraction, _shot = site.wait_for(first_frame, 90, "a drawn canvas")
        first_frame_seconds = time.monotonic() - loaded
        assert fraction < 0.9  # a cone on a background, not a flat colour

        # Change one state value in the page; the server answers with the new point count.
        label = chromium.find_element(By.ID, "points")
        assert label.text.strip() == "6 / 7 points", label.text
        chromium.find_element(By.ID, "more").click()
        site.wait_for(lambda: label.text.strip() == "16 / 17 points", 30, "the server's answer to resolution=16")
        site.wait_for(lambda: (canvas_drawn(chromium, tmp_path, "cone-16.png") or (0, b""))[1] != _shot, 30,
                      "a new frame after the change")
        assert (tmp_path / "cone.png").stat().st_size > 0 and (tmp_path / "cone-16.png").stat().st_size > 0

        # Kitware's per-session HTTP rule: /api/<session>/<path> reaches that session's own trame server.
        import requests

        answer = requests.get(f"{site.url}/api/{session_id}/index.html", timeout=10)
        assert answer.status_code == 200 and "data-app-name" in answer.text

        # Leaving the page closes the websocket; Apache then logs its upgrade: 101, lowercased by the client.
        chromium.get("about:blank")
        upgrade = site.wait_for(
            lambda: site.access_lines(rf'"GET /proxy\?sessionid={session_id}&path=ws HTTP/1\.1" 101 '), 30,
            "the websocket's 101 in Apache's access log")
        assert upgrade
        figures = {"session_ready_s": round(session_ready_seconds, 2), "first_frame_s": round(first_frame_seconds, 2), "venv_build_s": round(demo.venv_seconds, 1),
                   "venv_action": demo.venv.action, "venv_size_mb": round(demo.venv.record.size / 1e6, 1),
                   "client_s": round(demo.client_seconds, 2), "client_size_mb": round(demo.client.record.size / 1e6, 2)}
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
        print("trame figures:", json.dumps(figures))
    finally:
        site.stop()
