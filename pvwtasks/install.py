"""Install releases side by side and switch the live one atomically.

Layout under ``ROOT/autodeploy``::

    versions/<top-folder>-<sha12>/       one extracted release
    versions/<top-folder>-<sha12>.json   its record (sha256, url, install time, failure)
    paraview -> versions/<...>           the live release (a symlink)
    installed.json                       the live release's record, for doit

A release is extracted into a hidden ``.incoming-*`` folder and renamed into
place only when complete, so a killed run leaves nothing half-installed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import archive as extract
from .config import Layout
from .errors import InstallError
from .fsutil import read_json, replace_symlink, write_json

log = logging.getLogger(__name__)

INCOMING_PREFIX = ".incoming-"


@dataclass(frozen=True)
class Release:
    """An installed release tree and what was discovered in it."""

    name: str  # folder name under versions/
    top_folder: str  # the archive's own top folder, e.g. ParaView-5.13.0-MPI-Linux-Python3.11-x86_64
    version: str  # e.g. 5.13.0
    sha256: str
    url: str
    size: int
    installed_at: float
    pvpython: str  # relative to the tree
    site_packages: str  # relative to the tree
    python_version: str  # e.g. 3.11

    def to_json(self) -> dict:
        return asdict(self)


def installed_record(layout: Layout) -> Path:
    return layout.autodeploy / "installed.json"


def version_of(top_folder: str) -> str:
    found = re.search(r"\d+(?:\.\d+)+(?:-RC\d+)?", top_folder, re.IGNORECASE)
    return found.group(0) if found else top_folder


def discover(tree: Path) -> tuple[str, str, str]:
    """Find ``bin/pvpython`` and the Python ``site-packages`` inside ``tree``.

    Returns (pvpython, site_packages, python_version), paths relative to
    ``tree``.  Raises InstallError when the tree is not a ParaView release.
    """
    pvpython = tree / "bin" / "pvpython"
    if not pvpython.is_file() or not os.access(pvpython, os.X_OK):
        raise InstallError(f"{tree.name}: no executable bin/pvpython; not a ParaView binary release")
    modern = sorted((tree / "lib").glob("python3.*/site-packages"), key=lambda p: _py_key(p.parent.name))
    legacy = sorted((tree / "lib").glob("paraview-*/site-packages"), key=lambda p: _py_key(p.parent.name))
    if modern:
        site = modern[-1]
        python_version = site.parent.name.removeprefix("python")
    elif legacy:  # ParaView 4.x kept its modules in lib/paraview-X.Y/site-packages
        site, python_version = legacy[-1], ""
    else:
        raise InstallError(f"{tree.name}: no lib/python3.X/site-packages found")
    return "bin/pvpython", str(site.relative_to(tree)), python_version


def _py_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def _load_release(sidecar: Path) -> Release | None:
    data = read_json(sidecar)
    if not data:
        return None
    try:
        return Release(**{k: data[k] for k in Release.__dataclass_fields__})
    except (KeyError, TypeError):
        return None


def releases(layout: Layout) -> list[Release]:
    """All installed releases, oldest install first."""
    if not layout.versions.is_dir():
        return []
    found = []
    for sidecar in layout.versions.glob("*.json"):
        release = _load_release(sidecar)
        if release and (layout.versions / release.name).is_dir():
            found.append(release)
    return sorted(found, key=lambda r: r.installed_at)


def live_name(layout: Layout) -> str | None:
    """Name of the live release folder, from the ``paraview`` symlink."""
    try:
        return Path(os.readlink(layout.live_link)).name
    except OSError:
        return None


def live_release(layout: Layout) -> Release | None:
    name = live_name(layout)
    return _load_release(layout.versions / f"{name}.json") if name else None


def failure_of(layout: Layout, name: str) -> dict | None:
    data = read_json(layout.versions / f"{name}.json") or {}
    return data.get("failed")


def mark_failed(layout: Layout, name: str, reason: str) -> None:
    """Mark a release as failed so later runs do not switch to it again."""
    sidecar = layout.versions / f"{name}.json"
    data = read_json(sidecar) or {"name": name}
    data["failed"] = {"at": time.time(), "reason": reason}
    write_json(sidecar, data)


def discard_incomplete(layout: Layout, keep: Path | None = None) -> None:
    """Remove extraction folders left behind by a killed run (all but ``keep``)."""
    if layout.versions.is_dir():
        for stale in layout.versions.glob(INCOMING_PREFIX + "*"):
            if stale == keep:
                continue
            log.info("removing unfinished extraction %s", stale.name)
            shutil.rmtree(stale, ignore_errors=True)
    # Temporary links of a switch killed before its os.replace.
    for stale_link in layout.autodeploy.glob(".paraview.*.link"):
        if stale_link.is_symlink():
            stale_link.unlink()


def _find_installed(layout: Layout, sha256: str) -> Release | None:
    for release in releases(layout):
        if release.sha256 == sha256:
            return release
    return None


def install(layout: Layout, archive: Path, sha256: str, url: str, size: int) -> Release:
    """Extract ``archive`` into its own version folder, or reuse one already there.

    Does not touch the live symlink.  Raises UnsafeArchive or InstallError;
    the partial extraction is removed then and nothing else changes.
    """
    # A tree unpacked while downloading is named after the sha256 of the very bytes
    # it came from; the caller passes the verified digest, so a match is safe to use.
    staged = layout.staged_dir(sha256)
    discard_incomplete(layout, keep=staged)
    existing = _find_installed(layout, sha256)
    if existing:
        shutil.rmtree(staged, ignore_errors=True)
        log.info("%s already installed as %s", archive.name, existing.name)
        return existing
    layout.versions.mkdir(parents=True, exist_ok=True)
    incoming = layout.versions / f"{INCOMING_PREFIX}{sha256[:12]}-{os.getpid()}"
    started = time.monotonic()
    try:
        if staged.is_dir():
            os.rename(staged, incoming)
            tops = sorted(os.listdir(incoming))
            log.info("using the tree unpacked while downloading %s", archive.name)
        else:
            tops = extract.extract(archive, incoming)
        if len(tops) != 1 or not (incoming / tops[0]).is_dir():
            raise InstallError(f"{archive.name}: expected one top folder, found {tops or 'none'}")
        top = tops[0]
        pvpython, site_packages, python_version = discover(incoming / top)
        name = f"{top}-{sha256[:12]}"
        final = layout.versions / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(incoming / top, final)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    release = Release(
        name, top, version_of(top), sha256, url, size, time.time(), pvpython, site_packages, python_version
    )
    write_json(layout.versions / f"{name}.json", release.to_json())
    log.info("extracted %s into versions/%s in %.1f s", archive.name, name, time.monotonic() - started)
    return release


def check_own_link(link: Path) -> None:
    """InstallError if ``link`` is a real folder (an old hand-made install), not pvwtasks' symlink."""
    if link.exists() and not link.is_symlink():
        raise InstallError(f"{link} is a real folder, not pvwtasks' symlink; move it away first")


