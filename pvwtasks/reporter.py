"""What one run leaves behind: its ``update.log`` lines, its record, ``last-run.json`` and the failure mail.

The doit adapter calls :class:`RunReport` as doit selects, runs, skips and
fails tasks; this module knows nothing of doit.  Before ``doit update``
touches anything, :func:`prepare` checks that the programs it relies on
exist and that ROOT is writable, and mails a start failure when it cannot
go on.  What a task *is* for the report (read-only, the lock, bookkeeping,
a render, a restart) comes from dodo.py, as each task's ``meta``.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

from . import __version__, preflight
from .config import Notify, Settings, load_notify
from .errors import ConfigError, PvwError
from .layout import LastRun
from .runlog import RunRecord, UpdateLog, redact_text

log = logging.getLogger(__name__)


def prepare(settings: Settings, *, update: bool) -> None:
    """Check, before a run changes anything, that it can: the programs (for ``update``) and a writable ROOT.

    Creates ``ROOT/.pvwtasks`` (doit's dep file and the run lock live there).
    Raises MissingProgram or ConfigError with one line; for ``update`` the
    failure is mailed first, when ``[notify]`` is usable.
    """
    try:
        if update:
            preflight.check(settings)  # a missing apache2/logrotate stops before anything is touched
        _writable_state(settings)
    except PvwError as err:
        if update:
            start_failed(settings.path, str(err), settings.notify, settings)
        raise


def _writable_state(settings: Settings) -> None:
    state = settings.layout.state
    try:
        state.mkdir(parents=True, exist_ok=True)
        if not os.access(state, os.W_OK):
            cause = errno.EROFS if os.statvfs(state).f_flag & os.ST_RDONLY else errno.EACCES
            raise OSError(cause, os.strerror(cause))
    except OSError as err:
        raise ConfigError(f"{settings.path}: [deploy] root: cannot write {state}: {err.strerror}") from None


def config_failed(path: Path, error: str) -> None:
    """Mail that ``doit update`` could not load its config, when the ``[notify]`` section itself is usable."""
    start_failed(path, error, load_notify(path))


def start_failed(path: Path, error: str, cfg: Notify | None, settings: Settings | None = None) -> None:
    """Mail that ``doit update`` could not start (bad config, unusable ROOT, missing program).  Never raises."""
    if cfg is None:
        return
    from . import notify  # only needed when something failed

    live = notify.live_description(settings) if settings else ""
    notify.config_failed(cfg, path, redact_text(error), live)


class RunReport:
    """One run as pvwtasks reports it: ``update.log``, the run record, ``last-run.json`` and the failure mail.

    ``main`` is the task cron runs (``update``): only its runs are recorded
    in ``last-run.json`` and mailed on failure.  A run of read-only tasks
    only (``status``) writes nothing.
    """

    def __init__(self, settings: Settings, main: str, record: RunRecord) -> None:
        self.settings = settings
        self.main = main
        self.record = record
        self.log = UpdateLog(settings.layout.update_log)
        self.logging = False

    @property
    def quiet_console(self) -> bool:
        """True when stdout already goes to ``update.log`` (cron's ``>> update.log``): say each thing once."""
        return self.log.stdout_is_log()

    def is_update(self, selected: list[str]) -> bool:
        return self.main in selected

    def read_only(self, selected: list[str], meta: dict[str, dict]) -> bool:
        return all(meta.get(name, {}).get("read_only") for name in selected)

    def start(self, selected: list[str], meta: dict[str, dict]) -> None:
        record = self.record  # shared with the notify step: filled in place, emptied for each run
        record.selected, record.meta, record.started = list(selected), meta, time.time()
        record.ran.clear()
        record.skipped.clear()
        record.failed.clear()
        self.logging = not self.read_only(selected, meta)
        if self.logging:
            self.log.write(f"start: doit {' '.join(selected)} config={self.settings.path} (pvwtasks {__version__})")

    def ran(self, task: str) -> None:
        self.record.ran.append(task)
        if self.logging:
            self.log.write(f"run {task}")

    def skipped(self, task: str) -> None:
        self.record.skipped.append(task)
        if self.logging:
            self.log.write(f"up-to-date {task}")

    def failed(self, task: str, message: str) -> None:
        message = redact_text(message)
        self.record.failed[task] = message
        if self.logging:
            self.log.write(f"failed {task}: {message.splitlines()[-1] if message else 'failed'}")

    def error(self, message: str) -> None:
        """An error of doit itself, not of a task."""
        self.record.failed.setdefault("doit", message)
        if self.logging:
            self.log.write(f"error: {redact_text(message.strip())}")

    def finish(self) -> None:
        if not self.logging:
            return
        record = self.record
        if self.is_update(record.selected):
            if not any(record.is_(task, "lock") for task in record.failed):
                # a run refused by the lock did nothing worth recording
                LastRun(started=record.started, finished=time.time(), result="ok" if record.ok else "failed",
                        failed=record.failed, ran=record.ran, host=record.host).save(
                            self.settings.layout.last_run_record)
                _render_landing_page(self.settings)
            if record.failed:
                from . import notify  # only needed when something failed

                notify.run_failed(self.settings, record)
        self.log.write(f"end: {'ok' if record.ok else 'failed'} in {record.duration():.1f} s")
        self.log.close()


def _render_landing_page(settings: Settings) -> None:
    """Re-render www/index.html from this run's own result, success or failure.  Never raises."""
    from . import render  # only at the end of an update

    try:
        render.refresh_file(settings, "index")
    except Exception as err:  # noqa: BLE001 - the page must never turn a run's result into another one
        log.warning("landing page not re-rendered: %s", redact_text(str(err)))
