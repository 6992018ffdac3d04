"""The crontab's watchdog: start the launcher when it is dead; otherwise say and do nothing.

``python -m pvwtasks.watchdog CONFIG`` runs from the ``@reboot`` line and
the frequent ``[cron] watchdog`` line when ``[deploy] supervisor = "cron"``.
It is cheap (no doit, no HTTP unless it starts the launcher) and silent
while all is well, so cron mails nothing and update.log gets no line.  It
waits for nobody: when an update holds the run lock it exits 0 at once (the
update starts the launcher itself).  When it starts the launcher it prints
one line; when that fails, one ERROR line and exit status 1.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from . import config, launcher, lock, processes, slots
from .config import Settings
from .errors import LockHeld, PvwError


def check(settings: Settings) -> str | None:
    """Start the active launcher slot when it is not running; return the lines to print, or None when all is well.

    Takes the run lock for the time of the check (returns None at once when
    another run holds it).  When a slot drains after an upgrade, or a switch
    was interrupted, reconciles and stops a drained slot (its last session
    closed or its drain limit passed); a draining slot is never started
    again.  Raises PvwError when the launcher does not start or fails its
    health check.
    """
    layout = settings.layout
    if not layout.root.is_dir() or not layout.start_script.is_file():
        return None  # nothing deployed yet: the first update starts it
    try:
        lock.acquire(layout.lock_file)
    except LockHeld:
        return None  # an update runs; it leaves the launcher running
    lines = []
    if not slots.nothing_to_drain(settings):
        drained = slots.drain(settings)
        if drained.get("stopped"):
            ended = drained.get("ended_sessions") or 0
            lines.append(f"watchdog: launcher slot {drained['stopped']} drained"
                         + (f" ({ended} session(s) ended at the drain limit)" if ended else "") + "; stopped it")
    current = launcher.active(settings)
    launcher.sync_unit_pid(current)
    if processes.find_launcher(current) is not None:
        return "\n".join(lines) or None
    from . import deploy  # only now: it brings the HTTP and render stack

    result = deploy.start(settings)
    if result.get("started"):
        lines.append(f"watchdog: the launcher was not running; started it (slot {launcher.active(settings).slot}, "
                     f"PID {result['pid']}, healthy)")
    return "\n".join(lines) or None


def main(argv: list[str] | None = None) -> int:
    """``python -m pvwtasks.watchdog [CONFIG]``: exit 0 silently, or print one line."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m pvwtasks.watchdog [CONFIG]\n"
              "Start this deployment's launcher if it is not running; silent when it runs.")
        return 0
    logging.basicConfig(level=logging.ERROR, format="%(message)s")  # its one line says what it did
    stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} pvwtasks[{os.getpid()}]"  # update.log's line format
    try:
        line = check(config.load(config.config_path(args[0] if args else None)))
    except PvwError as err:
        print(f"{stamp} watchdog ERROR: {err}")
        return 1
    for text in (line or "").splitlines():
        print(f"{stamp} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
