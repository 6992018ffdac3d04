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

from . import launcher, pipeline, processes, releases, render, slots
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
    """``doit start_launcher``: start the active slot's launcher if no slot runs, then mark the release healthy."""
    slots.reconcile(settings)
    current = slots.active_settings(settings)
    _prepare(current)
    result = launcher.start(current)
    _mark_healthy(current)
    return result


def restart(settings: Settings) -> dict:
    """``doit restart_launcher``: stop both slots and their sessions, start slot a, mark the release healthy."""
    result = launcher.restart(settings.for_slot("a"))
    slots.reset(settings, "a")
    _mark_healthy(settings.for_slot("a"))
    return result


def running_as_deployed(settings: Settings) -> bool:
    """The ``uptodate`` check of the ``launcher`` task: the active slot's launcher runs as deployed; never raises."""
    try:
        return launcher.running_as_deployed(slots.active_settings(settings))
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("launcher check failed: %s", err)
        return False


def drain(settings: Settings) -> dict:
    """``doit drain``: stop the old launcher slot once its sessions ended or its drain limit passed."""
    return slots.drain(settings)


def ensure_running(settings: Settings) -> dict:
    """Start the launcher when needed; upgrade beside the running one; roll back an unhealthy release.

    Leaves a launcher running as deployed alone.  When none runs, starts the
    active slot (stop-and-start semantics, nothing to keep).  Otherwise
    starts the new launcher in the idle slot beside the running one and
    health-checks it on its own port: on success ``active.txt`` names it
    and the old slot drains (its sessions keep running, see
    :func:`pvwtasks.slots.drain`); on failure the new slot is stopped
    before any user reached it, the release is marked failed and the
    previous good release is made live again, while the old slot keeps
    serving.  Raises LauncherError naming both versions after a rollback.
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
        result = launcher.start(fresh)
    except PvwError as err:
        log.error("the new launcher (slot %s) failed before taking any session: %s", new, err)
        launcher.stop_slot(fresh)
        slots.abandon(settings)
        if (isinstance(err, launcher.PortBusy) or not isinstance(err, LauncherError)
                or live is None or live.healthy_at is not None):
            raise
        target = releases.previous_good(settings.layout)
        if target is None:
            raise
        raise _rollback(current, live, target, str(err), started, keep=True) from None
    slots.switch(settings, new)
    _mark_healthy(fresh)
    try:
        drained = slots.drain(settings)  # an old slot without sessions is stopped right away
    except PvwError as err:
        log.warning("the old launcher slot %s stays until the next run: %s", record.active, err)
        drained = {"draining": record.active}
    return {"restarted": True, "reason": reason, "slot": new, "draining": drained.get("draining"),
            "seconds": round(time.monotonic() - started, 3), **result}


def _cold_start(settings: Settings, current: Settings, live: ReleaseRecord | None, reason: str,
                started: float) -> dict:
    """No launcher runs: (re)start the active slot; roll back when a switched-to release is unhealthy."""
    log.info("restarting the launcher: %s", reason)
    try:
        _prepare(current)
        result = launcher.restart(current)
    except launcher.PortBusy:
        raise
    except LauncherError as err:
        if live is None or live.healthy_at is not None:
            raise  # nothing installed, or this very release ran healthy before: not a bad version switch
        target = releases.previous_good(settings.layout)
        if target is None:
            raise
        raise _rollback(current, live, target, str(err), started) from None
    slots.switch(settings, current.slot)
    _mark_healthy(current)
    return {"restarted": True, "reason": reason, "slot": current.slot,
            "seconds": round(time.monotonic() - started, 3), **result}


def _rollback(settings: Settings, bad: ReleaseRecord, good: ReleaseRecord, error: str,
              started: float, keep: bool = False) -> LauncherError:
    """Mark ``bad`` failed, make ``good`` live again, restart; return the error that fails the run.

    ``settings`` is the active slot's.  With ``keep`` its launcher still
    runs (the bad release was tried in the other slot) and is restarted only
    when it does not run as deployed once ``good`` is live again.
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
        if not keep or launcher.why_restart(settings) is not None:
            _prepare(settings)
            launcher.restart(settings)
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
