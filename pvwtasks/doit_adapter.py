"""The one module that knows doit: settings loading, action wrappers, checks, reporter.

Everything else in pvwtasks takes plain values and raises PvwError; this
module turns those into doit's vocabulary (TaskFailed, InvalidDodoFile,
uptodate callables) and writes ``update.log`` through a reporter.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from doit import get_var
from doit.exceptions import InvalidDodoFile, TaskFailed
from doit.reporter import ConsoleReporter
from doit.tools import config_changed

from . import __version__, config, preflight
from .errors import PvwError
from .runlog import RunRecord, UpdateLog, redact_text, save_last_run

log = logging.getLogger("pvwtasks")

# Filled by the reporter while tasks run; read by the notify step.
RUN = RunRecord()
_settings: config.Settings | None = None


def load_settings() -> config.Settings:
    """Load the config named by ``config=``, ``$PVW_CONFIG`` or the default.

    Also makes ``ROOT/.pvwtasks`` (doit's dep file lives there).  A bad
    config, an unusable ROOT or (for ``doit update``) a missing apache2 or
    logrotate becomes doit's one-line "ERROR: ..." and exit 3.
    """
    global _settings
    if _settings is not None:
        return _settings
    _setup_logging()
    path = config.config_path(get_var("config"))
    try:
        settings = config.load(path)
    except PvwError as err:
        _mail_start_failure(path, str(err), config.load_notify(path))
        raise InvalidDodoFile(redact_text(str(err))) from None
    if runs_update(sys.argv[1:]):  # a missing apache2/logrotate stops `doit update` before it touches anything
        try:
            preflight.check(settings)
        except PvwError as err:
            _mail_start_failure(path, str(err), settings.notify, settings)
            raise InvalidDodoFile(redact_text(str(err))) from None
    state = settings.layout.state
    try:
        state.mkdir(parents=True, exist_ok=True)
        if not os.access(state, os.W_OK):
            cause = errno.EROFS if os.statvfs(state).f_flag & os.ST_RDONLY else errno.EACCES
            raise OSError(cause, os.strerror(cause))
    except OSError as err:
        message = f"{path}: [deploy] root: cannot write {state}: {err.strerror}"
        _mail_start_failure(path, message, settings.notify, settings)
        raise InvalidDodoFile(redact_text(message)) from None
    _settings = settings
    return settings


# doit's commands other than `run`, and its options that take a value.
_DOIT_COMMANDS = {"auto", "clean", "dumpdb", "forget", "help", "ignore", "info", "list", "reset-dep",
                  "strace", "tabcompletion"}
_VALUE_OPTIONS = {"-f", "--file", "-d", "--dir", "--db-file", "--dep-file", "--backend", "--check_file_uptodate",
                  "--codec-cls", "-v", "--verbosity", "-r", "--reporter", "-o", "--output-file", "-n",
                  "--process", "-P", "--parallel-type", "--failure-verbosity"}


def runs_update(argv: list[str]) -> bool:
    """Best guess from doit's command line whether it runs ``update`` (the default task)."""
    words, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-") and "=" not in arg:
            words.append(arg)
    if words and words[0] in _DOIT_COMMANDS:
        return False
    tasks = words[1:] if words[:1] == ["run"] else words
    return not tasks or "update" in tasks


def _mail_start_failure(path: Path, error: str, cfg: config.Notify | None,
                        settings: config.Settings | None = None) -> None:
    """Mail that ``doit update`` could not start, when ``[notify]`` is usable.  Never raises."""
    if cfg is None or not runs_update(sys.argv[1:]):
        return
    from . import notify

    live = notify.live_description(settings) if settings else ""
    notify.config_failed(cfg, path, redact_text(error), live)


def _setup_logging() -> None:
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(message)s" if sys.stderr.isatty() else "%(asctime)s %(levelname)s %(message)s"
    handler.setFormatter(_RedactingFormatter(fmt, "%Y-%m-%dT%H:%M:%S"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def doit_config(settings: config.Settings) -> dict:
    """DOIT_CONFIG for one deployment: its own sqlite dep file under ROOT."""
    return {
        "minversion": "0.36.0",
        "default_tasks": ["update"],
        "backend": "sqlite3",
        "dep_file": str(settings.layout.dep_file),
        "reporter": make_reporter(settings),
        "verbosity": 2,
        "sort": "definition",
    }


def step(func: Callable, *args, **kwargs) -> tuple:
    """A doit python-action calling ``func``; a PvwError fails the task with its message."""
    return (_run_step, (func, *args), kwargs)


def _run_step(func: Callable, *args, **kwargs):
    try:
        result = func(*args, **kwargs)
    except PvwError as err:
        return TaskFailed(str(err))
    except OSError as err:  # disk full, permissions: name the file, skip the traceback
        where = f": {err.filename}" if err.filename else ""
        return TaskFailed(f"{err.strerror or err}{where}")
    if result is False:
        return TaskFailed(f"{func.__name__} reported failure")
    return result if isinstance(result, dict) else None


def check(func: Callable, *args, **kwargs) -> Callable:
    """An ``uptodate`` callable from a plain predicate; errors answer False (never raise)."""

    def uptodate(task, values) -> bool:
        try:
            return bool(func(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - doit crashes with exit 3 on a raising uptodate
            log.info("%s: check failed (%s); will run", task.name, redact_text(str(err)))
            return False

    uptodate.__name__ = getattr(func, "__name__", "check")
    return uptodate


def changed(settings: config.Settings, name: str, *sections: str, extra: dict | None = None) -> config_changed:
    """``config_changed`` on only the config sections (and extra values) a task reads."""
    data = {section: settings.section(section) for section in sections}
    data.update(extra or {})
    return config_changed(data)


def progress_bar() -> "ProgressBar | None":
    """A download progress callback when stdout is a terminal, else None (cron logs stay clean)."""
    return ProgressBar(sys.stdout) if sys.stdout.isatty() else None


def _mib(count: float) -> str:
    return f"{count / (1 << 20):.1f} MiB"


class ProgressBar:
    """``[####....]  46% 12.3 MiB/s``, or ``123.4 MiB 12.3 MiB/s`` without a known size.

    ``end()`` finishes the line (the download calls it on success and failure),
    so an error message never lands on the bar's line.
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.shown = 0.0
        self.last: tuple[int, int | None] | None = None  # the latest figures, drawn or not

    def __call__(self, done: int, total: int | None) -> None:
        self.last = (done, total)
        now = time.monotonic()
        finished = bool(total) and done >= total
        if now - self.shown < 0.2 and not finished:
            return
        self.shown = now
        self._draw(done, total, now)
        if finished:
            self.end()

    def _draw(self, done: int, total: int | None, now: float) -> None:
        speed = f"{_mib(done / max(now - self.started, 1e-3))}/s"
        if total:
            percent = min(100, int(done * 100 / total))
            filled = percent * 30 // 100
            self.stream.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% {speed}  ")
        else:
            self.stream.write(f"\r  {_mib(done)} {speed}  ")
        self.stream.flush()

    def end(self) -> None:
        """Draw the latest figures and end the line (once)."""
        if self.last is None:
            return
        self._draw(*self.last, time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
        self.last = None


READ_ONLY_TASKS = {"status", "notify_test"}


def make_reporter(settings: config.Settings) -> type:
    """A console reporter that also logs to update.log and mails on failure."""
    update_log = UpdateLog(settings.layout.update_log)

    class PvwReporter(ConsoleReporter):
        desc = "pvwtasks console + update.log"

        def initialize(self, tasks, selected_tasks):
            RUN.selected = list(selected_tasks)
            RUN.started = time.time()
            self.logging = not set(selected_tasks) <= READ_ONLY_TASKS
            self.quiet_console = update_log.stdout_is_log()
            if self.logging:
                update_log.write(f"start: doit {' '.join(selected_tasks)} config={settings.path} (pvwtasks {__version__})")

        def write(self, text):
            if not self.quiet_console:
                super().write(redact_text(text))

        def execute_task(self, task):
            if task.actions and not task.name.startswith("_"):
                RUN.ran.append(task.name)
                if self.logging:
                    update_log.write(f"run {task.name}")
            if task.name not in READ_ONLY_TASKS:  # `doit status --json` must print only JSON
                super().execute_task(task)

        def skip_uptodate(self, task):
            if not task.name.startswith("_"):
                RUN.skipped.append(task.name)
                if self.logging:
                    update_log.write(f"up-to-date {task.name}")
            super().skip_uptodate(task)

        def add_failure(self, task, fail):
            message = fail.get_msg().strip() if not isinstance(fail, TaskFailed) else str(fail.message)
            first = redact_text(message.splitlines()[-1] if message else type(fail).__name__)
            RUN.failed[task.name] = redact_text(message)
            if self.logging:
                update_log.write(f"failed {task.name}: {first}")
            if isinstance(fail, TaskFailed):
                # An expected failure: one clear line, no traceback.
                sys.stderr.write(f"ERROR: {task.name}: {redact_text(message)}\n")
            else:
                super().add_failure(task, fail)

        def runtime_error(self, msg):
            RUN.failed.setdefault("doit", msg)
            if self.logging:
                update_log.write(f"error: {redact_text(msg.strip())}")
            super().runtime_error(msg)

        def complete_run(self):
            super().complete_run()
            if not self.logging:
                return
            result = "failed" if RUN.failed else "ok"
            if "update" in RUN.selected:
                if "lock" not in RUN.failed:  # a run refused by the lock did nothing worth recording
                    save_last_run(settings.layout.state, RUN)
                if RUN.failed:
                    _mail_failure(settings)
            update_log.write(f"end: {result} in {RUN.duration():.1f} s")

    return PvwReporter


def _mail_failure(settings: config.Settings) -> None:
    from . import notify  # only needed when something failed

    notify.run_failed(settings, RUN)


def dodo_path() -> Path:
    """Absolute path of the dodo.py doit is running, for the crontab line."""
    main = sys.modules.get("dodo")
    if main is not None and getattr(main, "__file__", None):
        return Path(main.__file__).resolve()
    return Path(__file__).resolve().parent.parent / "dodo.py"
