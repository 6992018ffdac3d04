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

import grp
import hashlib
import json
import logging
import os
import pwd
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import processes, proxyfile, systemd
from .config import Settings
from .errors import AccountError, LauncherError, PortBusy
from .fsutil import atomic_write_text, remove_quietly
from .layout import LauncherRecord, SlotsRecord, live_name, read_pid

if TYPE_CHECKING:  # psutil and health (asyncio, requests) are imported where a start or a probe needs them
    import psutil

log = logging.getLogger(__name__)

SLOTS = ("a", "b")  # the two launcher slots (see pvwtasks.slots)


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
    sync_unit_pid(settings)
    launcher = processes.find_launcher(settings)
    return _why_restart(settings, None if launcher is None else (launcher.pid, launcher.create_time))


def _why_restart(settings: Settings, launcher: tuple[int, Callable[[], float]] | None) -> str | None:
    """:func:`why_restart` given the running launcher's PID and a function answering its start time."""
    layout, cfg = settings.layout, settings.launcher
    if launcher is None:
        return "the launcher is not running"
    pid, create_time = launcher
    started = record(settings)
    if started is None or pid != started.pid or abs(create_time() - started.create_time) > 1:
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

    The ``uptodate`` check of the ``launcher`` task, for the active slot
    (:func:`active`): never raises.  It
    first looks through /proc (:func:`pvwtasks.processes.quick_launcher_identity`,
    no psutil import); only when that does not say "as deployed" does it
    ask psutil (:func:`why_restart`), whose answer is the one that counts.
    """
    try:
        settings = active(settings)
        quick = processes.quick_launcher_identity(settings)
        if quick is not None and _why_restart(settings, (quick[0], lambda: quick[1])) is None:
            return True
        return why_restart(settings) is None
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("launcher check failed: %s", err)
        return False


def active(settings: Settings) -> Settings:
    """The settings of the launcher slot taking new sessions (``state/slots.json``; slot a without one)."""
    chosen = SlotsRecord.load(settings.layout.slots_record)
    return settings.for_slot(chosen.active if chosen is not None and chosen.active in SLOTS else "a")


# --------------------------------------------------------------------------
# Health check, recorded
# --------------------------------------------------------------------------


def health_check(settings: Settings, front: bool | None = None) -> dict:
    """Run :func:`pvwtasks.health.check` and keep its result in the launcher record.

    ``front`` False checks the launcher on its own port even when Apache is
    managed (a new slot, before the front sends it anyone).
    Raises LauncherError when the check fails (recorded as failed too).
    """
    from . import health

    try:
        result = health.check(settings, front)
    except LauncherError as err:
        _update_record(settings, health={"ok": False, "at": time.time(), "error": str(err)})
        raise
    _update_record(settings, health=result)
    return result


# --------------------------------------------------------------------------
# Stop and start
# --------------------------------------------------------------------------



def stop(settings: Settings) -> dict:
    """Stop this deployment's launchers (both slots) and every session process, orphans included.

    SIGTERM, then up to ``[launcher] stop_grace`` seconds, then SIGKILL.
    When it returns no process of this deployment is left and the session
    ports it held are free.  Removes the pidfiles and clears the proxy files.
    Raises LauncherError when a process survives SIGKILL.
    """
    started = time.monotonic()
    for slot in SLOTS:
        _stop_unit(settings.for_slot(slot))
    ended, killed = processes.stop_all(settings, every_slot=True)
    for slot in SLOTS:
        _forget(settings.for_slot(slot))
    return _stopped(ended, killed, started)


def _stopped(ended: int, killed: int, started: float) -> dict:
    """Log how a stop went (``started``: its time.monotonic()) and return the counts."""
    if ended:
        log.info("launcher stopped: %d process(es) ended (%d with SIGKILL) in %.2f s",
                 ended, killed, time.monotonic() - started)
    else:
        log.info("launcher was not running; nothing to stop")
    return {"ended": ended, "killed": killed}


def _stop_unit(settings: Settings) -> None:
    """Under systemd, stop the slot's launcher service first (it ends the slot's control group)."""
    if supervised_by_systemd(settings) and unit_installed(settings):
        systemd.systemctl("stop", launcher_unit(settings))


def _forget(settings: Settings) -> None:
    """After a slot's processes ended: no pidfile, no running PID in its record, no session lines."""
    remove_quietly(settings.layout.pid_file)
    _update_record(settings, pid=None)
    if settings.slot == "a" or settings.layout.proxy_file.exists():
        proxyfile.clear_proxy_file(settings)


