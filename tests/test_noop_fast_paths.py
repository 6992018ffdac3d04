"""The no-op ``doit update``'s fast paths give the answers of the full ones.

The upstream check asks with one stdlib HEAD (``fetch.quick_remote_info``)
and the launcher check reads /proc (``processes.quick_launcher_identity``),
so that neither requests nor psutil is imported when nothing changed.
Real servers on 127.0.0.1 and real processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import trustme

from conftest import write_config
from pvwtasks import fetch, processes
from pvwtasks.errors import DownloadError
from pvwtasks.layout import Layout
from support.hostile_http import Conn, HostileServer, Request

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def hostile(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.tar.gz").write_bytes(b"x" * 1000)
    with HostileServer(served) as server:
        yield server


def _options(**changes) -> fetch.Options:
    return fetch.Options(timeout=5, retries=0, backoff=0.01, **changes)


def test_plain_200_gives_what_the_session_gets_with_one_head(hostile):
    url = hostile.url("a.tar.gz")
    full = fetch.remote_info(url, _options())
    hostile.requests.clear()

    quick = fetch.quick_remote_info(url, _options())

    assert quick == full and quick.size == 1000 and quick.etag
    assert [(r.method, r.headers.get("accept-encoding")) for r in hostile.requests] == [("HEAD", "identity")]
    assert hostile.requests[0].headers["user-agent"].startswith("pvwtasks/")


def test_refused_head_and_redirects_go_through_the_session(tmp_path, hostile):
    url = hostile.url("a.tar.gz")

    def refuse_head(request: Request, conn: Conn) -> None:
        if request.method == "HEAD":
            conn.send("405 Method Not Allowed", [], b"", "HEAD")
        else:
            hostile.correct(request, conn)

    hostile.handler = refuse_head
    info = fetch.quick_remote_info(url, _options())
    assert info.size == 1000
    assert [r.method for r in hostile.requests] == ["HEAD", "HEAD", "GET"]  # quick, then the session's fallback

    hostile.requests.clear()
    hostile.handler = lambda request, conn: (
        conn.send("302 Found", [("Location", "/a.tar.gz")], b"", request.method) if request.name == "moved"
        else hostile.correct(request, conn))
    assert fetch.quick_remote_info(hostile.url("moved"), _options()).size == 1000
    assert [r.name for r in hostile.requests] == ["moved", "moved", "a.tar.gz"]


def test_error_status_and_no_answer_fail_at_once(hostile):
    hostile.handler = lambda request, conn: conn.send("503 Busy", [], b"", request.method)
    with pytest.raises(DownloadError, match="HTTP 503"):
        fetch.quick_remote_info(hostile.url("a.tar.gz"), _options())
    assert len(hostile.requests) == 1  # never retried, as the check's remote_info with retries=0

    port = hostile.port
    hostile.stop()
    with pytest.raises(DownloadError, match="cannot reach"):
        fetch.quick_remote_info(f"http://127.0.0.1:{port}/a.tar.gz", _options())


def test_plain_http_head_reads_headers_as_the_session_does(hostile):
    url = hostile.url("a.tar.gz")
    etag, modified = hostile.validators("a.tar.gz")
    hostile.handler = lambda request, conn: conn.raw(
        f"HTTP/1.0 200\r\ncontent-length: 1000\r\nEtag:{etag}\r\nETag: \"second\"\r\nLast-Modified: {modified}\r\n"
        "\r\n".encode("latin-1"))
    quick = fetch.quick_remote_info(url, _options())
    assert (quick.size, quick.etag, quick.last_modified) == (1000, etag, modified)  # any case, the first of two
    assert hostile.requests[0].headers["host"] == f"127.0.0.1:{hostile.port}"
    assert len(hostile.requests) == 1

    # Neither http.client nor ssl is imported for it (importing http.client imports ssl).
    probe = ("import sys; from pvwtasks import fetch; "
             "fetch.quick_remote_info(sys.argv[1], fetch.Options(timeout=5, retries=0, backoff=0.01)); "
             "print(sorted({'http.client', 'ssl', 'requests'} & set(sys.modules)))")
    fresh = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=60)
    assert fresh.stdout.strip() == "[]", fresh.stderr


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n folded: on\r\n\r\n",  # an obsolete folded line
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"ICY 200 OK\r\nContent-Length: 1\r\n\r\n",  # not HTTP/1.x
    b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"y" * 70_000 + b"\r\n\r\n",  # headers longer than read
])
def test_an_answer_the_plain_head_cannot_read_goes_to_the_session(hostile, answer):
    url = hostile.url("a.tar.gz")
    hostile.handler = lambda request, conn: (
        conn.raw(answer) if len(hostile.requests) == 1 else hostile.correct(request, conn))
    assert fetch.quick_remote_info(url, _options()).size == 1000  # the session's answer, not the odd one
    assert [r.method for r in hostile.requests] == ["HEAD", "HEAD"]


def test_plain_http_head_cut_short_is_no_answer(hostile):
    hostile.handler = lambda request, conn: conn.raw(b"HTTP/1.1 200 OK\r\nContent-Len")
    with pytest.raises(DownloadError, match="cannot reach"):
        fetch.quick_remote_info(hostile.url("a.tar.gz"), _options())
    assert len(hostile.requests) == 1


def test_tls_trusts_ca_file_only(tmp_path):
    import ssl

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.tar.gz").write_bytes(b"y" * 10)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = HostileServer(served, tls=context).start()
    try:
        url = server.url("a.tar.gz")
        assert fetch.quick_remote_info(url, _options(ca_file=str(ca_file))).size == 10
        before = server.connections
        with pytest.raises(DownloadError, match="certificate verify failed"):
            fetch.quick_remote_info(url, _options())
        assert server.connections - before == 1
    finally:
        server.stop()


def _settings(root: Path) -> SimpleNamespace:
    return SimpleNamespace(layout=Layout(root))


def _fake_launcher(root: Path, *args: str) -> subprocess.Popen:
    layout = Layout(root)
    layout.logs.mkdir(parents=True, exist_ok=True)
    code = "import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    layout.pid_file.write_text(f"{proc.pid}\n")
    return proc


def test_launcher_identity_from_proc_matches_psutil(tmp_path):
    root = tmp_path / "root"
    settings = _settings(root)
    proc = _fake_launcher(root, "-m", "wslink.launcher", str(settings.layout.launch_json))
    try:
        found = processes.find_launcher(settings)
        quick = processes.quick_launcher_identity(settings)
        assert found is not None and quick is not None
        assert quick[0] == found.pid == proc.pid
        assert abs(quick[1] - found.create_time()) < 0.05
    finally:
        proc.kill()
        proc.wait()


def test_launcher_identity_is_none_for_another_command_line_or_a_zombie(tmp_path):
    root = tmp_path / "root"
    settings = _settings(root)
    other = _fake_launcher(root, "-m", "wslink.launcher", str(tmp_path / "elsewhere" / "launch.json"))
    try:
        assert processes.quick_launcher_identity(settings) is None
        assert processes.find_launcher(settings) is None
    finally:
        other.kill()
        other.wait()
    zombie = _fake_launcher(root, "-m", "wslink.launcher", str(settings.layout.launch_json))
    os.kill(zombie.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert processes.quick_launcher_identity(settings) is None
    finally:
        zombie.wait()
    settings.layout.pid_file.write_text("not a pid\n")
    assert processes.quick_launcher_identity(settings) is None


def test_loading_the_dodo_imports_neither_requests_nor_psutil(tmp_path):
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/a.tar.gz", tmp_path / "root")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "-f", str(PROJECT / "dodo.py"),
                             "list", f"config={config}"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "pvwtasks.config" in imported
    assert not imported & {"requests", "urllib3", "psutil", "jinja2", "asyncio", "smtplib"}, imported


def test_host_name_and_port_probe_without_the_idna_codec(hostile):
    # The same answers as the stdlib's str-based calls, without importing encodings.idna (a fresh interpreter).
    probe = ("import socket, sys; from pvwtasks import processes, runlog; "
             "print(runlog.fqdn(), processes.port_answers('127.0.0.1', int(sys.argv[1])), "
             "'encodings.idna' in sys.modules)")
    fresh = subprocess.run([sys.executable, "-c", probe, str(hostile.port)], capture_output=True, text=True, timeout=60)
    assert fresh.stdout.split() == [socket.getfqdn(), "True", "False"], fresh.stderr
