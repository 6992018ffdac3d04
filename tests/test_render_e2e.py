"""End to end on the demo release: real doit update, real launcher, real Apache with the rendered vhost."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import time

import aiohttp
import msgpack
import psutil
import pytest
import requests
from wslink.chunking import UnChunker, generate_chunks

from conftest import build_release, stop_deployment_processes
from support.doit import run_doit
from support.ports import free_port
from pvwtasks import config, render
from render_support import Apache, httpd_conf, render_config, tls_files, wait_port

pytestmark = pytest.mark.timeout(240)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _hello(url: str, secret: str, ca: str | None = None) -> tuple[int, dict]:
    """Open the websocket at ``url`` and say wslink.hello with ``secret``: (HTTP status, reply)."""
    message = {"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello", "args": [{"secret": secret}],
               "kwargs": {}}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tls = ssl.create_default_context(cafile=ca) if ca else True
        async with session.ws_connect(url, ssl=tls) as ws:
            status = ws._response.status
            for chunk in generate_chunks(msgpack.packb(message), 0):
                await ws.send_bytes(chunk)
            unchunker = UnChunker()
            unchunker.set_max_message_size(1 << 20)
            while True:
                received = await ws.receive(timeout=20)
                assert received.type == aiohttp.WSMsgType.BINARY, received
                reply = unchunker.process_chunk(received.data)
                if reply is not None and reply.get("id") == "system:c0:0":
                    return status, reply


def _session_process(launcher_pid: int, session_port: int) -> psutil.Process:
    """The app process the launcher spawned for the session on ``session_port``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher_pid).children(recursive=True):
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if "--port" in cmd and str(session_port) in cmd:
                return child
        time.sleep(0.1)
    raise AssertionError(f"no process of launcher {launcher_pid} serves port {session_port}")


def _ended(proc: psutil.Process, timeout: float) -> bool:
    """True once ``proc`` (not our child: its parent reaps it) is gone or a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _launcher_pid(settings: config.Settings) -> int:
    launch_json = str(render.output_path(settings.layout, "launcher"))
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == settings.launcher.port and conn.pid:
            proc = psutil.Process(conn.pid)
            assert launch_json in proc.cmdline(), proc.cmdline()
            return conn.pid
    raise AssertionError("the launcher does not listen")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_session_through_apache_reaches_its_wslink_app(tmp_path, http_server, tls):
    started = time.monotonic()
    release = build_release(http_server.root)
    port, https_port = free_port(), free_port()
    web, ca, verify = "", None, True
    if tls:
        cert, key, ca_path = tls_files(tmp_path / "tls", ("127.0.0.1",))
        web, ca, verify = f'tls_certificate = "{cert}"\ntls_key = "{key}"\n', str(ca_path), str(ca_path)
    cfg = render_config(tmp_path, http_server.url(release.name), http_port=port, https_port=https_port, web=web)
    settings = config.load(cfg)
    root = settings.layout.root
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    own_launcher: subprocess.Popen | None = None
    steps: dict[str, float] = {}
    apache: Apache | None = None
    try:
        result = run_doit(cfg, "update", env=env)
        assert result.returncode == 0, result.output
        steps["doit update"] = time.monotonic() - started
        if not _answers(settings.launcher.port):
            # `doit update` did not start the launcher: start it through the rendered start.sh.
            own_launcher = subprocess.Popen([str(render.output_path(settings.layout, "start"))], env=env,
                                            start_new_session=True, cwd=root)
            wait_port(settings.launcher.port, timeout=20)
        launcher_pid = _launcher_pid(settings)
        # Started through the rendered start.sh: it exports these, the launcher alone does not.
        assert psutil.Process(launcher_pid).environ().get("WSLINK_LAUNCHER_GET") == "1"

        ports = [port, https_port] if tls else [port]
        conf = httpd_conf(tmp_path / "httpd", ports, render.output_path(settings.layout, "vhost"), ssl=tls)
        apache = Apache(conf, ports[-1]).start()
        steps["apache up"] = time.monotonic() - started
        base = f"https://127.0.0.1:{https_port}" if tls else f"http://127.0.0.1:{port}"
        ws_base = f"wss://127.0.0.1:{https_port}" if tls else f"ws://127.0.0.1:{port}"
        if tls:
            moved = requests.get(f"http://127.0.0.1:{port}/paraview?x=1", allow_redirects=False, timeout=10)
            assert moved.status_code == 301 and moved.headers["Location"] == f"{base}/paraview?x=1"

        page = requests.get(f"{base}/", timeout=10, verify=verify)
        assert page.status_code == 200 and "ParaViewWeb on 127.0.0.1" in page.text

        # POST /paraview (no trailing slash), with a body that tries to replace python_exec.
        reply = requests.post(f"{base}/paraview",
                              json={"application": "visualizer", "python_exec": "/bin/echo"}, timeout=60, verify=verify)
        assert reply.status_code == 200, reply.text
        steps["first session"] = time.monotonic() - started
        session = reply.json()
        sid, secret = session["id"], session["secret"]
        assert session["sessionURL"] == f"{ws_base}/proxy?sessionId={sid}&path=ws"

        # The command that runs is the configured one, not /bin/echo.
        app = _session_process(launcher_pid, session["port"])
        cmd = app.cmdline()
        assert "/bin/echo" not in cmd
        live, tree = render.live_tree(settings)
        assert str(tree / live.site_packages / "paraview/web/pv_web_visualizer.py") in cmd
        assert (render.session_log_dir(settings.layout) / f"{sid}.txt").is_file()
        launcher_log = (render.session_log_dir(settings.layout) / "launcherLog.log").read_text()
        assert "key python_exec: sanitize /bin/echo with default" in launcher_log

        # The websocket through Apache reaches that session's app: 101, then hello with the secret.
        status, hello = asyncio.run(_hello(session["sessionURL"], secret, ca))
        assert status == 101
        assert "error" not in hello and "clientID" in hello["result"], hello
        # ?sessionId=<id> alone goes to /ws too; a wrong secret is refused by the app.
        status, refused = asyncio.run(_hello(f"{ws_base}/proxy?sessionId={sid}", "not-the-secret", ca))
        assert status == 101 and refused["error"]["code"] == -32000

        # POST /paraview/ (with the slash) works as well; GET and DELETE /paraview/<id> reach the launcher.
        assert requests.get(f"{base}/paraview/{sid}", timeout=10, verify=verify).status_code == 200
        assert requests.delete(f"{base}/paraview/{sid}", timeout=30, verify=verify).status_code == 200
        assert _ended(app, timeout=10), app
        again = requests.post(f"{base}/paraview/", json={"application": "loader"}, timeout=60, verify=verify)
        assert again.status_code == 200, again.text
        steps["all requests"] = time.monotonic() - started
    finally:
        if apache is not None:
            apache.stop()
        if own_launcher is not None:
            try:
                os.killpg(own_launcher.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            own_launcher.wait(timeout=15)
        stop_deployment_processes(root)
        elapsed = time.monotonic() - started
        (tmp_path / "wall-time.txt").write_text(f"{elapsed:.2f}\n")
        marks = ", ".join(f"{name} at {at:.1f} s" for name, at in steps.items())
        print(f"\nend-to-end ({'https' if tls else 'http'}) wall time: {elapsed:.2f} s ({marks}; launcher started by "
              f"{'the test' if own_launcher else 'doit update'})")
    assert apache.proc.poll() is not None
    assert not _answers(ports[-1]) and not _answers(settings.launcher.port)
