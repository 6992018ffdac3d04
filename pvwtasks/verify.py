"""Check a download against a pinned sha256 or a checksum manifest, then publish it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DownloadError, HashMismatch
from .fetch import Fetched
from .fsutil import remove_quietly, write_json

log = logging.getLogger(__name__)

_ALGO_BY_LENGTH = {32: "md5", 64: "sha256"}


@dataclass(frozen=True)
class Expected:
    algorithm: str  # "sha256" or "md5"
    digest: str
    origin: str  # where the digest came from, for messages


def parse_manifest(text: str, filename: str, origin: str) -> Expected:
    """Find ``filename`` in a ``<hex>  <path>`` manifest (like Kitware's md5sum.txt).

    md5 and sha256 are told apart by the length of the hex digest.
    Raises DownloadError when the file is not listed.
    """
    found = find_in_manifest(text, filename, origin)
    if found is None:
        raise DownloadError(f"{origin}: no checksum listed for {filename}")
    return found


def find_in_manifest(text: str, filename: str, origin: str) -> Expected | None:
    """Like :func:`parse_manifest`, but None when ``filename`` is not listed."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        digest, path = fields[0].lower(), fields[-1].lstrip("*")
        if PurePosixPath(path).name != filename:
            continue
        algorithm = _ALGO_BY_LENGTH.get(len(digest))
        if algorithm is None or any(c not in "0123456789abcdef" for c in digest):
            raise DownloadError(f"{origin}: entry for {filename} is not an md5 or sha256 digest: {fields[0]!r}")
        return Expected(algorithm, digest, origin)
    return None


def check(fetched: Fetched, expected: Expected | None) -> None:
    """Compare the digest computed while downloading with ``expected``.

    On a mismatch the partial download is deleted and HashMismatch shows
    both digests.  With nothing expected, the download is accepted as is.
    """
    if expected is None:
        log.info("no sha256 or checksums configured; recording sha256 %s of %s", fetched.sha256, fetched.filename)
        return
    actual = getattr(fetched, expected.algorithm)
    if actual != expected.digest:
        remove_quietly(Path(fetched.path))
        raise HashMismatch(
            f"{fetched.filename}: {expected.algorithm} mismatch: expected {expected.digest} "
            f"(from {expected.origin}), got {actual}; download deleted, live version untouched"
        )
    log.info("%s: %s matches %s", fetched.filename, expected.algorithm, expected.origin)


def publish(fetched: Fetched, downloads: Path, record: Path) -> Fetched:
    """Rename the verified ``.part`` to its final name and write ``record``.

    Older archives in ``downloads`` are removed: only the live one is kept.
    """
    part = Path(fetched.path)
    final = downloads / fetched.filename
    if part != final:
        os.replace(part, final)
    published = Fetched(**{**fetched.to_json(), "path": str(final)})
    write_json(record, published.to_json())
    for other in downloads.iterdir():
        if other.is_file() and other != final and not other.name.endswith(".json") and not other.name.endswith(".part"):
            remove_quietly(other)
    return published
