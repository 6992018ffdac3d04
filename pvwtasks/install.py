"""Extract a verified release archive into ``versions/`` and discover what is in the tree.

A release is extracted into a hidden ``.incoming-*`` folder and renamed into
place only when complete, so a killed run leaves nothing half-installed.
It does not touch the live link: switching, pruning and the failure and
health marks are :mod:`pvwtasks.releases`' job.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from . import archive as extract, families, releases
from .errors import InstallError
from .layout import INCOMING_PREFIX, Layout, ReleaseRecord

log = logging.getLogger(__name__)


def version_of(top_folder: str) -> str:
    found = re.search(r"\d+(?:\.\d+)+(?:-RC\d+)?", top_folder, re.IGNORECASE)
    return found.group(0) if found else top_folder


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


def install(layout: Layout, archive: Path, sha256: str, url: str, size: int) -> ReleaseRecord:
    """Extract ``archive`` into its own version folder, or reuse one already there.

    Does not touch the live symlink.  Raises UnsafeArchive or InstallError;
    the partial extraction is removed then and nothing else changes.
    """
    # A tree unpacked while downloading is named after the sha256 of the very bytes
    # it came from; the caller passes the verified digest, so a match is safe to use.
    staged = layout.staged_dir(sha256)
    discard_incomplete(layout, keep=staged)
    existing = releases.by_sha256(layout, sha256)
    if existing:
        shutil.rmtree(staged, ignore_errors=True)
        log.info("%s already installed as %s", archive.name, existing.name)
        return existing
    layout.versions.mkdir(parents=True, exist_ok=True)
    incoming = layout.incoming_dir(f"{sha256[:12]}-{os.getpid()}")
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
        info = families.detect(incoming / top, top)
        name = f"{top}-{sha256[:12]}"
        final = layout.release_dir(name)
        if final.exists():
            shutil.rmtree(final)
        os.rename(incoming / top, final)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    release = ReleaseRecord(
        name, top, version_of(top), sha256, url, size, time.time(), info.pvpython, info.site_packages,
        info.python_version, info=info.to_json(),
    )
    release.save(layout.release_record(name))
    log.info("extracted %s into versions/%s in %.1f s", archive.name, name, time.monotonic() - started)
    return release
