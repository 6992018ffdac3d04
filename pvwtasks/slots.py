"""The two launcher slots: which one takes new sessions, which one drains, and putting that right.

An upgrade starts the new launcher in the idle slot beside the running one
(see :func:`pvwtasks.deploy.ensure_running`); once it is healthy,
``conf/active.txt`` (an Apache ``txt:`` RewriteMap, re-read on change) names
it and new sessions go there on the next request.  The old slot drains: it
gets no new sessions through Apache and is stopped when its last session
ends or when ``[launcher] drain_limit`` has passed (:func:`drain`).

The state is ``state/slots.json`` (``layout.SlotsRecord``), written before
each step, so a run killed at any point leaves something :func:`reconcile`
resolves: one active slot, no orphaned apps, no stale proxy lines.
"""

from __future__ import annotations

import logging
import time

from . import launcher, processes, proxyfile
from .config import Settings
from .fsutil import atomic_write_text
from .layout import SlotsRecord

log = logging.getLogger(__name__)

SLOTS = ("a", "b")


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def state(settings: Settings) -> SlotsRecord:
    """``slots.json``, or slot a active and nothing draining when there is none."""
    record = SlotsRecord.load(settings.layout.slots_record)
    if record is None or record.active not in SLOTS:
        return SlotsRecord()
    return record


def _save(settings: Settings, record: SlotsRecord) -> SlotsRecord:
    record = record.replace(changed_at=time.time())
    settings.layout.state.mkdir(parents=True, exist_ok=True)
    record.save(settings.layout.slots_record)
    return record


def active_settings(settings: Settings) -> Settings:
    """The settings of the slot that takes new sessions."""
    return settings.for_slot(state(settings).active)


def active_map_text(settings: Settings, slot: str) -> str:
    return f"launcher {settings.for_slot(slot).launcher.address}\n"


def write_active_map(settings: Settings, slot: str) -> None:
    """Point ``conf/active.txt`` at ``slot`` (atomic; Apache uses it from its next request)."""
    path, text = settings.layout.active_map, active_map_text(settings, slot)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, 0o644)
    log.info("new sessions go to launcher slot %s (%s)", slot, text.split()[1])


def is_running(settings: Settings, slot: str) -> bool:
    return processes.find_launcher(settings.for_slot(slot)) is not None


def live_sessions(slot_settings: Settings) -> list[dict]:
    """The sessions in a slot's proxy file whose app still listens on its port."""
    listed = proxyfile.sessions(slot_settings)
    if not listed:
        return []
    held = processes.listeners([s["port"] for s in listed])
    return [s for s in listed if s["port"] in held]


def drop_stale_lines(slot_settings: Settings) -> int:
    """Remove the proxy lines of sessions whose app is gone; return how many."""
    live = {s["id"] for s in live_sessions(slot_settings)}
    stale = [s["id"] for s in proxyfile.sessions(slot_settings) if s["id"] not in live]
    for session_id in stale:
        proxyfile.drop_session(slot_settings, session_id)
    if stale:
        log.info("dropped %d stale line(s) from %s", len(stale), slot_settings.layout.proxy_file)
    return len(stale)


# --------------------------------------------------------------------------
# The steps of a switch (each records its state before acting)
# --------------------------------------------------------------------------


def begin(settings: Settings, new: str) -> SlotsRecord:
    """Record that ``new`` is being started beside the active slot."""
    record = state(settings)
    return _save(settings, record.replace(
        starting=new, draining=None if record.draining == new else record.draining,
        drain_since=None if record.draining == new else record.drain_since))


def abandon(settings: Settings) -> SlotsRecord:
    """The started slot did not become active (failed health check): forget it."""
    return _save(settings, state(settings).replace(starting=None))


def switch(settings: Settings, new: str, confirmed: bool = True) -> SlotsRecord:
    """Make ``new`` the active slot; the previous one drains from now.

    Unconfirmed (``starting`` still names ``new``) until :func:`confirm`:
    a run killed in between is switched back by :func:`reconcile`, as
    when the check through the front fails (:func:`switch_back`).
    """
    record = state(settings)
    old = record.active
    if old == new:  # a restart of the active slot: a drain under way goes on
        record = _save(settings, record.replace(starting=None if confirmed else new))
    else:
        record = _save(settings, record.replace(active=new, starting=None if confirmed else new, draining=old,
                                                drain_since=time.time()))
    write_active_map(settings, new)
    return record


def confirm(settings: Settings) -> SlotsRecord:
    """The switched-to slot passed its check through the front: it stays active."""
    return _save(settings, state(settings).replace(starting=None))


def switch_back(settings: Settings, old: str) -> SlotsRecord:
    """New sessions go to ``old`` again, which never stopped serving; nothing drains.

    The map is written first, so the front stops sending anyone to the
    slot being abandoned before the record forgets it.
    """
    write_active_map(settings, old)
    return _save(settings, state(settings).replace(active=old, starting=other(old), draining=None,
                                                   drain_since=None))


def reset(settings: Settings, slot: str = "a") -> SlotsRecord:
    """After a stop of both slots: ``slot`` active, nothing draining."""
    record = _save(settings, SlotsRecord(active=slot))
    write_active_map(settings, slot)
    return record


# --------------------------------------------------------------------------
# Putting an interrupted switch right, and ending a drain
# --------------------------------------------------------------------------


