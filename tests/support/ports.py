"""Free loopback ports, picked at run time."""

from __future__ import annotations

import secrets
import socket


def free_port() -> int:
    """A loopback port that is free right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(count: int) -> tuple[int, int]:
    """``count`` consecutive loopback ports that are free right now: (first, last)."""
    if count == 1:
        port = free_port()
        return port, port
    for _ in range(200):
        first = secrets.randbelow(20000) + 20000
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first, first + count - 1
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free loopback ports")
