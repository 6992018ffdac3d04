"""The one module that knows doit: loading the settings, action and uptodate wrappers, DOIT_CONFIG, the reporter.

Everything else in pvwtasks takes plain values and raises PvwError; this
module turns those into doit's vocabulary (TaskFailed, InvalidDodoFile,
uptodate objects) and binds :mod:`pvwtasks.reporter` to doit's reporter
hooks.  Loading the dodo file only reads the config: actions and checks
name their function as ``"module:function"`` and import it when they run,
and everything a run needs first (logging, ROOT/.pvwtasks, the programs
``update`` relies on) happens in the reporter's ``initialize``, which doit
calls with the tasks it selected, and only for ``doit run``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from pathlib import Path
from typing import Callable

from doit import get_var
from doit.exceptions import InvalidDodoFile, TaskFailed
from doit.globals import Globals
from doit.loader import DelayedLoader, task_params  # noqa: F401 - task_params is for dodo.py
from doit.reporter import ConsoleReporter
from doit.tools import config_changed

from . import config, reporter
from .errors import PvwError
from .runlog import RunRecord, redact_text

log = logging.getLogger("pvwtasks")

# Filled by the reporter while tasks run; read by the notify step.
RUN = RunRecord()

# doit opens its dep file before any task runs; on a ROOT not set up yet it starts in memory and the
# reporter moves it to ROOT/.pvwtasks once a run that writes has made that folder.
_MEMORY = ":memory:"


# -- settings -------------------------------------------------------------------------------------


class ConfigFailure:
    """Stands in for the Settings of a config that cannot be loaded.

    Reading any setting raises doit's one-line ``InvalidDodoFile`` (exit 3):
    that is what ``doit list`` and ``doit info`` show.  ``doit run`` never
    reads one (see :func:`_stand_in_for_tasks`); its reporter mails the
    error when ``update`` was asked for, then stops with the same line.
    """

    def __init__(self, path: Path, message: str, salvaged: config.Settings | None = None) -> None:
        self.path = path
        self.message = message
        self.salvaged = salvaged  # what stop_launcher and status can still use (config.salvage)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "create_doit_tasks":  # doit and Python probe objects for these
            raise AttributeError(name)
        raise InvalidDodoFile(self.message)


def load_settings() -> config.Settings | ConfigFailure:
    """Read the config named by ``config=``, ``$PVW_CONFIG`` or the default.  Touches nothing on disk.

    A config that cannot be loaded gives a :class:`ConfigFailure` instead of
    raising, so that ``doit update`` can still mail it.
    """
    global _CONFIG_ERROR
    path = config.config_path(get_var("config"))
    try:
        return config.load(path)
    except PvwError as err:
        _CONFIG_ERROR = redact_text(str(err))
        return ConfigFailure(path, _CONFIG_ERROR, config.salvage(path))


_CONFIG_ERROR = ""


def config_error() -> str:
    """The config's one-line error when it cannot be loaded, else "" (``status`` reports it)."""
    return _CONFIG_ERROR


def survives_bad_config(creator: Callable) -> Callable:
    """Mark a task creator that still runs on a config that cannot be loaded (stop_launcher, status).

    It then gets what :func:`config.salvage` could read, and the run warns
    with the config's error first.
    """
    creator.survives_bad_config = True
    return creator


def doit_config(settings: config.Settings | ConfigFailure, default_task: str, tasks: dict) -> dict:
    """DOIT_CONFIG for one deployment: its own sqlite dep file under ROOT and pvwtasks' reporter.

    ``default_task`` is what cron runs (``update``): the run that is
    preflighted, recorded in ``last-run.json`` and mailed on failure.
    ``tasks`` is the dodo's namespace: on a config that cannot be loaded its
    task creators are replaced so that no setting is read before the
    reporter stops the run (see :func:`_stand_in_for_tasks`).
    """
    if isinstance(settings, ConfigFailure):
        survivors = _stand_in_for_tasks(tasks, default_task, settings)
        dep_file = _MEMORY
        reporter_cls = _config_failure_reporter(settings, default_task, survivors)
    else:
        dep = settings.layout.dep_file
        dep_file = str(dep) if dep.parent.is_dir() else _MEMORY
        reporter_cls = _reporter(settings, default_task)
    return {
        "minversion": "0.36.0",
        "default_tasks": [default_task],
        "backend": "sqlite3",
        "dep_file": dep_file,
        "reporter": reporter_cls,
        "verbosity": 2,
        "sort": "definition",
    }


