"""A misbehaving HTTP/1.1 server on raw sockets, for the download tests.

``HostileServer(root)`` listens on 127.0.0.1 (a free port the kernel picks)
and answers each request on a thread of its own.  By default it serves the
files under ``root`` correctly: strong ETag, Last-Modified, HEAD, Range with
If-Range, ``416 bytes */N``.  A test sets ``handler(request, conn)`` to
misbehave; the handler writes whatever bytes it likes on ``conn`` (or calls
``server.correct(request, conn)`` for the normal answer) and returns.  Every
connection is closed after one answer.  ``tls`` (an ssl.SSLContext) makes
it an https server.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    @property
    def name(self) -> str:
        return self.path.split("?", 1)[0].lstrip("/")


class Conn:
    """The client socket of one request, with helpers to write an answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, status: str, headers: list[tuple[str, str]]) -> None:
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), "Connection: close", "", ""]
        self.raw("\r\n".join(lines).encode("latin-1"))

    def send(self, status: str, headers: list[tuple[str, str]], body: bytes = b"", method: str = "GET") -> None:
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            headers = [*headers, ("Content-Length", str(len(body)))]
        self.head(status, headers)
        if method != "HEAD":
            self.raw(body)

    def chunked(self, data: bytes, size: int = 4096) -> None:
        """Write ``data`` as a complete chunked body (the head must say Transfer-Encoding: chunked)."""
        for offset in range(0, len(data), size):
            piece = data[offset:offset + size]
            self.raw(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.raw(b"0\r\n\r\n")

    def trickle(self, data: bytes, rate: float) -> None:
        """Write ``data`` at ``rate`` bytes per second, stopping quietly when the client goes away."""
        step = max(1, int(rate / 20)) if rate >= 20 else 1
        try:
            for offset in range(0, len(data), step):
                self.raw(data[offset:offset + step])
                time.sleep(step / rate)
        except OSError:
            pass


Handler = Callable[[Request, Conn], None]


def strong_etag(data: bytes) -> str:
    return '"%s"' % hashlib.md5(data).hexdigest()


class HostileServer:
    def __init__(self, root: Path, tls: ssl.SSLContext | None = None) -> None:
        self.root = root
        self.tls = tls
        self.handler: Handler | None = None
        self.requests: list[Request] = []
        self.connections = 0  # TCP connections accepted (a refused TLS handshake sends no request)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    # --- lifecycle
    def start(self) -> "HostileServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()  # wake accept()
        except OSError:
            pass
        self._thread.join(5)
        self._listener.close()

    def __enter__(self) -> "HostileServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/{name}"

    def gets(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.name == name]

    # --- serving
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if self._stop.is_set():
                sock.close()
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(30)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate
            request = self._read_request(sock)
            if request is None:
                return
            self.requests.append(request)
            conn = Conn(sock)
            (self.handler or self.correct)(request, conn)
        except OSError:
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @staticmethod
    def _read_request(sock: socket.socket) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                return None
            data += piece
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, path, _version = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Request(method, path, headers)

    def file(self, name: str) -> bytes | None:
        target = self.root / name
        return target.read_bytes() if target.is_file() else None

    def validators(self, name: str) -> tuple[str, str]:
        data = self.file(name) or b""
        mtime = (self.root / name).stat().st_mtime
        return strong_etag(data), email.utils.formatdate(mtime, usegmt=True)

    def correct(self, request: Request, conn: Conn, *, etag: str | None = None, data: bytes | None = None) -> None:
        """The well-behaved answer: the file, its validators, Range honoured only with a matching If-Range.

        ``etag`` and ``data`` replace the file's own (to lie consistently).
        """
        data = data if data is not None else self.file(request.name)
        if data is None:
            conn.send("404 Not Found", [], b"", request.method)
            return
        own_etag, modified = self.validators(request.name)
        etag = etag or own_etag
        headers = [("ETag", etag), ("Last-Modified", modified), ("Accept-Ranges", "bytes"),
                   ("Content-Type", "application/octet-stream")]
        wanted, if_range = request.headers.get("range"), request.headers.get("if-range")
        strong_match = if_range == etag and not etag.startswith("W/")
        if wanted and (if_range is None or if_range == modified or strong_match):
            start = int(wanted.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                conn.send("416 Range Not Satisfiable", [*headers, ("Content-Range", f"bytes */{len(data)}")],
                          b"", request.method)
                return
            conn.send("206 Partial Content", [*headers, ("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")],
                      data[start:], request.method)
            return
        conn.send("200 OK", headers, data, request.method)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
