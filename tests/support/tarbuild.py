"""Build tarballs inside tests: ordinary, hostile (any name, link, kind or pax header), or gzip bombs."""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

MTIME = 1_700_000_000


def member(name: str, kind: str = "file", *rest, pax: dict | None = None) -> tarfile.TarInfo:
    """A header: kind file (rest: data, mode) / dir / sym / hard (rest: linkname) / chr / fifo.

    ``pax`` sets raw pax records (e.g. ``{"path": "a\\x00b"}``), which win over the name and linkname.
    """
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    if kind == "file":
        payload = rest[0] if rest else b"data of " + name.encode()
        info.size, info.mode = len(payload), rest[1] if len(rest) > 1 else 0o644
    elif kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif kind == "sym":
        info.type, info.linkname = tarfile.SYMTYPE, rest[0]
    elif kind == "hard":
        info.type, info.linkname = tarfile.LNKTYPE, rest[0]
    elif kind == "chr":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(kind)
    if pax:
        info.pax_headers = dict(pax)
    return info


def _data(info: tarfile.TarInfo, spec: tuple) -> io.BytesIO | None:
    if not info.isreg():
        return None
    rest = spec[2:]
    return io.BytesIO(rest[0] if rest and isinstance(rest[0], bytes) else b"data of " + spec[0].encode())


def build_tar(path: Path, members: list[tuple], fmt: int = tarfile.PAX_FORMAT) -> Path:
    """Write ``path`` (.tar.gz, .tar.xz or .tar, by its suffix) holding ``members``.

    Each member is ``(name, kind, *rest)`` as for :func:`member`; a dict as
    the last item gives its pax records.
    """
    mode = "w:gz" if path.name.endswith(".gz") else "w:xz" if path.name.endswith(".xz") else "w"
    with tarfile.open(path, mode, format=fmt) as tar:
        for spec in members:
            pax = spec[-1] if isinstance(spec[-1], dict) else None
            plain = spec[:-1] if pax is not None else spec
            info = member(*plain, pax=pax)
            tar.addfile(info, _data(info, plain))
    return path


def gzip_bomb(path: Path, folder: str, files: int, size: int = 1 << 20) -> Path:
    """A .tar.gz of ``files`` files of ``size`` zero bytes under ``folder``: about 1000x smaller than inflated.

    Built without compressing gigabytes: a gzip file may hold many members,
    so one compressed block of zeros is repeated.
    """
    assert size % 512 == 0

    def gz(data: bytes) -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        return packer.compress(data) + packer.flush()

    zeros = gz(bytes(size))
    with path.open("wb") as out:
        for number in range(files):
            info = tarfile.TarInfo(f"{folder}/zeros-{number:05d}.bin")
            info.size, info.mode, info.mtime = size, 0o644, MTIME
            out.write(gz(info.tobuf(tarfile.GNU_FORMAT)))
            out.write(zeros)
        out.write(gz(bytes(1024)))  # end-of-archive
    return path
