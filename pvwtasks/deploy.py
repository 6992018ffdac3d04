"""Keep the launcher running the live release: ensure-running, health marks and rollback.

The orchestration above process handling: the one place that calls both
the launcher and the releases/render steps.  A restart that passes its
health check marks the live release healthy (``ReleaseRecord.healthy_at``);
a switched-to release that fails it is marked failed and the previous good
release (:func:`pvwtasks.releases.previous_good`) is made live again.
"""

from __future__ import annotations

import logging
import time

from . import launcher, pipeline, processes, releases, render, slots, systemd
from .config import Settings
from .errors import LauncherError, PvwError
from .layout import ReleaseRecord, read_pid

log = logging.getLogger(__name__)


def _mark_healthy(settings: Settings) -> None:
    """Set ``healthy_at`` on the release the launcher was started with, once its health check passed.

    That release was the live one when the launcher started; the launcher
    record keeps both the release and the result of its last check.
    """
    started = launcher.record(settings)
    health = (started.health or {}) if started else {}
    if started and started.release and health.get("ok"):
        releases.mark_healthy(settings.layout, started.release, float(health.get("at") or time.time()))


def _prepare(settings: Settings) -> None:
    """Render a slot's own launch config and start script (slot b's; slot a's are render_launcher's)."""
    if settings.layout.launch_json != settings.layout.rendered_launch_json:
        render.render_file(settings, "launcher")
    if settings.layout.start_script != settings.layout.rendered_start_script:
        render.render_file(settings, "start")


def start(settings: Settings) -> dict:
    """``doit start_launcher`` (and the watchdog): start the active slot's launcher, mark its release healthy.

    Reconciles first (an interrupted switch, a dead draining slot); a
    draining slot is never started again, only the active one.
    """
    slots.reconcile(settings)
    current = slots.active_settings(settings)
    _prepare(current)
    result = launcher.start(current)
    if result.get("started"):
        launcher.boot_with(current)
    _mark_healthy(current)
    return result


def restart(settings: Settings) -> dict:
    """``doit restart_launcher``: stop both slots and their sessions, start slot a, mark the release healthy."""
    launcher.check_launch_files(settings.for_slot("a"))  # before anything stops
    launcher.stop(settings)
    slots.reset(settings, "a")  # the front sends new sessions (and the check through it) to slot a
    result = launcher.start(settings.for_slot("a"))
    launcher.boot_with(settings.for_slot("a"))
    _mark_healthy(settings.for_slot("a"))
    return result


def drain(settings: Settings) -> dict:
    """``doit drain``: stop the old launcher slot once its sessions ended or its drain limit passed."""
    return slots.drain(settings)


def ensure_running(settings: Settings) -> dict:
    """Start the launcher when needed; upgrade beside the running one; roll back an unhealthy release.

    Leaves a launcher running as deployed alone.  When none runs, starts the
    active slot (nothing to keep).  Otherwise starts the new launcher in the
    idle slot beside the running one and health-checks it on its own port;
    only then does ``active.txt`` name it.  With ``[web] manage_apache`` the
    check is repeated through Apache; when that fails the front is switched
    back to the old slot and the new one stopped.  On success the old slot
    drains (its sessions keep running, see :func:`pvwtasks.slots.drain`).  A
    new release that fails either check is marked failed and the previous
    good release made live again while the old slot keeps serving; raises
    LauncherError naming both versions.
    """
    slots.reconcile(settings)
    record = slots.state(settings)
    current = settings.for_slot(record.active)
    _mark_healthy(current)  # the running launcher's release, checked before healthy_at was recorded
    reason = launcher.why_restart(current)
    if reason is None:
        log.info("launcher already running as deployed (slot %s, PID %s); leaving it and its sessions alone",
                 record.active, read_pid(current.layout.pid_file))
        return {"restarted": False, "slot": record.active}
    live = releases.live_release(settings.layout)
    started = time.monotonic()
    if processes.find_launcher(current) is None:
        return _cold_start(settings, current, live, reason, started)
    new = slots.other(record.active)
    fresh = settings.for_slot(new)
    log.info("upgrading the launcher beside the running one (slot %s -> %s): %s", record.active, new, reason)
    if processes.find_launcher(fresh) is not None:
        log.warning("launcher slot %s still drains an older release; ending it to take this upgrade", new)
        launcher.stop_slot(fresh)
    slots.begin(settings, new)
    try:
        _prepare(fresh)
        result = launcher.start(fresh, front=False)  # on its own port: no user can reach it yet
    except PvwError as err:
        log.error("the new launcher (slot %s) failed before taking any session: %s", new, err)
        launcher.stop_slot(fresh)
        slots.abandon(settings)
        raise _failed_beside(current, live, err, started) from None
    slots.switch(settings, new, confirmed=not settings.web.manage_apache)
    if settings.web.manage_apache:
        try:
            result["health"] = launcher.health_check(fresh, front=True)
        except LauncherError as err:
            log.error("the new launcher (slot %s) fails through the front; new sessions go back to slot %s",
                      new, record.active)
            slots.switch_back(settings, record.active)
            launcher.stop_slot(fresh)
            slots.abandon(settings)
            raise _failed_beside(current, live, err, started) from None
        slots.confirm(settings)
    launcher.boot_with(fresh)
    _mark_healthy(fresh)
    try:
        drained = slots.drain(settings)  # an old slot without sessions is stopped right away
    except PvwError as err:
        log.warning("the old launcher slot %s stays until the next run: %s", record.active, err)
        drained = {"draining": record.active}
    return {"restarted": True, "reason": reason, "slot": new, "draining": drained.get("draining"),
            "seconds": round(time.monotonic() - started, 3), **result}


