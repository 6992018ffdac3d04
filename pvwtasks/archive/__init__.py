"""Safe, streaming extraction of release tarballs (.tar.gz, .tar.xz, .tar).

Each member goes through the rules of :mod:`.safety` (those of ``tarfile``'s
``filter="data"`` and stricter ones: no ``..``, no NUL, links judged by
their target and kept inside their top folder).  The archive is read once,
as a stream, and members are written with plain ``os`` calls.

ParaView releases hold tens of thousands of files, so the per-member cost
matters (issue 6): gzip is inflated with ISA-L (:mod:`.inflate`), headers are
parsed over a forward-only reader (:mod:`.tarstream`), members that cannot
land anywhere but their own name skip the disk walks (:mod:`.tree`), and
files are created by a few writer threads (:mod:`.writers`).

:class:`StreamExtractor` runs the same extraction on bytes handed over by
another thread, so a download can be unpacked while it arrives, within a
bounded multiple of the bytes received; the caller decides whether to keep
the result (only once the bytes are verified).
"""

from __future__ import annotations

from pathlib import Path

from ..layout import STAGED_PREFIX
from .unpack import STREAM_RATIO, STREAM_SLACK, ExpansionLimitReached, StreamExtractor, extract
from .writers import ASYNC_MAX_FILE

__all__ = ["ASYNC_MAX_FILE", "STAGED_PREFIX", "STREAM_RATIO", "STREAM_SLACK", "ExpansionLimitReached",
           "StreamExtractor", "extract", "staged_path"]


def staged_path(folder: Path, sha256: str) -> Path:
    """Where a tree extracted while downloading is kept until the bytes whose sha256 it is are verified.

    The same name as ``Layout.staged_dir`` when ``folder`` is ``Layout.versions``.
    """
    return folder / f"{STAGED_PREFIX}{sha256}"
