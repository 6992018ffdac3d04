"""Start, stop and restart the wslink launcher of one deployment, and keep its record.

The launcher runs detached from ``ROOT/bin/start.sh`` in its own session;
its PID is kept in ``ROOT/logs/launcher.pid`` and confirmed against its
command line before any use (see :mod:`pvwtasks.processes`).  What the
running launcher was started with (PID, release, sha256 of ``launch.json``
and ``start.sh``, last health check) is the launcher record
(``layout.LauncherRecord``); ``doit update`` restarts only when that record
no longer matches the files and the live process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import psutil

from . import health, processes, proxyfile
from .config import Settings
from .errors import LauncherError
from .fsutil import atomic_write_text, remove_quietly
from .layout import LauncherRecord, live_name

log = logging.getLogger(__name__)


class PortBusy(LauncherError):
    """The launcher's port is held by a process that is not this deployment's."""


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# --------------------------------------------------------------------------
# The launcher record
# --------------------------------------------------------------------------


def record(settings: Settings) -> LauncherRecord | None:
    """What the running (or last) launcher was started with, or None."""
    return LauncherRecord.load(settings.layout.launcher_record)


def _write_record(settings: Settings, launcher: psutil.Process) -> None:
    layout = settings.layout
    LauncherRecord(
        pid=launcher.pid,
        create_time=launcher.create_time(),
        release=live_name(layout),
        launch_json=_sha256(layout.rendered_launch_json),
        start_sh=_sha256(layout.rendered_start_script),
        port=settings.launcher.port,
        started_at=time.time(),
    ).save(layout.launcher_record)


def _update_record(settings: Settings, **changes) -> None:
    old = record(settings)
    if old is not None:
        old.replace(**changes).save(settings.layout.launcher_record)


def why_restart(settings: Settings) -> str | None:
    """Why the launcher does not run as deployed, in words; None when it does.

    As deployed: running (pidfile and command line), the process the record
    names, started with the live release and the current launch.json and
    start.sh, last health check ok, and answering on its port.
    """
    layout, cfg = settings.layout, settings.launcher
    launcher = processes.find_launcher(settings)
    if launcher is None:
        return "the launcher is not running"
    started = record(settings)
    if started is None or launcher.pid != started.pid or abs(launcher.create_time() - started.create_time) > 1:
        return "no record of how the running launcher was started"
    live = live_name(layout)
    if started.release != live:
        return f"the live release switched from {started.release} to {live}"
    if started.launch_json != _sha256(layout.rendered_launch_json):
        return "launch.json changed"
    if started.start_sh != _sha256(layout.rendered_start_script):
        return "start.sh changed"
    if not (started.health or {}).get("ok"):
        return "the last health check failed"
    if not processes.port_answers(cfg.connect_host, cfg.port):
        return f"the launcher does not answer on port {cfg.port}"
    return None


def running_as_deployed(settings: Settings) -> bool:
    """True when the launcher runs, healthy, with the live release and the current launch.json/start.sh.

    The ``uptodate`` check of the ``launcher`` task: never raises.
    """
    try:
        return why_restart(settings) is None
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("launcher check failed: %s", err)
        return False


# --------------------------------------------------------------------------
# Health check, recorded
# --------------------------------------------------------------------------


def health_check(settings: Settings) -> dict:
    """Run :func:`pvwtasks.health.check` and keep its result in the launcher record.

    Raises LauncherError when the check fails (recorded as failed too).
    """
    try:
        result = health.check(settings)
    except LauncherError as err:
        _update_record(settings, health={"ok": False, "at": time.time(), "error": str(err)})
        raise
    _update_record(settings, health=result)
    return result


# --------------------------------------------------------------------------
# Stop and start
# --------------------------------------------------------------------------


SLOTS = ("a", "b")


def stop(settings: Settings) -> dict:
    """Stop this deployment's launchers (both slots) and every session process, orphans included.

    SIGTERM, then up to ``[launcher] stop_grace`` seconds, then SIGKILL.
    When it returns no process of this deployment is left and the session
    ports it held are free.  Removes the pidfiles and clears the proxy files.
    Raises LauncherError when a process survives SIGKILL.
    """
    started = time.monotonic()
    ended, killed = processes.stop_all(settings, every_slot=True)
    for slot in SLOTS:
        _forget(settings.for_slot(slot))
    if ended:
        log.info("launcher stopped: %d process(es) ended (%d with SIGKILL) in %.2f s",
                 ended, killed, time.monotonic() - started)
    else:
        log.info("launcher was not running; nothing to stop")
    return {"ended": ended, "killed": killed}


def _forget(settings: Settings) -> None:
    """After a slot's processes ended: no pidfile, no running PID in its record, no session lines."""
    remove_quietly(settings.layout.pid_file)
    _update_record(settings, pid=None)
    if settings.slot == "a" or settings.layout.proxy_file.exists():
        proxyfile.clear_proxy_file(settings)


