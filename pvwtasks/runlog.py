"""What happened during one run, and the lines it leaves in ``update.log``.

The reporter fills a :class:`RunRecord` as tasks run; the notify step
and the failure mail read it.  Lines go to ``ROOT/logs/autodeploy/update.log``
with credentials in URLs redacted.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from .net import redact_text  # noqa: F401 - the one definition; re-exported for the reporter and notify


class RunRecord:
    """The tasks of one run and how each ended (one per process, filled in place by the reporter)."""

    def __init__(self) -> None:  # a plain class: a dataclass would compile its methods at every start
        self.selected: list[str] = []
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.failed: dict[str, str] = {}  # task -> error message
        self.started = time.time()
        self._host = ""
        self.meta: dict[str, dict] = {}  # task -> its meta from dodo.py (read_only, lock, mail)

    @property
    def host(self) -> str:
        """This machine's name (:func:`fqdn`), looked up when a mail or the record first needs it."""
        if not self._host:
            self._host = fqdn()
        return self._host

    @property
    def ok(self) -> bool:
        return not self.failed

    def duration(self) -> float:
        return time.time() - self.started

    def role(self, task: str) -> str | None:
        """How the mails treat ``task``: "bookkeeping", "rendered", "restart", or None for a plain step."""
        return self.meta.get(task, {}).get("mail")

    def label(self, task: str) -> str:
        return self.meta.get(task, {}).get("label", task)

    def is_(self, task: str, flag: str) -> bool:
        return bool(self.meta.get(task, {}).get(flag))


def fqdn() -> str:
    """``socket.getfqdn()``, asked with this host's name as bytes when it is ASCII.

    A str name goes through the idna codec, whose import is about a
    millisecond of a no-op update (the upstream HEAD avoids it the same
    way); an ASCII name encodes to the same bytes.
    """
    name = socket.gethostname()
    if not name.isascii():
        return socket.getfqdn(name)
    try:
        hostname, aliases, _addresses = socket.gethostbyaddr(name.encode("ascii"))
    except OSError:
        return name
    return next((alias for alias in (hostname, *aliases) if "." in alias), hostname)


class UpdateLog:
    """Appends timestamped lines to ``update.log``.

    The file is opened (in append mode) at the first line and kept open
    until :meth:`close`; each line is flushed as it is written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.prefix = f"pvwtasks[{os.getpid()}]"
        self._handle = None

    def stdout_is_log(self) -> bool:
        """True when stdout already goes to this file (cron's ``>> update.log``)."""
        try:
            out, log = os.fstat(sys.stdout.fileno()), os.stat(self.path)
        except (OSError, ValueError, AttributeError):
            return False
        return (out.st_dev, out.st_ino) == (log.st_dev, log.st_ino)

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        line = f"{stamp} {self.prefix} {redact_text(message)}\n"
        try:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8", buffering=1)  # line-buffered
            self._handle.write(line)
        except OSError:
            self.close()  # a log we cannot write must not fail the deployment; try again at the next line

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` (empty when missing), credentials redacted."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return redact_text("\n".join(text.splitlines()[-lines:]))


