"""Free loopback ports, picked at run time.

A port is often bound minutes after it is picked (slot b's launcher starts at
an upgrade).  Ports the kernel hands out for ``bind(0)`` come from its
ephemeral range, the same range every outgoing connection takes its local
port from: by then a client's connection may hold it (``address already in
use``).  So the ports come from below (or above) that range, and none is
handed out twice in one test session.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

_HANDED_OUT: set[int] = set()
_LOWEST = 10000  # below: well-known and registered services


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return low, high


def _first_ports(count: int) -> tuple[int, int]:
    """The range of first ports for ``count`` consecutive ports outside the ephemeral range: [start, stop)."""
    low, high = _ephemeral_range()
    below = (_LOWEST, low - count + 1)
    above = (high + 1, 65536 - count + 1)
    return max(below, above, key=lambda span: span[1] - span[0])


def free_port() -> int:
    """A loopback port that is free right now, outside the ephemeral range, not handed out before."""
    return free_port_range(1)[0]


def free_port_range(count: int) -> tuple[int, int]:
    """``count`` consecutive loopback ports that are free right now: (first, last)."""
    start, stop = _first_ports(count)
    for _ in range(500):
        first = start + secrets.randbelow(stop - start)
        ports = range(first, first + count)
        if _HANDED_OUT.intersection(ports):
            continue
        socks = []
        try:
            for port in ports:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        _HANDED_OUT.update(ports)
        return first, first + count - 1
    raise RuntimeError(f"no {count} consecutive free loopback ports outside the ephemeral range")
