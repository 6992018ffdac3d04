"""One run at a time: an exclusive ``flock`` on a file under ROOT.

The kernel drops the lock when the holder dies, so a run killed with
``kill -9`` never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import LockHeld

_held: dict[Path, int] = {}


def acquire(path: Path) -> None:
    """Take the lock at ``path`` for the rest of this process.

    Raises LockHeld naming the PID of the run that holds it.  Taking a lock
    this process already holds is a no-op.
    """
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LockHeld(f"another pvwtasks run holds {path} ({holder}); not starting a second one") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"PID {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    _held[path] = fd
