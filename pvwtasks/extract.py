"""Safe, streaming extraction of release tarballs (.tar.gz, .tar.xz).

Each member goes through ``tarfile.data_filter`` (the checks of
``filter="data"``: no absolute paths, nothing outside the destination, no
links that escape it, no device files) plus two stricter rules of ours: no
absolute names at all and no ``..`` components.  The archive is read once,
as a stream, and members are written with plain ``os`` calls, which keeps
the per-member cost low for ParaView's tens of thousands of files.
"""

from __future__ import annotations

import lzma
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import InstallError, UnsafeArchive

try:  # ISA-L inflates gzip several times faster than zlib.
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip

COPY_CHUNK = 1 << 20
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_archive(path: Path) -> BinaryIO:
    """Open ``path`` as a decompressed byte stream, by its magic bytes."""
    with path.open("rb") as probe:
        magic = probe.read(6)
    if magic[:2] == b"\x1f\x8b":
        return _gzip.open(path, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")
    raise InstallError(f"{path.name}: not a .tar.gz or .tar.xz archive")


def _checked_name(member: tarfile.TarInfo) -> str:
    raw = member.name
    if raw.startswith("/") or PurePosixPath(raw).is_absolute():
        raise UnsafeArchive(f"member {raw!r} has an absolute path")
    parts = [p for p in PurePosixPath(raw).parts if p not in (".", "")]
    if ".." in parts:
        raise UnsafeArchive(f"member {raw!r} contains '..'")
    if (member.issym() or member.islnk()) and (
        member.linkname.startswith("/") or (member.islnk() and ".." in PurePosixPath(member.linkname).parts)
    ):
        raise UnsafeArchive(f"link {raw!r} points to {member.linkname!r}, outside the tree")
    return "/".join(parts)


def extract(archive: Path, dest: Path) -> list[str]:
    """Extract ``archive`` into the empty folder ``dest``; return the top-level names.

    Raises UnsafeArchive on the first hostile member and InstallError on a
    corrupt archive; the caller discards ``dest`` then.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dest_real = os.path.realpath(dest)
    made_dirs: set[str] = {dest_real}
    tops: set[str] = set()
    try:
        with open_archive(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = _checked_name(member)
                if not name:
                    continue
                member.name = name
                try:
                    member = tarfile.data_filter(member, dest_real)
                except tarfile.FilterError as err:
                    raise UnsafeArchive(f"member {name!r} rejected: {err}") from None
                tops.add(name.split("/", 1)[0])
                _write_member(tar, member, dest_real, made_dirs)
    except (tarfile.TarError, EOFError, lzma.LZMAError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise InstallError(f"cannot extract {archive.name}: {err.strerror}") from None
        raise InstallError(f"{archive.name}: corrupt or truncated archive ({err})") from None
    return sorted(tops)


def _ensure_dir(path: str, made_dirs: set[str]) -> None:
    if path not in made_dirs:
        os.makedirs(path, exist_ok=True)
        made_dirs.add(path)


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str, made_dirs: set[str]) -> None:
    target = os.path.join(dest, member.name)
    if member.isdir():
        _ensure_dir(target, made_dirs)
        return
    _ensure_dir(os.path.dirname(target), made_dirs)
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            raise UnsafeArchive(f"member {member.name!r} would replace a folder")
        os.unlink(target)
    if member.isreg():
        source = tar.extractfile(member)
        fd = os.open(target, _WRITE_FLAGS, member.mode if member.mode is not None else 0o644)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, COPY_CHUNK)
            os.fchmod(out.fileno(), member.mode if member.mode is not None else 0o644)
            if member.mtime:
                os.utime(out.fileno(), (member.mtime, member.mtime))
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        os.link(os.path.join(dest, member.linkname), target, follow_symlinks=False)
    else:  # data_filter already refuses devices and fifos
        raise UnsafeArchive(f"member {member.name!r} is not a file, folder or link")