def _stand_in_for_tasks(tasks: dict, default_task: str, failure: ConfigFailure) -> None:
    """On a config that cannot be loaded, keep every task name known to doit without reading a setting.

    The default task becomes a creator deferred to the run (``create_after``)
    that raises the config error: ``doit run`` never calls it (the reporter
    stops first, mailing the error for ``update``), while ``doit list`` and
    ``doit info`` do, and stop with the error.  The other tasks become
    stand-ins with the same options (their ``@task_params``, e.g.
    ``doit status --json``), so that selecting them reaches the reporter
    too, which stops with the same line.  Creators marked
    :func:`survives_bad_config` stay when part of the config could be read:
    the dodo's ``SETTINGS`` becomes that part.  Returns their task names.
    """
    survivors = set()
    if failure.salvaged is not None:
        tasks["SETTINGS"] = failure.salvaged
    for name, creator in list(tasks.items()):
        if not (name.startswith("task_") and callable(creator)):
            continue
        if name == f"task_{default_task}":
            tasks[name] = _failing(failure, creator.__doc__)
        elif failure.salvaged is not None and getattr(creator, "survives_bad_config", False):
            survivors.add(name.removeprefix("task_"))
        else:
            tasks[name] = _stand_in(creator)
    return survivors


def _failing(failure: ConfigFailure, doc: str | None) -> Callable[[], dict]:
    def create() -> dict:
        raise InvalidDodoFile(failure.message)

    create.__doc__ = doc
    create.doit_create_after = DelayedLoader(create)
    return create


def _stand_in(creator: Callable) -> Callable[..., dict]:
    def create(**_options) -> dict:
        return {"actions": None, "doc": creator.__doc__}

    if hasattr(creator, "_task_creator_params"):  # the options of `task_params`, e.g. status --json
        create._task_creator_params = creator._task_creator_params
    return create


# -- actions and checks -----------------------------------------------------------------------------


def _resolve(ref: str) -> Callable:
    """The function named ``"package.module:function"``, imported now."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def step(ref: str, *args, **kwargs) -> tuple:
    """A doit python-action calling the function ``ref`` (``"module:function"``); a PvwError fails the task."""
    return (_run_step, (ref, *args), kwargs)


def _run_step(ref: str, *args, **kwargs):
    func = _resolve(ref)
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


class Check:
    """An ``uptodate`` object: the predicate ``ref`` answers True when the task has nothing to do.

    ``why`` says in words what it checks; ``doit info TASK`` prints it.  Any
    error answers False (the task runs and reports it): it never raises.
    """

    def __init__(self, ref: str, args: tuple, kwargs: dict, why: str) -> None:
        self.ref, self.args, self.kwargs, self.why = ref, args, kwargs, why

    def __call__(self, task, values) -> bool:
        try:
            return bool(_resolve(self.ref)(*self.args, **self.kwargs))
        except Exception as err:  # noqa: BLE001 - doit crashes with exit 3 on a raising uptodate
            log.info("%s: check failed (%s); will run", task.name, redact_text(str(err)))
            return False

    def __repr__(self) -> str:
        return self.why


def check(ref: str, *args, why: str, **kwargs) -> Check:
    """An ``uptodate`` check calling the predicate ``ref`` (``"module:function"``) with ``args``."""
    return Check(ref, args, kwargs, why)


class ConfigUnchanged(config_changed):
    """doit's ``config_changed`` on a slice of the config, named by its keys (never its values) for ``doit info``."""

    def __init__(self, data: dict, keys: str) -> None:
        super().__init__(data)
        self.keys = keys

    def __repr__(self) -> str:
        return f"config unchanged since the last run: {self.keys}"


def changed(settings: config.Settings, *sections: str, extra: dict | None = None) -> ConfigUnchanged:
    """``config_changed`` on only the config sections (and extra values) a task reads."""
    data = {section: settings.section(section) for section in sections}
    data.update(extra or {})
    return ConfigUnchanged(data, ", ".join([f"[{s}]" for s in sections] + _names(extra or {})))


