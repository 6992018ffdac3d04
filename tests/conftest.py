"""Real-server fixtures: a loopback HTTP server with fault injection, demo releases, configs, doit runs."""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pvwtasks import demo
from support.doit import run_doit
from support.ports import free_port, free_port_range

@dataclass
class Faults:
    """What the server does wrong, per path: consumed as requests arrive."""

    errors: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    truncate: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before cutting the next GET
    no_range: bool = False
    no_etag: bool = False


class FileServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 serving a folder, with ETag, Range and faults."""

    def __init__(self, root: Path, chunk: int | None = None, delay: float = 0.0) -> None:
        self.root = root
        self.faults = Faults()
        self.log: list[tuple[str, str, dict]] = []  # (method, path, headers)
        # Throttling: while ``slow`` is set, ``delay`` seconds pass between ``chunk``-byte writes.
        self.chunk, self.delay = chunk, delay
        self.slow = threading.Event()
        self.slow.set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool):
                server.log.append((self.command, self.path, dict(self.headers)))
                path = self.path.split("?", 1)[0]
                pending = server.faults.errors.get(path)
                if pending:
                    status = pending.pop(0)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                target = server.root / path.lstrip("/")
                if not target.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = target.read_bytes()
                stat = target.stat()
                etag = '"%s"' % hashlib.md5(data).hexdigest()
                start = 0
                status = 200
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if wanted and not server.faults.no_range and (not if_range or if_range == etag
                                                              or if_range == email.utils.formatdate(stat.st_mtime, usegmt=True)):
                    start = int(wanted.split("=")[1].split("-")[0])
                    status = 206
                chunk = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(chunk)))
                if not server.faults.no_etag:
                    self.send_header("ETag", etag)
                self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                cut = server.faults.truncate.pop(path, None)
                if cut is not None:
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if not server.chunk:
                    self.wfile.write(chunk)
                    return
                try:
                    for offset in range(0, len(chunk), server.chunk):
                        self.wfile.write(chunk[offset:offset + server.chunk])
                        self.wfile.flush()
                        if server.slow.is_set():
                            time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed mid-transfer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def gets(self, name: str) -> list[dict]:
        """Headers of each GET of ``name`` so far."""
        return [h for m, p, h in self.log if m == "GET" and p.split("?")[0] == f"/{name}"]


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = FileServer(root)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def build_release(folder: Path, version: str = "5.13.0", name: str | None = None, **kwargs) -> Path:
    """A stand-in release tarball in ``folder`` (legacy layout unless ``family=``); returns its path."""
    name = name or demo.release_file_name(version, kwargs.get("family", "legacy"), kwargs.get("variant", ""),
                                          kwargs.get("python_tag"))
    return demo.build_release(folder / name, version, **kwargs)


def write_config(path: Path, url: str, root: Path, extra: str = "", keep: int = 2, launcher_port: int | None = None,
                 port_range: tuple[int, int] | None = None, source_extra: str = "", launcher_timeout: int = 15) -> Path:
    """A minimal TOML config deploying ``url`` under ``root``; ``extra`` is appended verbatim."""
    launcher_port = launcher_port or free_port()
    if port_range is None:
        first = free_port()
        port_range = (first, first)
    # The second launcher slot (upgrades start it beside the first): its own free port and session ports.
    second_port, second_range = launcher_port, port_range
    while second_port == launcher_port:
        second_port = free_port()
    while second_range[0] <= port_range[1] and port_range[0] <= second_range[1]:
        second_range = free_port_range(port_range[1] - port_range[0] + 1)
    text = f"""
[deploy]
root = "{root}"
keep = {keep}

[source]
url = "{url}"
timeout = 10
retries = 3
backoff = 0.05
{source_extra}

