"""systemd supervision: unit names, the timer's calendar, installing units, and systemctl.

When ``[deploy] supervisor = "systemd"``, a launcher service keeps the
launcher running across crashes and reboots, and an update service with a
timer replaces the crontab's update line.  This module turns a cron schedule
into ``OnCalendar``, copies rendered units into the unit folder and drives
``systemctl``; rendering the unit files themselves is render's job.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from .errors import PvwError, SystemdError
from .fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

UNIT_DIR = Path("/etc/systemd/system")
_DAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTH_NAMES = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_SPECIALS = {"@yearly": "yearly", "@annually": "yearly", "@monthly": "monthly", "@weekly": "weekly",
             "@daily": "daily", "@midnight": "daily", "@hourly": "hourly"}


def unit_names(instance: str) -> dict[str, str]:
    """The unit file names of one deployment, e.g. ``pvw-update-<instance>.service``.

    The launcher's is a template, ``pvw-launcher-<instance>@.service``: one
    service per launcher slot (see :func:`slot_unit`).
    """
    return {
        "launcher": f"pvw-launcher-{instance}@.service",
        "update": f"pvw-update-{instance}.service",
        "timer": f"pvw-update-{instance}.timer",
        "watchdog": f"pvw-watchdog-{instance}.service",
        "watchdog_timer": f"pvw-watchdog-{instance}.timer",
    }


def slot_unit(instance: str, slot: str) -> str:
    """The launcher service of one launcher slot (``a`` or ``b``): ``pvw-launcher-<instance>@<slot>.service``."""
    return f"pvw-launcher-{instance}@{slot}.service"


def instance_name(root: Path) -> str:
    """A unit-name-safe label for the deployment at ``root`` (two deployments never share units)."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(root).strip("/")) or "root"
    return label[-60:].strip("-.") or "root"


def on_calendar(schedule: str) -> str:
    """Turn a five-field cron schedule (or an @special) into a systemd ``OnCalendar`` value.

    ``0 4 * * 1`` becomes ``Mon *-*-* 04:00:00``; lists, ranges and steps
    carry over (``1-5`` -> ``1..5``, ``*/15`` -> ``00/15``).  Raises PvwError
    for ``@reboot``, which has no calendar form.
    """
    text = schedule.strip().lower()
    if text in _SPECIALS:
        return _SPECIALS[text]
    if text.startswith("@"):
        raise PvwError(f"cron schedule {schedule!r} has no systemd calendar form")
    minute, hour, dom, month, dow = text.split()
    days = "" if dow == "*" else ",".join(_weekdays(item) for item in dow.split(",")) + " "
    month_part = _field(month, names=_MONTH_NAMES, first=1)
    return f"{days}*-{month_part}-{_field(dom)} {_field(hour, width=2)}:{_field(minute, width=2)}:00"


def _weekdays(item: str) -> str:
    if "/" in item:
        raise PvwError(f"day-of-week step {item!r} has no systemd calendar form")
    ends = [_day(part) for part in item.split("-")]
    return "..".join(ends)


def _day(word: str) -> str:
    if word.isdigit():
        return _DAY_NAMES[int(word)]
    return word[:3].capitalize()


def _field(text: str, width: int = 0, names: list[str] | None = None, first: int = 0) -> str:
    """One cron field in systemd's syntax: ``*``, lists, ``a..b`` ranges and ``start/step`` steps."""
    if text == "*":
        return "*"
    parts = []
    for item in text.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            base = str(first).zfill(width)
        bounds = [_number(b, width, names) for b in base.split("-")]
        part = "..".join(bounds)
        if step:
            if len(bounds) > 1:  # systemd has no stepped range: list the values
                low, high = (int(b) for b in bounds)
                part = ",".join(str(v).zfill(width) for v in range(low, high + 1, int(step)))
            else:
                part += f"/{step}"
        parts.append(part)
    return ",".join(parts)


def _number(word: str, width: int, names: list[str] | None) -> str:
    if names and word in names:
        return str(names.index(word) + 1).zfill(width)
    return word.zfill(width)


def systemctl(*args: str, program: str = "systemctl") -> subprocess.CompletedProcess:
    """Run ``systemctl ARGS``; raise SystemdError with its own message when it fails."""
    found = shutil.which(program)
    if not found:
        raise SystemdError(f"{program} not found: systemd supervision needs systemd "
                           "(or set [deploy] supervisor = \"cron\")")
    proc = subprocess.run([found, *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise SystemdError(f"systemctl {' '.join(args)} failed: {why[-1] if why else f'exit {proc.returncode}'}")
    return proc


def is_active(unit: str, program: str = "systemctl") -> str:
    """``systemctl is-active UNIT`` ("active", "inactive", "failed", ...), or "unknown" when systemctl cannot answer."""
    found = shutil.which(program)
    if not found:
        return "unknown"
    try:
        proc = subprocess.run([found, "is-active", unit], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    answer = proc.stdout.strip()
    known = {"active", "inactive", "failed", "activating", "deactivating", "reloading", "maintenance"}
    return answer if answer in known else "unknown"


def install_units(rendered: list[Path], unit_dir: Path = UNIT_DIR) -> list[str]:
    """Copy the rendered unit files into ``unit_dir`` atomically; return the names that changed."""
    if not unit_dir.is_dir():
        raise SystemdError(f"{unit_dir}: no such folder; is systemd installed?")
    changed = []
    for source in rendered:
        target = unit_dir / source.name
        data = source.read_bytes()
        if target.is_file() and target.read_bytes() == data:
            continue
        atomic_write_bytes(target, data, 0o644)
        changed.append(source.name)
    return changed


def remove_units(names: list[str], unit_dir: Path = UNIT_DIR) -> list[str]:
    """Delete the named unit files from ``unit_dir``; return the names that were there."""
    removed = []
    for name in names:
        target = unit_dir / name
        if target.exists():
            target.unlink()
            removed.append(name)
    return removed