def switch_live(layout: Layout, release: Release) -> bool:
    """Point ``autodeploy/paraview`` at ``release`` atomically; return True if it moved.

    Also rewrites ``installed.json``.  Raises InstallError if ``paraview``
    is a real folder (an old hand-made install) rather than our symlink.
    """
    check_own_link(layout.live_link)
    moved = live_name(layout) != release.name
    if moved:
        replace_symlink(layout.live_link, os.path.join("versions", release.name))
        log.info("live release is now %s", release.name)
    write_json(installed_record(layout), release.to_json())
    return moved


def prune(layout: Layout, keep: int) -> list[str]:
    """Delete the oldest releases beyond ``keep`` (the live one always stays).

    A failed release newer than the live one stays for inspection.
    Returns the names removed.
    """
    live = live_name(layout)
    all_releases = releases(layout)
    live_release_ = next((r for r in all_releases if r.name == live), None)
    kept_good = 1 if live_release_ else 0
    removed = []
    for release in reversed(all_releases):
        if release.name == live:
            continue
        failed = failure_of(layout, release.name)
        if failed and live_release_ and release.installed_at > live_release_.installed_at:
            continue
        if not failed and kept_good < keep:
            kept_good += 1
            continue
        shutil.rmtree(layout.versions / release.name, ignore_errors=True)
        (layout.versions / f"{release.name}.json").unlink(missing_ok=True)
        removed.append(release.name)
        log.info("pruned old release %s", release.name)
    return removed


def du(path: Path) -> int:
    """Bytes used by the files under ``path`` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
