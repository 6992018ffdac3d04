"""Everything Apache serves is readable by the web user, whatever the umask of the run that wrote it.

Apache's children run as ``[web] user`` (www-data), not as the account that
runs pvwtasks.  They read ``www/`` and what its links point at (the release's
bundled web clients, ``autodeploy/docs``), and, through the RewriteMap,
both launcher slots' ``proxy.txt`` (by its group, see :mod:`pvwtasks.proxyfile`)
and ``conf/active.txt``.  A cron job with
``umask 077`` leaves folders 0700 and Apache answers 403.  :func:`open_served`
adds the missing "other" bits: read on the served files, read and search on the
served folders, and search only (no listing) on the folders from ROOT down to
them.  Nothing else under ROOT is opened; the folders above ROOT are the
admin's (README, "Deploy on a real server").
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from .config import Settings

log = logging.getLogger(__name__)

SEARCH = stat.S_IXOTH  # a folder on the way: others may pass through it
READ_FILE = stat.S_IROTH
READ_DIR = stat.S_IROTH | stat.S_IXOTH


def _trees(settings: Settings) -> list[Path]:
    """www/ and the real folders its links point at (bundled clients, docs), resolved."""
    www = settings.layout.www
    trees = [www]
    try:
        entries = sorted(www.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.is_symlink() and entry.is_dir():
            trees.append(entry.resolve())
    return trees


def _ways(root: Path, target: Path) -> list[Path]:
    """The folders from ``root`` (included) down to ``target``'s parent, when ``target`` is under ``root``."""
    try:
        relative = target.relative_to(root)
    except ValueError:
        return []
    ways, folder = [root], root
    for part in relative.parts[:-1]:
        folder = folder / part
        ways.append(folder)
    return ways


def wanted(settings: Settings) -> dict[Path, int]:
    """Path -> the "other" permission bits it needs so Apache's web user can serve it."""
    root = settings.layout.root.resolve()
    needs: dict[Path, int] = {}
    trees = _trees(settings)
    for tree in trees:
        for folder in _ways(root, tree):
            needs[folder] = needs.get(folder, 0) | SEARCH
        for top, dirs, files in os.walk(tree):
            needs[Path(top)] = needs.get(Path(top), 0) | READ_DIR
            for name in files:
                path = Path(top, name)
                if not path.is_symlink():
                    needs[path] = needs.get(path, 0) | READ_FILE
    # The RewriteMaps: both launcher slots' proxy files (read through their group) and the active
    # slot's map, conf/active.txt (read by others: it names only a host and port).
    for slot in ("a", "b"):
        proxy = settings.layout.for_slot(slot).proxy_file.resolve()
        if proxy.exists():
            for folder in _ways(root, proxy):
                needs[folder] = needs.get(folder, 0) | SEARCH
    active = settings.layout.active_map.resolve()
    if active.exists():
        for folder in _ways(root, active):
            needs[folder] = needs.get(folder, 0) | SEARCH
        needs[active] = needs.get(active, 0) | READ_FILE
    return needs


def closed(settings: Settings) -> list[Path]:
    """The served paths (or folders on the way) the web user cannot read or pass; [] when all is open."""
    missing = []
    for path, bits in wanted(settings).items():
        try:
            if os.stat(path).st_mode & bits != bits:
                missing.append(path)
        except OSError:
            continue
    return missing


def served_open(settings: Settings) -> bool:
    """True when everything Apache serves is readable by the web user (an ``uptodate`` check: never raises)."""
    try:
        return not closed(settings)
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("served files not checked: %s", err)
        return False


def open_served(settings: Settings) -> dict:
    """Add the missing read/search bits for others on what Apache serves; return how many paths changed.

    Raises OSError when a path cannot be changed (not owned by this user).
    """
    changed = 0
    for path, bits in wanted(settings).items():
        mode = os.stat(path).st_mode
        if mode & bits != bits:
            os.chmod(path, stat.S_IMODE(mode) | bits)
            changed += 1
    if changed:
        log.info("made %d served path(s) under %s readable by the web user (%s)", changed, settings.layout.root,
                 settings.web.user)
    else:
        log.info("everything Apache serves under %s is readable by the web user", settings.layout.root)
    return {"changed": changed}
