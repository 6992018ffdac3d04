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

from . import launcher, pipeline, releases, render, systemd
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


def start(settings: Settings) -> dict:
    """``doit start_launcher``: :func:`pvwtasks.launcher.start`, then mark the live release healthy."""
    result = launcher.start(settings)
    _mark_healthy(settings)
    return result


def restart(settings: Settings) -> dict:
    """``doit restart_launcher``: :func:`pvwtasks.launcher.restart`, then mark the live release healthy."""
    result = launcher.restart(settings)
    _mark_healthy(settings)
    return result


def ensure_running(settings: Settings) -> dict:
    """Restart the launcher only when needed; roll back when a switched-to release is unhealthy.

    Leaves a running launcher alone when it runs as deployed.  Otherwise
    stops it, starts it and health-checks it.  When that fails on a live
    release that never passed a health check, marks it failed, switches
    back to the previous good release, re-renders, restarts, checks again
    and raises LauncherError naming both versions.
    """
    _mark_healthy(settings)  # the running launcher's release, checked before healthy_at was recorded
    reason = launcher.why_restart(settings)
    if reason is None:
        log.info("launcher already running as deployed (PID %s); leaving it and its sessions alone",
                 read_pid(settings.layout.pid_file))
        return {"restarted": False}
    live = releases.live_release(settings.layout)
    log.info("restarting the launcher: %s", reason)
    started = time.monotonic()
    try:
        result = launcher.restart(settings)
    except (launcher.PortBusy, launcher.AccountError):
        raise  # not the release's fault: no rollback
    except LauncherError as err:
        if live is None or live.healthy_at is not None:
            raise  # nothing installed, or this very release ran healthy before: not a bad version switch
        target = releases.previous_good(settings.layout)
        if target is None:
            raise
        raise _rollback(settings, live, target, str(err), started) from None
    _mark_healthy(settings)
    return {"restarted": True, "reason": reason, "seconds": round(time.monotonic() - started, 3), **result}


def _rollback(settings: Settings, bad: ReleaseRecord, good: ReleaseRecord, error: str,
              started: float) -> LauncherError:
    """Mark ``bad`` failed, make ``good`` live again, restart; return the error that fails the run."""
    layout = settings.layout
    log.error("%s failed its health check; rolling back to %s", bad.name, good.name)
    releases.mark_failed(layout, bad.name, error)
    releases.switch_live(layout, good)
    try:
        render.render_file(settings, "launcher")
        render.render_file(settings, "start")
        pipeline.publish_hash(settings)
        try:
            render.render_file(settings, "index")
        except PvwError as err:
            log.warning("landing page not re-rendered after rollback: %s", err)
        launcher.restart(settings)
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
    ``systemctl daemon-reload``, enables the launcher service and the update
    timer, starts the timer (with ``[cron] auto_update`` off: disables it), and restarts the launcher through systemd (a
    launcher started by pvwtasks itself is stopped first).  Raises
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
    if settings.cron.auto_update:
        systemd.systemctl("enable", names["launcher"], names["timer"])
        systemd.systemctl("start", names["timer"])
        timer = "update timer started"
    else:  # a fleet rolled forward by Ansible: the launcher stays supervised, no update of its own
        systemd.systemctl("enable", names["launcher"])
        systemd.systemctl("disable", "--now", names["timer"])
        timer = "update timer off ([cron] auto_update = false)"
    log.info("installed %s in %s (%s changed); %s",
             ", ".join(names.values()), settings.deploy.systemd_unit_dir, len(changed), timer)
    result = restart(settings)
    log.info("the launcher runs under systemd as %s", names["launcher"])
    return {"changed": changed, **result}


def uninstall_systemd(settings: Settings) -> dict:
    """``doit uninstall_systemd``: disable and stop the units, remove them, reload systemd.

    Stopping the launcher service ends the launcher and its sessions.
    Raises SystemdError when systemctl fails.
    """
    names = _unit_names(settings)
    unit_dir = settings.deploy.systemd_unit_dir
    present = [name for name in names.values() if (unit_dir / name).exists()]
    if not present:
        log.info("no systemd units of %s in %s; nothing to remove", settings.layout.root, unit_dir)
        return {"removed": []}
    systemd.systemctl("disable", "--now", names["timer"], names["launcher"])
    removed = systemd.remove_units(list(names.values()), unit_dir)
    systemd.systemctl("daemon-reload")
    log.info("stopped, disabled and removed %s", ", ".join(removed))
    return {"removed": removed}