[launcher]
host = "127.0.0.1"
port = {launcher_port}
timeout = {launcher_timeout}
port_range = [{port_range[0]}, {port_range[1]}]
second_port = {second_port}
second_port_range = [{second_range[0]}, {second_range[1]}]
stop_grace = 5
start_timeout = 20
# The tests run as root: pvwtasks refuses a root launcher unless allowed (test_supervise runs one as a service account).
allow_root = true
{extra}
"""
    path.write_text(_unmanaged_apache(text))
    return path


def _unmanaged_apache(text: str) -> str:
    """``[web] manage_apache = false`` (tests run no system Apache) unless the config sets it."""
    if re.search(r"^\s*manage_apache\s*=", text, re.M):
        return text
    if re.search(r"^\s*\[web\]\s*$", text, re.M):
        return re.sub(r"^\s*\[web\]\s*$", "[web]\nmanage_apache = false", text, count=1, flags=re.M)
    return text + "\n[web]\nmanage_apache = false\n"


def stop_deployment_processes(root: Path, grace: float = 5.0) -> list[int]:
    """End, by PID, every process a test started for the deployment under ``root``; return their PIDs.

    The launcher named in ``root/logs/launcher.pid`` (confirmed by its
    command line) with its children, and any process whose command line
    runs something under ``root`` (orphaned apps of a SIGKILLed launcher).
    ``root`` is a test's own tmp folder, so nothing else can match.
    """
    import psutil

    root = Path(root).resolve()
    prefix = f"{root}/"
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found: dict[int, psutil.Process] = {}
    try:
        pid = int((root / "logs" / "launcher.pid").read_text().strip())
        launcher = psutil.Process(pid)
        if any(prefix in arg for arg in launcher.cmdline()):
            found[pid] = launcher
            found.update((c.pid, c) for c in launcher.children(recursive=True))
    except (OSError, ValueError, psutil.Error):
        pass
    for proc in psutil.process_iter():
        try:
            if proc.pid not in mine and any(arg.startswith(prefix) for arg in proc.cmdline()):
                found.setdefault(proc.pid, proc)
        except psutil.Error:
            continue
    procs = [p for p in found.values() if p.pid not in mine]
    end_processes(procs, grace)
    return [p.pid for p in procs]


def end_processes(procs: list, grace: float = 5.0) -> None:
    """SIGTERM ``procs`` (psutil.Process), wait up to ``grace`` seconds, then SIGKILL the rest."""
    import psutil

    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


@pytest.fixture
def deployment(tmp_path, http_server):
    """A served stand-in release and a config deploying it under tmp_path/root.

    Teardown stops, by PID, any launcher (and session app) the test started there.
    """
    release = build_release(http_server.root)
    config = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root")
    yield {"config": config, "root": tmp_path / "root", "release": release, "server": http_server}
    stop_deployment_processes(tmp_path / "root")


@pytest.fixture
def cleanup():
    """Configs whose launcher and session processes are stopped at teardown."""
    configs: list[Path] = []
    yield configs
    for config in configs:
        run_doit(config, "stop_launcher", timeout=60)
        stop_deployment_processes(_root_of(config))


def _root_of(config: Path) -> Path:
    match = re.search(r'^root = "(.*)"$', config.read_text(), re.M)
    return Path(match.group(1)) if match else config.parent / "root"


# -- deployments with a running launcher (test_launcher, test_status, test_health) ----------------


def make_deployment(folder: Path, url: str, **kwargs) -> dict:
    """A config (4 free session ports unless given) deploying ``url`` under ``folder/root``, and its Settings."""
    from pvwtasks import config as pvwconfig

    folder.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("port_range", free_port_range(4))
    config = write_config(folder / "pvw.toml", url, folder / "root", **kwargs)
    return {"config": config, "root": folder / "root", "settings": pvwconfig.load(config)}


@pytest.fixture
def dep(tmp_path, http_server):
    """A deployment of the stand-in release with 4 session ports and a 5 s session timeout."""
    release = build_release(http_server.root)
    made = make_deployment(tmp_path / "a", http_server.url(release.name), launcher_timeout=5)
    made.update(server=http_server, release=release)
    yield made
    stop_deployment_processes(made["root"])


def deploy(d: dict) -> None:
    """``doit update`` of a deployment made by :func:`make_deployment`; it must succeed."""
    done = run_doit(d["config"], "update")
    assert done.returncode == 0, done.output


def launcher_url(settings) -> str:
    return f"http://127.0.0.1:{settings.launcher.port}/{settings.launcher.endpoint}/"


def open_session(settings, app: str = "loader") -> dict:
    """POST a session of ``app`` to the launcher; its JSON answer."""
    import requests

    answer = requests.post(launcher_url(settings), json={"application": app}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def pidfile_pid(settings) -> int:
    """The PID of the launcher taking new sessions (the active slot's, after an upgrade the other one)."""
    from pvwtasks import slots

    return int(slots.active_settings(settings).layout.pid_file.read_text())
