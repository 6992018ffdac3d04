"""Small filesystem helpers: atomic writes and JSON records."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through an adjacent temp file and ``os.replace``.

    Readers see the old file or the new one, never a half-written one.
    Raises OSError (disk full, permissions); the temp file is removed then.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically: a temp link beside it, then ``os.replace``.

    The temp link is named ``.<name>.<pid>.link``, so a run killed before the
    replace leaves a recognisable leftover.
    """
    tmp = link.with_name(f".{link.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def write_json(path: Path, data: Any, mode: int | None = None) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (mode 0600 unless given)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path) -> Any:
    """Return the JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remove_quietly(path: Path) -> None:
    """Delete a file if it exists."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def du(path: Path) -> int:
    """Bytes used by the files under ``path`` (links not followed; unreadable entries skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