def _failed_beside(current: Settings, live: ReleaseRecord | None, err: PvwError, started: float) -> PvwError:
    """The error that fails the run after a new slot failed; a new release is rolled back first.

    The old slot (``current``) kept serving throughout and is left alone.
    """
    if (isinstance(err, (launcher.PortBusy, launcher.AccountError)) or not isinstance(err, LauncherError)
            or live is None or live.healthy_at is not None):
        return err  # not a bad version switch: nothing to roll back
    target = releases.previous_good(current.layout)
    if target is None:
        return err
    return _rollback(current, live, target, str(err), started, keep=True)


def _cold_start(settings: Settings, current: Settings, live: ReleaseRecord | None, reason: str,
                started: float) -> dict:
    """No launcher runs in the active slot: (re)start it; roll back when a switched-to release is unhealthy.

    A draining slot, if any, keeps its sessions.
    """
    log.info("restarting the launcher: %s", reason)
    try:
        _prepare(current)
        result = launcher.restart(current, every_slot=False)
    except (launcher.PortBusy, launcher.AccountError):
        raise  # not the release's fault: no rollback
    except LauncherError as err:
        if live is None or live.healthy_at is not None:
            raise  # nothing installed, or this very release ran healthy before: not a bad version switch
        target = releases.previous_good(settings.layout)
        if target is None:
            raise
        raise _rollback(current, live, target, str(err), started) from None
    slots.switch(settings, current.slot)
    launcher.boot_with(current)
    _mark_healthy(current)
    return {"restarted": True, "reason": reason, "slot": current.slot,
            "seconds": round(time.monotonic() - started, 3), **result}


def _rollback(settings: Settings, bad: ReleaseRecord, good: ReleaseRecord, error: str,
              started: float, keep: bool = False) -> LauncherError:
    """Mark ``bad`` failed, make ``good`` live again, restart; return the error that fails the run.

    ``settings`` is the active slot's.  With ``keep`` its launcher still
    runs (the bad release was tried in the other slot and never got a
    user): it is left serving, not restarted.
    """
    layout = settings.layout
    log.error("%s failed its health check; rolling back to %s", bad.name, good.name)
    releases.mark_failed(layout, bad.name, error)
    releases.switch_live(layout, good)
    try:
        base = settings.for_slot("a")
        render.render_file(base, "launcher")
        render.render_file(base, "start")
        pipeline.publish_hash(base)
        try:
            render.render_file(base, "index")
        except PvwError as err:
            log.warning("landing page not re-rendered after rollback: %s", err)
        if not keep:
            _prepare(settings)
            launcher.restart(settings, every_slot=False)
            slots.switch(settings, settings.slot)
        else:
            log.info("launcher slot %s kept serving %s throughout", settings.slot, good.name)
    except PvwError as again:
        return LauncherError(
            f"{bad.version} ({bad.name}) failed its health check and the rollback to {good.version} "
            f"({good.name}) failed too: {again}; first failure: {error}")
    _mark_healthy(settings)
    seconds = time.monotonic() - started
    log.info("rolled back to %s in %.1f s", good.name, seconds)
    return LauncherError(
        f"{bad.version} ({bad.name}) failed its health check, rolled back to {good.version} ({good.name}) "
        f"in {seconds:.1f} s, which is live and healthy; {bad.name} is marked failed and stays on disk "
        f"until upstream changes; {error}")