def reconcile(settings: Settings) -> dict:
    """Resolve what a killed run left: one active slot, no orphans, no stale proxy lines.

    A switch not yet confirmed through the front goes back to the old slot
    when it still runs.  A slot being started when the run died is stopped
    (the next upgrade starts it again).  A slot whose launcher is dead is
    idle: its leftover apps are ended and its proxy file cleared (a dead
    draining slot is never started again).  When the active slot is dead and
    the other runs without draining, the other becomes active; a dead active
    slot beside a draining one stays active, for the caller to start.  Apps
    of this deployment that belong to no running launcher are ended.
    """
    record = state(settings)
    done: dict = {"active": record.active}
    for slot in SLOTS:
        launcher.sync_unit_pid(settings.for_slot(slot))
    if record.starting and record.starting == record.active and record.draining:
        if processes.find_launcher(settings.for_slot(record.draining)) is not None:
            log.warning("a switch to launcher slot %s was not confirmed through the front; new sessions go "
                        "back to slot %s", record.active, record.draining)
            write_active_map(settings, record.draining)
            record = _save(settings, record.replace(active=record.draining, draining=None, drain_since=None))
    if record.starting and record.starting != record.active:
        log.warning("an upgrade into launcher slot %s was interrupted; stopping that slot", record.starting)
        launcher.stop_slot(settings.for_slot(record.starting))
        done["stopped"] = record.starting
    running = {slot: processes.find_launcher(settings.for_slot(slot)) for slot in SLOTS}
    active = record.active
    if running[active] is None and running[other(active)] is not None and record.draining != other(active):
        # Not a drain (those end, they are not revived as the active slot): a launcher whose switch was
        # recorded nowhere, e.g. an older pvwtasks' or an admin's start of the other slot.
        log.warning("launcher slot %s is not running but slot %s is: slot %s takes new sessions",
                    active, other(active), other(active))
        active = other(active)
    draining = record.draining if record.draining not in (None, active) and running.get(record.draining) else None
    for slot in SLOTS:
        slot_settings = settings.for_slot(slot)
        if running[slot] is None:
            leftovers = processes.deployment_processes(slot_settings)
            if leftovers:
                log.warning("ending %d leftover process(es) of launcher slot %s", len(leftovers), slot)
                processes.end_processes(leftovers, settings.launcher.stop_grace)
            if proxyfile.sessions(slot_settings):
                proxyfile.clear_proxy_file(slot_settings)
        else:
            drop_stale_lines(slot_settings)
    owners = {proc.pid for proc in running.values() if proc is not None}
    orphans = processes.strays(settings, owners)
    if orphans:
        log.warning("ending %d process(es) that belong to no running launcher: %s", len(orphans),
                    ", ".join(processes.describe(p) for p in orphans))
        processes.end_processes(orphans, settings.launcher.stop_grace)
    fixed = record.replace(active=active, draining=draining, starting=None,
                           drain_since=record.drain_since if draining else None)
    if fixed != record:
        _save(settings, fixed)
    write_active_map(settings, active)
    done.update(active=active, draining=draining, orphans=len(orphans))
    return done


def nothing_to_drain(settings: Settings) -> bool:
    """The ``uptodate`` check of ``doit drain``: no slot drains and no switch was left half-done; never raises.

    Reads ``slots.json`` only (no process lookups on a no-op update).
    """
    try:
        record = state(settings)
        return record.draining is None and record.starting is None
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("slots check failed: %s", err)
        return False


def drain(settings: Settings) -> dict:
    """``doit drain`` (and the first step of ``doit update``): stop the old slot once it is done.

    Reconciles first.  The draining slot is stopped when it has no live
    session left, or when ``[launcher] drain_limit`` seconds have passed
    since the switch (its remaining sessions are ended, their proxy lines
    removed).  Never waits for a session: a slot still in use is left for
    the next run.
    """
    reconcile(settings)
    record = state(settings)
    if not record.draining:
        return {"draining": None}
    slot_settings = settings.for_slot(record.draining)
    left = live_sessions(slot_settings)
    since = record.drain_since or time.time()
    until = since + settings.launcher.drain_limit
    if left and time.time() < until:
        log.info("launcher slot %s drains: %d session(s) open, stopped at the latest %s", record.draining,
                 len(left), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until)))
        return {"draining": record.draining, "sessions": len(left), "until": until}
    if left:
        log.warning("drain limit of %g s reached: ending %d session(s) of launcher slot %s",
                    settings.launcher.drain_limit, len(left), record.draining)
    else:
        log.info("launcher slot %s has no session left; stopping it", record.draining)
    launcher.stop_slot(slot_settings)
    _save(settings, state(settings).replace(draining=None, drain_since=None))
    return {"draining": None, "stopped": record.draining, "ended_sessions": len(left)}


def in_use(settings: Settings) -> dict[str, dict]:
    """Each running slot: its release, port, live sessions, and drain times (for ``doit status``)."""
    record = state(settings)
    shown: dict[str, dict] = {}
    for slot in SLOTS:
        slot_settings = settings.for_slot(slot)
        proc = processes.find_launcher(slot_settings)
        if proc is None:
            continue
        started = launcher.record(slot_settings)
        entry = {
            "slot": slot,
            "role": "active" if slot == record.active else ("draining" if slot == record.draining else "idle"),
            "pid": proc.pid,
            "port": slot_settings.launcher.port,
            "release": started.release if started else None,
            "sessions": len(live_sessions(slot_settings)),
        }
        if slot == record.draining and record.drain_since:
            entry["draining_since"] = record.drain_since
            entry["draining_until"] = record.drain_since + settings.launcher.drain_limit
        shown[slot] = entry
    return shown
