"""``doit status``: one screen (or one JSON document) about a deployment, with an exit code.

Shows the live version, its hash and install time, the previous good
version (the rollback target, :func:`pvwtasks.releases.previous_good`);
the launcher's PID, uptime, port and health; the sessions in proxy.txt
checked against live processes; the last update's time and result; and
the disk used by the installed versions.  Fails (non-zero exit) when the
launcher is down, serves a release other than the live link's, or the last
update failed.
"""

from __future__ import annotations

import json
import sys
import time

import psutil
import requests

from . import apps, config, cron, launcher, processes, proxyfile, releases, slots, systemd
from .config import Settings
from .errors import DeploymentUnhealthy, PvwError
from .fsutil import du
from .layout import HashRecord, LastRun


def _iso(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else None


def _answering(settings: Settings) -> bool:
    """The launcher's HTTP endpoint answers (GET of an unknown session: any HTTP reply counts)."""
    url = settings.launcher.url + "pvwtasks-status"
    try:
        requests.get(url, timeout=3)
        return True
    except requests.RequestException:
        return False


def supervision(settings: Settings) -> dict:
    """Which supervisor restarts the launcher, and whether it is in place.

    cron: the deployment's block in the crontab (read with the crontab
    program); systemd: ``systemctl is-active`` of the launcher service.
    ``healthy`` is None when that cannot be told.
    """
    kind = settings.deploy.supervisor
    if kind == "systemd":
        unit = launcher.launcher_unit(settings)
        state = systemd.is_active(unit)
        return {"supervisor": kind, "unit": unit, "state": state,
                "healthy": None if state == "unknown" else state == "active"}
    try:
        state = cron.block_state(settings)
    except PvwError as err:
        return {"supervisor": kind, "state": f"unknown ({err})", "healthy": None}
    return {"supervisor": kind, "state": state, "healthy": state == "installed"}


def collect(settings: Settings) -> dict:
    """Gather the deployment's state as plain data (what ``--json`` prints)."""
    layout = settings.layout
    live = releases.live_release(layout)
    published = HashRecord.load(layout.hash_file)
    previous = releases.previous_good(layout)  # the rollback target: one definition, in releases
    versions = []
    for release in releases.all_releases(layout):
        failure = release.failed
        versions.append({
            "name": release.name, "version": release.version, "live": bool(live and release.name == live.name),
            "bytes": du(layout.release_dir(release.name)),
            "failed": (failure.get("reason") or "").splitlines()[0][:200] if isinstance(failure, dict) else None,
        })
    base, settings = settings, slots.active_settings(settings)  # the slot taking new sessions
    for slot in slots.SLOTS:
        launcher.sync_unit_pid(base.for_slot(slot))
    proc = processes.find_launcher(settings)
    started = launcher.record(settings)
    running = proc is not None
    info = {
        "running": running,
        "pid": proc.pid if proc else None,
        "port": settings.launcher.port,
        "uptime_seconds": round(time.time() - proc.create_time(), 1) if proc else None,
        "release": started.release if running and started else None,
        "answering": _answering(settings) if running else False,
        "last_health_check": _iso_times(started.health) if started and started.health else None,
        "as_deployed": launcher.running_as_deployed(settings) if running else False,
        "slot": settings.slot,
    }
    sessions = []
    own = {p.pid for p in processes.deployment_processes(base, every_slot=True)}
    for slot in slots.SLOTS:
        listed = proxyfile.sessions(base.for_slot(slot))
        listening = processes.listeners([s["port"] for s in listed])
        for session in listed:
            pid = listening.get(session["port"])
            sessions.append({**session, "pid": pid, "slot": slot,
                             "alive": bool(pid and pid in own and psutil.pid_exists(pid))})
    slot_info = {name: {**entry, **{k: _iso(entry[k]) for k in ("draining_since", "draining_until") if k in entry}}
                 for name, entry in slots.in_use(base).items()}
    last = LastRun.load(layout.last_run_record)
    family = apps.release_info(live, layout.release_dir(live.name)) if live else None
    return {
        "root": str(layout.root),
        "live": {
            "name": live.name, "version": live.version, "sha256": live.sha256,
            "installed_at": _iso(live.installed_at), "url": published.url if published else None,
            "family": family.family, "paraview_version": family.paraview_version,
            "python_version": family.python_version, "variant": family.variant, "label": family.label,
        } if live and family else None,
        "previous": {"version": previous.version, "name": previous.name} if previous else None,
        "launcher": info,
        "supervision": supervision(settings),
        "sessions": sessions,
        "slots": slot_info,
        "last_update": {
            "finished": _iso(last.finished), "result": last.result, "failed": last.failed or {},
        } if last else None,
        "disk": {"versions": versions, "total_bytes": sum(v["bytes"] for v in versions)},
    }


def _iso_times(health: dict) -> dict:
    """The health record with its epoch ``at`` as ISO 8601 UTC, like every time in the status."""
    return {**health, "at": _iso(health["at"])} if isinstance(health.get("at"), (int, float)) else health


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def render_text(data: dict) -> str:
    """The human screen for :func:`collect`'s data."""
    live, prev, lnch, last = data["live"], data["previous"], data["launcher"], data["last_update"]
    lines = [f"deployment   {data['root']}"]
    if live:
        lines.append(f"live         {live['version']}  ({live['name']})")
        lines.append(f"  family     {live['label']}")
        lines.append(f"  sha256     {live['sha256']}")
        lines.append(f"  installed  {live['installed_at']}")
    else:
        lines.append("live         none installed")
    lines.append(f"previous     {prev['version']}  ({prev['name']})" if prev else "previous     none")
    if lnch["running"]:
        health = lnch["last_health_check"] or {}
        checked = f"last check {'ok' if health.get('ok') else 'FAILED'} at {health.get('at')}" if health \
            else "never checked"
        uptime = int(lnch["uptime_seconds"] or 0)
        lines.append(f"launcher     running, PID {lnch['pid']}, port {lnch['port']}, up {uptime // 3600}h"
                     f"{uptime % 3600 // 60:02d}m{uptime % 60:02d}s, "
                     f"{'answering' if lnch['answering'] else 'NOT ANSWERING'}, {checked}")
        if _serves_other_release(data):
            lines.append(f"             serving {lnch['release']}, NOT the live release")
        if not lnch["as_deployed"]:
            lines.append("             (not running the live release/config: the next update restarts it)")
    else:
        lines.append(f"launcher     DOWN (port {lnch['port']})")
    if len(data.get("slots") or {}) > 1 or any(e["role"] != "active" for e in (data.get("slots") or {}).values()):
        for name, entry in sorted(data["slots"].items()):
            drain = (f", draining since {entry['draining_since']}, stopped at the latest {entry['draining_until']}"
                     if "draining_since" in entry else "")
            lines.append(f"  slot {name}     {entry['role']}, {entry['release']}, PID {entry['pid']}, "
                         f"port {entry['port']}, {entry['sessions']} session(s){drain}")
    sup = data["supervision"]
    verdict = {True: "ok", False: "NOT IN PLACE", None: "cannot tell"}[sup["healthy"]]
    where = f"crontab block {sup['state']}" if sup["supervisor"] == "cron" else f"{sup['unit']} {sup['state']}"
    lines.append(f"supervisor   {sup['supervisor']}: {where} ({verdict})")
    alive = [s for s in data["sessions"] if s["alive"]]
    lines.append(f"sessions     {len(alive)} active" + (f", {len(data['sessions']) - len(alive)} stale line(s)"
                                                        if len(alive) != len(data["sessions"]) else ""))
    for session in data["sessions"]:
        lines.append(f"  {session['id']}  {session['host']}:{session['port']}  "
                     f"{'PID ' + str(session['pid']) if session['alive'] else 'stale'}")
    if last:
        lines.append(f"last update  {last['result']} at {last['finished']}")
        for task, message in last["failed"].items():
            lines.append(f"  {task}: {message.splitlines()[-1][:300] if message else ''}")
    else:
        lines.append("last update  never")
    disk = data["disk"]
    lines.append(f"disk         {_mib(disk['total_bytes'])} in {len(disk['versions'])} version(s)")
    for version in disk["versions"]:
        mark = "live" if version["live"] else ("failed" if version["failed"] else "")
        lines.append(f"  {version['name']}  {_mib(version['bytes'])}  {mark}".rstrip())
    return "\n".join(lines)


def _serves_other_release(data: dict) -> str | None:
    """A problem line when the running launcher serves a release other than the live link's, else None."""
    serving = data["launcher"]["release"]
    live = data["live"]["name"] if data["live"] else None
    if data["launcher"]["running"] and serving and serving != live:
        return (f"the launcher serves {serving} but the live release is {live or 'none'}; "
                f"`doit update` restarts it on the live release")
    return None


def show(settings: Settings, as_json: bool = False, config_error: str = "") -> dict:
    """Print the status (text or JSON); on a fleet front, each host's (:func:`pvwtasks.fleet.show`).

    Raises DeploymentUnhealthy when the config cannot be loaded (``config_error``;
    the status then shows what the config still says), the launcher is down or
    serves another release, or the last update failed.
    """
    if settings.fleet.front and not config_error:
        from . import fleet

        return fleet.show(settings, as_json)
    data = collect(settings)
    if config_error:
        data["config_error"] = config_error
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else render_text(data))
    problems = [f"the config cannot be loaded: {config_error}"] if config_error else []
    if not data["launcher"]["running"]:
        problems.append(f"the launcher is not running (port {data['launcher']['port']})")
    elif not data["launcher"]["answering"]:
        problems.append(f"the launcher does not answer on port {data['launcher']['port']}")
    stale = _serves_other_release(data)
    if stale:
        problems.append(stale)
    if data["last_update"] and data["last_update"]["result"] != "ok":
        problems.append(f"the last update failed at {data['last_update']['finished']}")
    if problems:
        raise DeploymentUnhealthy("; ".join(problems))
    return {"status": "ok"}


def main(argv: list[str] | None = None) -> int:
    """``python -m pvwtasks.status [--json] [CONFIG]``: the same report without doit's task lines."""
    import argparse

    parser = argparse.ArgumentParser(description="Show a pvwtasks deployment's status.")
    parser.add_argument("config", nargs="?", help="config file (default: $PVW_CONFIG or config/pvw.toml)")
    parser.add_argument("--json", action="store_true", help="print JSON for monitoring")
    args = parser.parse_args(argv)
    try:
        show(config.load(config.config_path(args.config)), as_json=args.json)
    except PvwError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