# --------------------------------------------------------------------------
# systemd supervision
# --------------------------------------------------------------------------


def _unit_names(settings: Settings) -> dict[str, str]:
    return systemd.unit_names(systemd.instance_name(settings.layout.root))


def install_systemd(settings: Settings) -> dict:
    """``doit install_systemd``: install the rendered units, reload systemd, run the launcher under it.

    Copies conf/systemd/* into ``[deploy] systemd_unit_dir``, runs
    ``systemctl daemon-reload``, enables slot a's launcher service (an
    instance of the template unit) and the watchdog timer, and the update timer
    unless ``[cron] auto_update`` is off (a fleet driven by Ansible: then it is
    disabled), starts the timers, and restarts the launcher in slot a through
    systemd (launchers started by pvwtasks itself are stopped first).  Raises
    SystemdError when systemctl fails, PvwError when supervisor is not systemd.
    """
    if not launcher.supervised_by_systemd(settings):
        raise systemd.SystemdError(f"{settings.path}: [deploy] supervisor is \"{settings.deploy.supervisor}\"; "
                                   f"set it to \"systemd\" before `doit install_systemd`")
    names = _unit_names(settings)
    rendered = [render.output_path(settings.layout, render.SYSTEMD_OUTPUTS[kind]) for kind in names]
    missing = [str(p) for p in rendered if not p.is_file()]
    if missing:
        raise systemd.SystemdError(f"{missing[0]} is missing; run `doit render_systemd` first")
    changed = systemd.install_units(rendered, settings.deploy.systemd_unit_dir)
    systemd.systemctl("daemon-reload")
    slot_a = launcher.launcher_unit(settings.for_slot("a"))
    # Without [cron] auto_update (a fleet rolled forward by Ansible) the launcher stays supervised, but
    # the host runs no update of its own.
    timers = [names["timer"], names["watchdog_timer"]] if settings.cron.auto_update else [names["watchdog_timer"]]
    systemd.systemctl("enable", slot_a, *timers)
    systemd.systemctl("start", *timers)
    if not settings.cron.auto_update:
        systemd.systemctl("disable", "--now", names["timer"])
    started = ("update and watchdog timers started" if settings.cron.auto_update
               else "watchdog timer started; update timer off ([cron] auto_update = false)")
    log.info("installed %s in %s (%s changed); %s",
             ", ".join(names.values()), settings.deploy.systemd_unit_dir, len(changed), started)
    result = restart(settings)  # slot a, under systemd from now on
    log.info("the launcher runs under systemd as %s", slot_a)
    return {"changed": changed, **result}


def uninstall_systemd(settings: Settings) -> dict:
    """``doit uninstall_systemd``: disable and stop the units, remove them, reload systemd.

    Stopping the launcher services (both slots) ends the launchers and their sessions.
    Raises SystemdError when systemctl fails.
    """
    names = _unit_names(settings)
    unit_dir = settings.deploy.systemd_unit_dir
    present = [name for name in names.values() if (unit_dir / name).exists()]
    if not present:
        log.info("no systemd units of %s in %s; nothing to remove", settings.layout.root, unit_dir)
        return {"removed": []}
    systemd.systemctl("disable", "--now", names["timer"], names["watchdog_timer"],
                      *(launcher.launcher_unit(settings.for_slot(slot)) for slot in slots.SLOTS))
    removed = systemd.remove_units(list(names.values()), unit_dir)
    systemd.systemctl("daemon-reload")
    log.info("stopped, disabled and removed %s", ", ".join(removed))
    return {"removed": removed}