def stop_slot(settings: Settings) -> dict:
    """Stop one slot's launcher and its sessions (``settings.for_slot(s)``), leaving the other slot alone."""
    started = time.monotonic()
    _stop_unit(settings)
    ended, killed = processes.stop_all(settings)
    _forget(settings)
    return _stopped(ended, killed, started)


ROOT_REFUSED = ("refusing to run the launcher as root: set [launcher] user to a service account "
                "(or allow_root = true)")


def service_account(settings: Settings) -> pwd.struct_passwd | None:
    """The account the launcher and its sessions run as, when pvwtasks must switch to it; else None.

    Only root can switch: as root, ``[launcher] user`` is that account, and
    with no user (or user root) the launcher runs as root only when
    ``[launcher] allow_root`` is true.  As any other user the launcher runs
    as that user.  Raises LauncherError for an unknown account or a refused root.
    """
    cfg = settings.launcher
    if os.geteuid() != 0:
        return None
    if not cfg.user:
        if cfg.allow_root:
            return None
        raise AccountError(ROOT_REFUSED)
    try:
        account = pwd.getpwnam(cfg.user)
    except KeyError:
        raise AccountError(f"{settings.path}: [launcher] user: no such user {cfg.user!r}; "
                            f"create it with `useradd --system {cfg.user}`") from None
    if account.pw_uid == 0:
        if cfg.allow_root:
            return None
        raise AccountError(ROOT_REFUSED)
    return account


def _run_as(settings: Settings) -> dict:
    """``subprocess.Popen`` keywords that start the launcher as the service account ({} for none).

    Gives the account the files the launcher writes: logs/launcher.log and
    the session log folder (proxy.txt it writes through its proxy group).
    """
    account = service_account(settings)
    if account is None:
        return {}
    layout = settings.layout
    for path in (layout.launcher_log, layout.session_logs, *sorted(layout.session_logs.glob("*"))):
        if path.exists() and not path.is_symlink():
            os.chown(path, account.pw_uid, account.pw_gid)
    try:
        extra = [grp.getgrnam(settings.launcher.proxy_group).gr_gid]
    except KeyError:
        extra = []
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": extra}


def supervised_by_systemd(settings: Settings) -> bool:
    """True when systemd starts and stops the launcher (``[deploy] supervisor = "systemd"``)."""
    return settings.deploy.supervisor == "systemd"


def launcher_unit(settings: Settings) -> str:
    """The launcher service of ``settings.slot``: an instance of the deployment's template unit."""
    return systemd.slot_unit(systemd.instance_name(settings.layout.root), settings.slot)


def unit_installed(settings: Settings) -> bool:
    """The launcher services' template unit file is in ``[deploy] systemd_unit_dir``."""
    template = systemd.unit_names(systemd.instance_name(settings.layout.root))["launcher"]
    return (settings.deploy.systemd_unit_dir / template).is_file()