def _names(values: dict, prefix: str = "") -> list[str]:
    names = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            names.extend(_names(value, f"{prefix}{key}."))
        else:
            names.append(f"{prefix}{key}")
    return names


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


def dodo_path() -> Path:
    """Absolute path of the dodo.py doit is running, for the crontab line."""
    main = sys.modules.get("dodo")
    if main is not None and getattr(main, "__file__", None):
        return Path(main.__file__).resolve()
    return Path(__file__).resolve().parent.parent / "dodo.py"


# -- the reporter ----------------------------------------------------------------------------------


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


def _use_dep_file(path: Path) -> None:
    """Move doit's dep manager from memory to ``path`` (it started in memory because ROOT was not set up).

    Called from the reporter's ``initialize``, before doit reads or writes
    any task's state, so nothing is lost.  It re-runs doit's own
    ``Dependency.__init__`` with the same backend class, checker and codec
    (attributes of doit 0.36 and 0.37), on the object the runner holds.
    """
    dep = Globals.dep_manager
    if dep is not None and dep.name == _MEMORY:
        dep.__init__(dep.db_class, str(path), checker_cls=type(dep.checker), codec_cls=type(dep.backend.codec))


def _reporter(settings: config.Settings, default_task: str) -> type:
    """doit's console reporter bound to a :class:`reporter.RunReport` of this deployment."""

    class PvwReporter(ConsoleReporter):
        desc = "pvwtasks console + update.log"

        def initialize(self, tasks, selected_tasks):
            _setup_logging()
            meta = {name: dict(task.meta or {}) for name, task in tasks.items()}
            self.report = report = reporter.RunReport(settings, default_task, RUN)
            self.read_only_tasks = {name for name, values in meta.items() if values.get("read_only")}
            self.quiet_console = False
            if not report.read_only(selected_tasks, meta):
                try:  # before anything is touched: doit's "error before task execution starts", exit 3
                    reporter.prepare(settings, update=report.is_update(selected_tasks))
                except PvwError as err:
                    raise InvalidDodoFile(redact_text(str(err))) from None
                _use_dep_file(settings.layout.dep_file)
            self.quiet_console = report.quiet_console
            report.start(selected_tasks, meta)

        def write(self, text):
            if not self.quiet_console:
                super().write(redact_text(text))

        def execute_task(self, task):
            if task.actions and not task.name.startswith("_"):
                self.report.ran(task.name)
            if task.name not in self.read_only_tasks:  # `doit status --json` must print only JSON
                super().execute_task(task)

        def skip_uptodate(self, task):
            if not task.name.startswith("_"):
                self.report.skipped(task.name)
            super().skip_uptodate(task)

        def add_failure(self, task, fail):
            message = str(fail.message) if isinstance(fail, TaskFailed) else fail.get_msg().strip()
            self.report.failed(task.name, message or type(fail).__name__)
            if isinstance(fail, TaskFailed):
                # An expected failure: one clear line, no traceback.
                sys.stderr.write(f"ERROR: {task.name}: {redact_text(message)}\n")
            else:
                super().add_failure(task, fail)

        def runtime_error(self, msg):
            self.report.error(msg)
            super().runtime_error(msg)

        def complete_run(self):
            super().complete_run()
            if hasattr(self, "report"):  # not when initialize stopped the run
                self.report.finish()

    return PvwReporter


def _config_failure_reporter(failure: ConfigFailure, default_task: str, survivors: set[str]) -> type:
    """A reporter that stops every run at once with the config error, mailing it for ``update``.

    Runs made only of ``survivors`` (stop_launcher, status) go on with what
    the config still says, after a warning line.
    """
    base = _reporter(failure.salvaged, default_task) if failure.salvaged is not None else ConsoleReporter

    class ConfigFailureReporter(base):
        desc = "pvwtasks: the config cannot be loaded"

        def initialize(self, tasks, selected_tasks):
            if survivors and set(selected_tasks) <= survivors:
                sys.stderr.write(f"WARNING: {failure.message}; {', '.join(selected_tasks)} "
                                 "uses what the config still says\n")
                return super().initialize(tasks, selected_tasks)
            if default_task in selected_tasks:
                _setup_logging()
                reporter.config_failed(failure.path, failure.message)
            raise InvalidDodoFile(failure.message)

    return ConfigFailureReporter
