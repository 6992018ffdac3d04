"""Check a download against a pinned sha256 or a checksum manifest, then publish it."""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .errors import DownloadError, HashMismatch
from .frozen import Frozen
from .fsutil import remove_quietly
from .layout import DownloadRecord

log = logging.getLogger(__name__)

_ALGO_BY_LENGTH = {32: "md5", 64: "sha256"}


class Expected(Frozen):
    """The digest a download must have, and its algorithm."""

    algorithm: str  # "sha256" or "md5"
    digest: str
    origin: str  # where the digest came from, for messages


def parse_manifest(text: str, filename: str, origin: str, archive_url: str = "", manifest_url: str = "") -> Expected:
    """Find ``filename`` in a ``<hex>  <path>`` manifest (like Kitware's md5sum.txt).

    md5 and sha256 are told apart by the length of the hex digest.
    Raises DownloadError when the file is not listed, or listed twice with
    different digests.
    """
    found = find_in_manifest(text, filename, origin, archive_url, manifest_url)
    if found is None:
        raise DownloadError(f"{origin}: no checksum listed for {filename}")
    return found


def _url_path(url: str) -> str:
    return unquote(urlsplit(url).path) if "://" in url else url


def _clean(path: str) -> str:
    path = path.lstrip("*")
    while path.startswith("./"):
        path = path[2:]
    return path


def find_in_manifest(text: str, filename: str, origin: str, archive_url: str = "",
                     manifest_url: str = "") -> Expected | None:
    """Like :func:`parse_manifest`, but None when ``filename`` is not listed.

    Paths are matched best first: an entry naming the archive's path (relative
    to the manifest's folder, or a tail of its URL path) beats a bare file
    name, which beats the same name in another folder.  Conflicting digests
    among the best matches raise DownloadError.  A BOM is ignored.
    """
    archive = _url_path(archive_url) if archive_url else ""
    folder = _url_path(manifest_url).rsplit("/", 1)[0] + "/" if manifest_url else ""
    relative = archive[len(folder):] if folder and archive.startswith(folder) else ""
    best_rank, found = 0, {}  # the best rank seen, and its digests by algorithm
    for line in text.lstrip("\ufeff").splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        digest, path = fields[0].lower(), _clean(fields[-1])
        if PurePosixPath(path).name != filename:
            continue
        if "/" in path and (path == relative or (archive and archive.endswith("/" + path))):
            rank = 3  # the archive's own path
        elif "/" not in path:
            rank = 2  # its bare name
        else:
            rank = 1  # the same name in another folder: only when nothing better is listed
        algorithm = _ALGO_BY_LENGTH.get(len(digest))
        if algorithm is None or any(c not in "0123456789abcdef" for c in digest):
            raise DownloadError(f"{origin}: entry for {filename} is not an md5 or sha256 digest: {fields[0]!r}")
        if rank > best_rank:
            best_rank, found = rank, {}
        if rank == best_rank:
            previous = found.setdefault(algorithm, digest)
            if previous != digest:
                raise DownloadError(f"{origin}: {filename} is listed twice with different {algorithm} digests "
                                    f"({previous} and {digest}); refusing to guess")
    if not found:
        return None
    algorithm = "sha256" if "sha256" in found else "md5"
    return Expected(algorithm, found[algorithm], origin)


def check(fetched: DownloadRecord, expected: Expected | None) -> None:
    """Compare the digest computed while downloading with ``expected``.

    The file on disk must also be as long as the download recorded.  On a
    mismatch the partial download is deleted and HashMismatch shows both
    digests.  With nothing expected, a whole download is accepted as is.
    """
    path = Path(fetched.path)
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size != fetched.size:
        remove_quietly(path)
        raise HashMismatch(f"{fetched.filename}: {size if size is not None else 'no'} bytes on disk, "
                           f"{fetched.size} downloaded; download deleted, live version untouched")
    if expected is None:
        log.info("no sha256 or checksums configured; recording sha256 %s of %s", fetched.sha256, fetched.filename)
        return
    actual = getattr(fetched, expected.algorithm)
    if actual != expected.digest:
        remove_quietly(path)
        raise HashMismatch(
            f"{fetched.filename}: {expected.algorithm} mismatch: expected {expected.digest} "
            f"(from {expected.origin}), got {actual}; download deleted, live version untouched"
        )
    log.info("%s: %s matches %s", fetched.filename, expected.algorithm, expected.origin)


def publish(fetched: DownloadRecord, downloads: Path, record: Path) -> DownloadRecord:
    """Rename the verified ``.part`` to its final name and write ``record``.

    Older archives in ``downloads`` are removed: only the live one is kept.
    """
    part = Path(fetched.path)
    final = downloads / fetched.filename
    if part != final:
        os.replace(part, final)
    published = fetched.replace(path=str(final))
    published.save(record)
    for other in downloads.iterdir():
        if other.is_file() and other != final and not other.name.endswith(".json") and not other.name.endswith(".part"):
            remove_quietly(other)
    return published