def check_launch_files(settings: Settings) -> None:
    """Refuse to (re)start with a missing start.sh or an unusable launch.json (before any downtime)."""
    service_account(settings)  # refuses root before anything is stopped
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
    import psutil

    from . import health

    layout, cfg = settings.layout, settings.launcher
    check_launch_files(settings)
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
    log_path.touch()
    as_account = _run_as(settings)  # the files it writes become the service account's
    if supervised_by_systemd(settings) and unit_installed(settings):
        proc = _start_unit(settings)  # the unit's User= is that account
    else:
        if supervised_by_systemd(settings):
            log.info("%s is not installed yet: starting the launcher directly; `doit install_systemd` "
                     "hands it to systemd", launcher_unit(settings))
        with open(os.devnull, "rb") as devnull, open(log_path, "ab") as out:
            proc = subprocess.Popen(
                ["/bin/sh", str(layout.start_script)], stdin=devnull, stdout=out, stderr=out,
                cwd=layout.root, start_new_session=True, close_fds=True, **as_account,
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
            if isinstance(proc, _UnitProcess):
                systemd.systemctl("stop", launcher_unit(settings))  # else systemd restarts what we end
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


class _UnitProcess:
    """The launcher started by systemd: its main PID, polled like a ``Popen``."""

    def __init__(self, settings: Settings, pid: int) -> None:
        self.settings, self.pid, self.returncode = settings, pid, None

    def poll(self) -> int | None:
        import psutil

        if self.returncode is None and not psutil.pid_exists(self.pid):
            self.returncode = 1  # systemd reaps it; its status is in `systemctl status`
        return self.returncode


def boot_with(settings: Settings) -> None:
    """Under systemd, make the slot of ``settings`` the launcher service enabled at boot (the other one not).

    Does nothing for cron supervision (its @reboot line runs the watchdog,
    which starts the active slot) or before ``doit install_systemd``.
    """
    if not supervised_by_systemd(settings) or not unit_installed(settings):
        return
    other = settings.for_slot("b" if settings.slot == "a" else "a")
    systemd.systemctl("enable", launcher_unit(settings))
    systemd.systemctl("disable", launcher_unit(other))


def sync_unit_pid(settings: Settings) -> None:
    """Under systemd, point the pidfile at the launcher service's main PID (systemd may have restarted it).

    Does nothing for cron supervision, or when systemctl cannot answer.
    Never raises.
    """
    if not supervised_by_systemd(settings) or not unit_installed(settings):
        return
    try:
        shown = systemd.systemctl("show", "--property=MainPID", "--value", launcher_unit(settings)).stdout.strip()
    except Exception as err:  # noqa: BLE001 - status and checks must answer without systemd
        log.debug("cannot ask systemd for the launcher's PID: %s", err)
        return
    if shown.isdigit() and int(shown) and read_pid(settings.layout.pid_file) != int(shown):
        atomic_write_text(settings.layout.pid_file, f"{shown}\n", 0o644)
        log.info("the launcher service's main PID is now %s", shown)


def _start_unit(settings: Settings) -> _UnitProcess:
    """``systemctl start`` the launcher service; its main PID stands for the process."""
    unit = launcher_unit(settings)
    systemd.systemctl("start", unit)
    shown = systemd.systemctl("show", "--property=MainPID", "--value", unit).stdout.strip()
    if not shown.isdigit() or int(shown) == 0:
        raise LauncherError(f"systemctl start {unit} left no main process; see `systemctl status {unit}`")
    return _UnitProcess(settings, int(shown))


def start(settings: Settings, front: bool | None = None) -> dict:
    """Start the launcher if it is not running, wait until it answers, then health-check it.

    Orphaned apps of a killed launcher are ended first and proxy.txt is
    cleared.  ``front`` as in :func:`health_check`.  Raises LauncherError
    naming the port and quoting the launcher log when it does not come up,
    or when the health check fails.
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
    return {"pid": launcher.pid, "started": True, "health": health_check(settings, front)}


def restart(settings: Settings, every_slot: bool = True) -> dict:
    """Stop the launcher and its sessions, start it again and health-check it.

    Stops both slots, or with ``every_slot`` False only ``settings.slot``
    (a draining slot keeps its sessions).  The server is down only between
    the stop and the launcher answering.  Raises LauncherError before
    stopping anything when start.sh or launch.json is unusable.
    """
    check_launch_files(settings)
    if every_slot:
        stop(settings)
    else:
        stop_slot(settings)
    launcher = _launch(settings)
    return {"pid": launcher.pid, "health": health_check(settings)}
