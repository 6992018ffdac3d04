"""Waiting for a condition in a test, with a deadline."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition", context: Callable[[], str] | None = None):
    """Poll ``predicate`` until it answers something true, and return that answer.

    After ``timeout`` s, raise AssertionError naming ``what`` (plus
    ``context()``, e.g. a log's tail).  The answer is true, so a test can
    write ``assert wait_until(...)``; an AssertionError raised by the
    predicate itself (the process it watches died) goes through at once.
    """
    deadline = time.monotonic() + timeout
    while not (answer := predicate()):
        if time.monotonic() > deadline:
            more = f"; {context()}" if context else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{more}")
        time.sleep(interval)
    return answer


def launcher_log_tail(log, size: int = 2000) -> str:
    """The last ``size`` characters of a launcher log, for a timeout's message."""
    return f"launcher log: {log.read_text()[-size:]}" if log.is_file() else "(no launcher log)"
