"""The health check's websocket (aiohttp's client) against the real wslink launcher and against wrong servers."""

from __future__ import annotations

import socket

import psutil
import pytest
import requests

from pvwtasks import health, processes
from pvwtasks.errors import LauncherError

from conftest import deploy, free_port, launcher_url, open_session, pidfile_pid

pytestmark = pytest.mark.timeout(180)


def test_websocket_opens_on_a_real_wslink_session_and_the_check_ends_its_session(dep):
    deploy(dep)
    settings = dep["settings"]
    session = open_session(settings)
    health.open_websocket(session["host"], session["port"], "ws")  # raises unless the app answered 101
    requests.delete(launcher_url(settings) + session["id"], timeout=10)

    launcher = processes.find_launcher(settings)
    assert launcher is not None and launcher.pid == pidfile_pid(settings)
    result = health.check(settings)
    assert result["ok"] is True and result["app"] == health.app_name(settings)
    assert 0 < result["post_seconds"] <= result["seconds"]
    assert [c for c in launcher.children() if c.status() != psutil.STATUS_ZOMBIE] == []
    assert settings.layout.proxy_file.read_text() == ""


def test_websocket_to_a_plain_http_server_fails_naming_its_answer(http_server):
    with pytest.raises(LauncherError, match=r"websocket to 127\.0\.0\.1:\d+/ws answered '404.*', not 101"):
        health.open_websocket("127.0.0.1", http_server.port, "ws")


def test_websocket_to_a_closed_port_fails_in_one_line(tmp_path):
    port = free_port()
    with socket.socket() as probe:  # nothing listens there
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(LauncherError, match=rf"websocket to localhost:{port}/ws failed") as caught:
        health.open_websocket("localhost", port, "ws", timeout=2)
    assert "\n" not in str(caught.value)
