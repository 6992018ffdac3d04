"""The installed releases: ``versions/``, the live link, failure and health marks, pruning.

Layout under ``ROOT/autodeploy``::

    versions/<top-folder>-<sha12>/       one extracted release
    versions/<top-folder>-<sha12>.json   its ReleaseRecord (sha256, url, install time, failed, healthy_at)
    paraview -> versions/<...>           the live release (a symlink)
    installed.json                       the live release's identity, for doit

"The previous good release", the rollback target that ``doit status`` also
names, is defined once here: :func:`previous_good`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from .errors import InstallError
from .fsutil import replace_symlink
from .layout import LauncherRecord, Layout, ReleaseRecord, live_name

log = logging.getLogger(__name__)

__all__ = ["all_releases", "live_name", "live_release", "by_sha256", "failure_of", "mark_failed", "mark_healthy",
           "previous_good", "check_own_link", "switch_live", "prune"]


def _load(layout: Layout, name: str) -> ReleaseRecord | None:
    return ReleaseRecord.load(layout.release_record(name))


def all_releases(layout: Layout) -> list[ReleaseRecord]:
    """All installed releases (record and folder present), oldest install first."""
    if not layout.versions.is_dir():
        return []
    found = []
    for sidecar in layout.versions.glob("*.json"):
        release = ReleaseRecord.load(sidecar)
        if release and layout.release_dir(release.name).is_dir():
            found.append(release)
    return sorted(found, key=lambda r: r.installed_at)


def live_release(layout: Layout) -> ReleaseRecord | None:
    """The release the ``paraview`` link points at, or None."""
    name = live_name(layout)
    return _load(layout, name) if name else None


def by_sha256(layout: Layout, sha256: str) -> ReleaseRecord | None:
    """The installed release extracted from the archive with this sha256, or None."""
    return next((r for r in all_releases(layout) if r.sha256 == sha256), None)


def failure_of(layout: Layout, name: str) -> dict | None:
    """``{"at", "reason"}`` when release ``name`` failed its health check, else None."""
    release = _load(layout, name)
    return release.failed if release else None


def mark_failed(layout: Layout, name: str, reason: str) -> None:
    """Mark a release as failed so later runs do not switch to it again."""
    release = _load(layout, name)
    if release is None:
        log.warning("no record of release %s to mark failed", name)
        return
    release.replace(failed={"at": time.time(), "reason": reason}).save(layout.release_record(name))


def mark_healthy(layout: Layout, name: str, at: float) -> None:
    """Record that release ``name`` passed a health check as the live release (``healthy_at``)."""
    release = _load(layout, name)
    if release is not None and release.healthy_at != at:
        release.replace(healthy_at=at).save(layout.release_record(name))


def previous_good(layout: Layout) -> ReleaseRecord | None:
    """The rollback target: the newest installed release, not live, not failed, that passed a health check.

    None when there is no live release or no such release.
    """
    live = live_name(layout)
    if live is None:
        return None
    good = [r for r in all_releases(layout) if r.name != live and not r.failed and r.healthy_at is not None]
    return good[-1] if good else None


def check_own_link(link: Path) -> None:
    """InstallError if ``link`` is a real folder (an old hand-made install), not pvwtasks' symlink."""
    if link.exists() and not link.is_symlink():
        raise InstallError(f"{link} is a real folder, not pvwtasks' symlink; move it away first")


def switch_live(layout: Layout, release: ReleaseRecord) -> bool:
    """Point ``autodeploy/paraview`` at ``release`` atomically; return True if it moved.

    Also rewrites ``installed.json`` (the release's identity only, without
    its failure and health marks, so a health check does not make doit
    think a new release was installed).  Raises InstallError if
    ``paraview`` is a real folder rather than our symlink.
    """
    check_own_link(layout.live_link)
    moved = live_name(layout) != release.name
    if moved:
        replace_symlink(layout.live_link, os.path.join("versions", release.name))
        log.info("live release is now %s", release.name)
    release.replace(failed=None, healthy_at=None).save(layout.installed_record)
    return moved


def in_use(layout: Layout) -> set[str]:
    """Releases a running launcher slot was started with (its sessions need the tree)."""
    busy = set()
    for slot in ("a", "b"):
        started = LauncherRecord.load(layout.for_slot(slot).launcher_record)
        if started is not None and started.pid is not None and started.release and _alive(started):
            busy.add(started.release)
    return busy


def _alive(started: LauncherRecord) -> bool:
    """The recorded launcher still runs (same PID and start time): a killed one serves nothing."""
    import psutil

    try:
        return abs(psutil.Process(started.pid).create_time() - started.create_time) <= 1
    except psutil.Error:
        return False


def prune(layout: Layout, keep: int) -> list[str]:
    """Delete the oldest releases beyond ``keep`` (the live one, the rollback target and those in use stay).

    A failed release newer than the live one stays for inspection.
    Returns the names removed.
    """
    live = live_release(layout)
    target = previous_good(layout)
    kept_good = 1 if live else 0
    busy = in_use(layout)
    removed = []
    for release in reversed(all_releases(layout)):
        if live and release.name == live.name:
            continue
        if target and release.name == target.name:
            kept_good += 1
            continue
        if release.failed and live and release.installed_at > live.installed_at:
            continue
        if not release.failed and kept_good < keep:
            kept_good += 1
            continue
        if release.name in busy:
            log.info("keeping %s beyond keep = %d: a launcher slot still serves sessions from it", release.name, keep)
            continue
        shutil.rmtree(layout.release_dir(release.name), ignore_errors=True)
        layout.release_record(release.name).unlink(missing_ok=True)
        removed.append(release.name)
        log.info("pruned old release %s", release.name)
    return removed
