"""Waiting for a condition in a test, with a deadline."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> bool:
    """Poll ``predicate`` until it is true; return True, or raise AssertionError naming ``what`` after ``timeout`` s.

    Returning True lets a test write ``assert wait_until(...)``; an
    AssertionError raised by the predicate itself (the process it watches
    died) goes through at once.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return True