def stop_slot(settings: Settings) -> dict:
    """Stop one slot's launcher and its sessions (``settings.for_slot(s)``), leaving the other slot alone."""
    started = time.monotonic()
    ended, killed = processes.stop_all(settings)
    _forget(settings)
    if ended:
        log.info("launcher stopped: %d process(es) ended (%d with SIGKILL) in %.2f s",
                 ended, killed, time.monotonic() - started)
    else:
        log.info("launcher was not running; nothing to stop")
    return {"ended": ended, "killed": killed}


def _check_launch_files(settings: Settings) -> None:
    """Refuse to (re)start with a missing start.sh or an unusable launch.json (before any downtime)."""
    start_sh, launch_json = settings.layout.start_script, settings.layout.launch_json
    if not start_sh.is_file():
        raise LauncherError(f"{start_sh} missing; run `doit render_start` first")
    try:
        config = json.loads(launch_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LauncherError(f"{launch_json} missing; run `doit render_launcher` first") from None
    except (OSError, ValueError) as err:
        raise LauncherError(f"{launch_json}: not usable JSON ({err})") from None
    if not isinstance(config, dict):
        raise LauncherError(f"{launch_json}: not a JSON object")
    missing = [k for k in ("configuration", "apps", "properties", "resources") if k not in config]
    if missing:
        raise LauncherError(f"{launch_json}: missing {', '.join(missing)}")


def _launch(settings: Settings) -> psutil.Process:
    """Run start.sh detached, record its PID, wait until the launcher answers on its port."""
    layout, cfg = settings.layout, settings.launcher
    _check_launch_files(settings)
    held = processes.listeners([cfg.port])
    if held:
        pid = held[cfg.port]
        try:
            who = processes.describe(psutil.Process(pid)) if pid else "a process this user cannot see"
        except psutil.NoSuchProcess:
            who = f"PID {pid}"
        raise PortBusy(f"launcher port {cfg.port} is already in use by {who}; not starting a second server")
    proxyfile.clear_proxy_file(settings)
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.session_logs.mkdir(parents=True, exist_ok=True)
    log_path = layout.launcher_log
    with open(os.devnull, "rb") as devnull, open(log_path, "ab") as out:
        proc = subprocess.Popen(
            ["/bin/sh", str(layout.start_script)], stdin=devnull, stdout=out, stderr=out,
            cwd=layout.root, start_new_session=True, close_fds=True,
        )
    atomic_write_text(layout.pid_file, f"{proc.pid}\n", 0o644)
    deadline = time.monotonic() + cfg.start_timeout
    while True:
        status = proc.poll()
        if status is not None:
            remove_quietly(layout.pid_file)
            raise LauncherError(f"launcher exited with status {status} before answering on port {cfg.port}; "
                                f"{health.one_line_tail(log_path)}")
        if processes.port_answers(cfg.connect_host, cfg.port, 0.2):
            break
        if time.monotonic() > deadline:
            processes.end_processes([psutil.Process(proc.pid), *processes.deployment_processes(settings)],
                                    cfg.stop_grace)
            remove_quietly(layout.pid_file)
            raise LauncherError(f"launcher did not answer on port {cfg.port} within {cfg.start_timeout:g} s; "
                                f"{health.one_line_tail(log_path)}")
        time.sleep(0.02)
    launcher = psutil.Process(proc.pid)
    proc.returncode = 0  # detached: never reap it from here (it outlives this process)
    _write_record(settings, launcher)
    log.info("launcher started: PID %d on port %d (slot %s)", launcher.pid, cfg.port, settings.slot)
    return launcher


def start(settings: Settings) -> dict:
    """Start the launcher if it is not running, wait until it answers, then health-check it.

    Orphaned apps of a killed launcher are ended first and proxy.txt is
    cleared.  Raises LauncherError naming the port and quoting the
    launcher log when it does not come up, or when the health check fails.
    """
    running = processes.find_launcher(settings)
    if running is not None:
        log.info("launcher already running: PID %d", running.pid)
        return {"pid": running.pid, "started": False}
    leftovers = processes.deployment_processes(settings)
    if leftovers:
        log.warning("ending %d leftover process(es) of a launcher that is gone", len(leftovers))
        processes.end_processes(leftovers, settings.launcher.stop_grace)
    launcher = _launch(settings)
    return {"pid": launcher.pid, "started": True, "health": health_check(settings)}


def restart(settings: Settings) -> dict:
    """Stop the launcher and its sessions, start it again and health-check it.

    The server is down only between the stop and the launcher answering.
    Raises LauncherError before stopping anything when start.sh or
    launch.json is unusable.
    """
    _check_launch_files(settings)
    stop(settings)
    launcher = _launch(settings)
    return {"pid": launcher.pid, "health": health_check(settings)}
