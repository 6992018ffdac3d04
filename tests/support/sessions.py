"""Real load across an upgrade: a poller POSTing sessions back to back, and open sessions talking wslink.

Used by tests/test_upgrade_drain.py and bench/bench_upgrade.py.  Both talk
to a real launcher through a real Apache: ``Poller`` POSTs ``/paraview``
and DELETEs each session again; ``Talker`` opens one session's websocket
(``/proxy``), says hello, then calls the stand-in app's ``test.echo``
every 100 ms and counts missed replies.
"""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import msgpack
import requests
from wslink.chunking import UnChunker, generate_chunks


class Talker(threading.Thread):
    """One open session: hello, then ``test.echo`` every 100 ms until stopped; counts missed replies."""

    def __init__(self, url: str, secret: str) -> None:
        super().__init__(daemon=True)
        self.url, self.secret = url, secret
        self.sent = self.answered = self.missed = 0
        self.version = None
        self.error: str | None = None
        self.stop_event = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._talk())
        except Exception as err:  # noqa: BLE001 - counted, reported by the caller
            self.error = repr(err)
        finally:
            self.ready.set()

    async def _call(self, ws, unchunker, ident: str, method: str, args: list, timeout: float = 2.0):
        message = {"wslink": "1.0", "id": ident, "method": method, "args": args, "kwargs": {}}
        for chunk in generate_chunks(msgpack.packb(message), 0):
            await ws.send_bytes(chunk)
        deadline = time.monotonic() + timeout
        while True:
            received = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if received.type != aiohttp.WSMsgType.BINARY:
                raise AssertionError(f"websocket: {received}")
            reply = unchunker.process_chunk(received.data)
            if reply is not None and reply.get("id") == ident:
                return reply

    async def _talk(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            async with session.ws_connect(self.url) as ws:
                unchunker = UnChunker()
                unchunker.set_max_message_size(1 << 20)
                await self._call(ws, unchunker, "system:c0:0", "wslink.hello", [{"secret": self.secret}], 20)
                reply = await self._call(ws, unchunker, "rpc:c0:v", "demo.version", [], 20)
                self.version = (reply.get("result") or {}).get("version")
                self.ready.set()
                n = 0
                while not self.stop_event.is_set():
                    n += 1
                    self.sent += 1
                    try:
                        reply = await self._call(ws, unchunker, f"rpc:c0:{n}", "test.echo", [n])
                        if reply.get("result") == {"echo": n}:
                            self.answered += 1
                        else:
                            self.missed += 1
                    except (asyncio.TimeoutError, AssertionError):
                        self.missed += 1
                        if ws.closed:
                            raise
                    await asyncio.sleep(0.1)


class Poller(threading.Thread):
    """POST ``base``/paraview back to back, DELETE each session again; counts failures and gaps."""

    def __init__(self, base: str, app: str = "loader") -> None:
        super().__init__(daemon=True)
        self.base, self.app = base, app
        self.ok_at: list[float] = []
        self.failures: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                reply = requests.post(f"{self.base}/paraview", json={"application": self.app}, timeout=60)
                if reply.status_code != 200:
                    self.failures.append(f"{reply.status_code} {reply.text[:200]}")
                    continue
                self.ok_at.append(time.monotonic())
                requests.delete(f"{self.base}/paraview/{reply.json()['id']}", timeout=60)
            except requests.RequestException as err:
                self.failures.append(repr(err))

    def gap(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The largest time between two successful POSTs, over the pairs that overlap [start, end]."""
        return max((b - a for a, b in zip(self.ok_at, self.ok_at[1:]) if b >= start and a <= end), default=0.0)

    def wait_success_after(self, when: float, timeout: float = 30) -> None:
        """Until a POST that started after ``when`` succeeded (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while (not self.ok_at or self.ok_at[-1] < when) and time.monotonic() < deadline:
            time.sleep(0.1)
