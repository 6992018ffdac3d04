"""Deleting old session logs: ``logs/launcher/<session id>.txt`` and their rotated copies.

The wslink launcher writes one log per session and never deletes it; the
rendered logrotate.conf rotates the big ones (``maxage`` drops rotated copies),
but the small ``.txt`` of a session that ended is never rotated.
:func:`prune_session_logs` deletes every session log older than
``[logrotate] session_log_days``, except those of sessions still listed in
proxy.txt and the launcher's own log.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from . import proxyfile
from .config import Settings

log = logging.getLogger(__name__)

DAY = 86400.0
_SESSION_LOG = re.compile(r"([^/]+?)\.txt(?:\.[0-9]+)?(?:\.gz)?")


def _session_of(path: Path) -> str | None:
    """The session id of a session log (``<id>.txt``, ``<id>.txt.3``, ``<id>.txt.3.gz``), else None."""
    match = _SESSION_LOG.fullmatch(path.name)
    return match.group(1) if match else None


def prune_session_logs(settings: Settings, now: float | None = None) -> dict:
    """Delete session logs older than ``[logrotate] session_log_days`` (by mtime); return what was deleted.

    Keeps the logs of sessions listed in proxy.txt (alive) and launcherLog.log.
    A file that cannot be deleted is logged and kept.
    """
    folder = settings.layout.session_logs
    limit = (now if now is not None else time.time()) - settings.logrotate.session_log_days * DAY
    alive = {session["id"] for session in proxyfile.sessions(settings)}
    deleted, kept_alive = [], 0
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        entries = []
    for path in entries:
        session = _session_of(path)
        if session is None or not path.is_file() or path.is_symlink():
            continue
        try:
            old = path.stat().st_mtime < limit
            if old and session in alive:
                kept_alive += 1
                continue
            if old:
                path.unlink()
                deleted.append(path.name)
        except OSError as err:
            log.warning("session log %s not deleted: %s", path, err.strerror)
    if deleted:
        log.info("deleted %d session log(s) older than %d days from %s", len(deleted),
                 settings.logrotate.session_log_days, folder)
    else:
        log.info("no session log older than %d days in %s", settings.logrotate.session_log_days, folder)
    return {"deleted": deleted, "kept_alive": kept_alive}
