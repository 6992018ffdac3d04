"""Find, check and download a release archive.

A download streams into ``<name>.part`` while it is hashed, resumes with an
HTTP Range request after an interruption, and is recorded in a small JSON
file.  The archive itself is published (renamed without ``.part``) only by
:mod:`pvwtasks.verify`, once its digest is checked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from email.utils import formatdate
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import unquote, urljoin, urlsplit

import requests

from . import archive as extract
from .errors import DownloadError
from .fsutil import read_json, remove_quietly, write_json
from .http import new_session, raise_for_status, redact, with_retries

log = logging.getLogger(__name__)

CHUNK = 1 << 20
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class RemoteInfo:
    """What the server says about a file, to tell whether it changed."""

    url: str
    size: int | None
    etag: str | None
    last_modified: str | None

    def same_as(self, record: dict | None) -> bool:
        """True when ``record`` (a saved download) describes this very file."""
        if not record or record.get("url") != self.url:
            return False
        if self.etag and record.get("etag"):
            return self.etag == record["etag"]
        if self.last_modified is None and self.size is None:
            return False
        return self.last_modified == record.get("last_modified") and self.size == record.get("size")


@dataclass(frozen=True)
class Fetched:
    """A finished download: where its bytes are and their digests."""

    url: str
    filename: str
    path: str
    size: int
    etag: str | None
    last_modified: str | None
    sha256: str
    md5: str

    def to_json(self) -> dict:
        return asdict(self)


def is_local(url: str) -> bool:
    return urlsplit(url).scheme.lower() not in ("http", "https")


def local_path(url: str) -> Path:
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme.lower() == "file" else Path(url)


def filename_of(url: str) -> str:
    """The archive's file name, from the last path segment of ``url``."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name if not is_local(url) else local_path(url).name
    if not name or name in (".", "..") or "/" in name:
        raise DownloadError(f"cannot tell a file name from {redact(url)}")
    return name


def read_text(url: str, timeout: float, retries: int, backoff: float, session: requests.Session | None = None) -> str:
    """Return the text at ``url`` (a listing or checksum manifest)."""
    if is_local(url):
        try:
            return local_path(url).read_text(encoding="utf-8")
        except OSError as err:
            raise DownloadError(f"cannot read {url}: {err.strerror}") from None
    session = session or new_session()

    def attempt() -> str:
        response = session.get(url, timeout=timeout)
        raise_for_status(response)
        return response.text

    return with_retries(attempt, f"GET {redact(url)}", retries, backoff)


def version_key(name: str, match: re.Match | None = None) -> tuple[int, ...]:
    """Numeric version of a release name, so 5.10 sorts after 5.9.

    Uses the regex group named ``version`` (or the first group) when the
    pattern has one, else the first dotted number in the name.
    """
    text = None
    if match is not None:
        groups = match.groupdict()
        text = groups.get("version") or (match.group(1) if match.re.groups else None)
    if text is None:
        found = re.search(r"\d+(?:\.\d+)+", name)
        text = found.group(0) if found else name
    return tuple(int(n) for n in re.findall(r"\d+", text))


def pick_from_listing(listing_text: str, listing_url: str, pattern: str) -> str:
    """Return the URL of the newest file in a ParaView-style ``listing.txt``.

    Each line's first column is a path relative to the listing's folder;
    files whose base name matches ``pattern`` are compared by version.
    Raises DownloadError when nothing matches.
    """
    regex = re.compile(pattern)
    best: tuple[tuple[int, ...], str] | None = None
    for line in listing_text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        path = fields[0]
        match = regex.search(PurePosixPath(path).name)
        if not match:
            continue
        key = (version_key(PurePosixPath(path).name, match), path)
        if best is None or key > best:
            best = key
    if best is None:
        raise DownloadError(f"no file in {redact(listing_url)} matches pattern {pattern!r}")
    base = listing_url if not is_local(listing_url) else local_path(listing_url).as_uri()
    return urljoin(base, best[1])


def remote_info(url: str, timeout: float, session: requests.Session | None = None,
                retries: int = 0, backoff: float = 1.0) -> RemoteInfo:
    """Ask the server (HEAD) or the filesystem about ``url``.

    5xx answers and connection errors are retried ``retries`` times.
    Raises DownloadError when it cannot be reached.
    """
    if is_local(url):
        try:
            stat = local_path(url).stat()
        except OSError as err:
            raise DownloadError(f"cannot read {url}: {err.strerror}") from None
        return RemoteInfo(url, stat.st_size, None, formatdate(stat.st_mtime, usegmt=True))
    session = session or new_session()

    def attempt() -> requests.Response:
        response = session.head(url, timeout=timeout, allow_redirects=True)
        if response.status_code in (405, 501):
            response = session.get(url, timeout=timeout, stream=True)
            response.close()
        raise_for_status(response)
        return response

    try:
        response = with_retries(attempt, f"HEAD {redact(url)}", retries, backoff)
    except requests.RequestException as err:
        raise DownloadError(f"cannot reach {redact(url)}: {err}") from None
    except DownloadError as err:
        raise DownloadError(f"cannot reach {redact(url)}: {err}") from None
    length = response.headers.get("Content-Length")
    return RemoteInfo(
        url,
        int(length) if length and length.isdigit() else None,
        response.headers.get("ETag"),
        response.headers.get("Last-Modified"),
    )


class _Hashers:
    """The digests of the bytes seen so far and, optionally, their extraction while they arrive.

    hashlib releases the GIL on big buffers, so hashing overlaps the socket
    and the extractor's threads.  md5 is only computed when asked for (a
    checksum manifest may list md5 digests); it costs more than sha256.
    """

    def __init__(self, md5: bool = True, stage: Path | None = None, label: str = "archive") -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.extractor: extract.StreamExtractor | None = None
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
            self.extractor = extract.StreamExtractor(stage, label)

    def update(self, data: bytes) -> None:
        if self.extractor is not None:
            self.extractor.feed(data)
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)

    def feed_file(self, path: Path) -> int:
        size = 0
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                self.update(chunk)
                size += len(chunk)
        return size

    def md5_hex(self) -> str:
        return self.md5.hexdigest() if self.md5 is not None else ""

    def abort(self) -> None:
        """Stop and discard the extraction (the bytes were not all seen, or not kept)."""
        if self.extractor is not None:
            self.extractor.abort()
            self.extractor = None

    def keep_extraction(self, stage_dir: Path) -> None:
        """Finish the extraction and keep it as ``extract.staged_path(stage_dir, sha256)``, if it succeeded.

        The tree is only a head start for the install step, which uses it
        once (and only if) these bytes are verified; on any failure it is
        removed and the install step extracts the archive file instead.
        """
        extractor, self.extractor = self.extractor, None
        if extractor is None:
            return
        tops = extractor.finish()
        if tops is None:
            log.info("unpacking while downloading stopped (%s); the install step will extract the file",
                     extractor.error)
            return
        staged = extract.staged_path(stage_dir, self.sha256.hexdigest())
        try:
            shutil.rmtree(staged, ignore_errors=True)
            os.rename(extractor.dest, staged)
        except OSError as err:  # only a head start: never fail the download for it
            log.info("cannot keep the tree unpacked while downloading (%s); the install step will extract", err)
            shutil.rmtree(extractor.dest, ignore_errors=True)


def download(
    url: str,
    dest_dir: Path,
    *,
    timeout: float,
    retries: int,
    backoff: float,
    progress: Progress | None = None,
    session: requests.Session | None = None,
    md5: bool = True,
    unpack_into: Path | None = None,
) -> Fetched:
    """Stream ``url`` into ``dest_dir/<name>.part``, hashing while writing.

    An existing ``.part`` of the same remote file is resumed with a Range
    request when the server allows it.  Returns the finished download; the
    file stays ``.part`` until verified.  Raises DownloadError; on a full
    disk the partial file is removed.

    ``md5=False`` skips the md5 digest (``Fetched.md5`` is then "").  With
    ``unpack_into``, the archive is also unpacked while it arrives, into a
    hidden folder there that is renamed ``extract.staged_path(unpack_into,
    sha256)`` when both the download and the extraction succeed; nothing
    uses it before the bytes are verified (see ``install.install``).
    """
    name = filename_of(url)
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest_dir / f"{name}.part"
    part_meta = dest_dir / f"{name}.part.json"
    stage = None
    if unpack_into is not None:
        unpack_into.mkdir(parents=True, exist_ok=True)
        stage = unpack_into / f"{extract.STAGED_PREFIX}{os.getpid()}.tmp"

    def hashers() -> _Hashers:
        return _Hashers(md5, stage, name)

    try:
        if is_local(url):
            return _copy_local(url, name, part, progress, hashers, unpack_into)
        return _download_http(url, name, part, part_meta, timeout, retries, backoff, progress,
                              session or new_session(), hashers, unpack_into)
    except requests.RequestException as err:  # not retryable (bad URL, redirect loop): keep the .part
        raise DownloadError(f"download of {redact(url)} failed: {type(err).__name__}") from None
    except OSError as err:
        remove_quietly(part)
        remove_quietly(part_meta)
        raise DownloadError(f"cannot write {part}: {err.strerror or err}") from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _copy_local(url: str, name: str, part: Path, progress: Progress | None,
                new_hashers: Callable[[], _Hashers] = _Hashers, unpack_into: Path | None = None) -> Fetched:
    source = local_path(url)
    try:
        src = source.open("rb")
    except OSError as err:
        raise DownloadError(f"cannot read {source}: {err.strerror}") from None
    hashers = new_hashers()
    try:
        fetched = _copy_local_with(url, name, part, progress, source, src, hashers)
        if unpack_into is not None:
            hashers.keep_extraction(unpack_into)
        return fetched
    finally:
        hashers.abort()


def _copy_local_with(url: str, name: str, part: Path, progress: Progress | None, source: Path, src,
                     hashers: _Hashers) -> Fetched:
    with src, part.open("wb") as out:
        total = os.fstat(src.fileno()).st_size
        done = 0
        while chunk := src.read(CHUNK):
            out.write(chunk)
            hashers.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        out.flush()
        os.fsync(out.fileno())
    mtime = formatdate(source.stat().st_mtime, usegmt=True)
    return Fetched(url, name, str(part), done, None, mtime, hashers.sha256.hexdigest(), hashers.md5_hex())


def _download_http(
    url: str,
    name: str,
    part: Path,
    part_meta: Path,
    timeout: float,
    retries: int,
    backoff: float,
    progress: Progress | None,
    session: requests.Session,
    new_hashers: Callable[[], _Hashers] = _Hashers,
    unpack_into: Path | None = None,
) -> Fetched:
    validators: dict = {}
    saved = read_json(part_meta)
    if part.exists() and saved and saved.get("url") == url and (saved.get("etag") or saved.get("last_modified")):
        validators = saved
    else:
        remove_quietly(part)
    state = {"hashers": None, "hashed": 0}

    def restart_hashers() -> _Hashers:
        if state["hashers"] is not None:
            state["hashers"].abort()
        state["hashers"] = new_hashers()
        return state["hashers"]

    def attempt() -> Fetched:
        have = part.stat().st_size if part.exists() else 0
        headers = {}
        if have and validators:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = validators.get("etag") or validators["last_modified"]
        with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
            raise_for_status(response)
            if response.status_code == 206 and have:
                log.info("resuming %s at byte %d", name, have)
                if state["hashed"] != have or state["hashers"] is None:
                    state["hashed"] = restart_hashers().feed_file(part)
                mode = "ab"
                total = have + int(response.headers.get("Content-Length", 0)) or None
            else:
                restart_hashers()
                state["hashed"] = 0
                mode, have = "wb", 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
            if response.status_code != 206:
                validators.clear()
                validators.update({"url": url, "etag": etag, "last_modified": modified})
                write_json(part_meta, validators)
            done = have
            hashers = state["hashers"]
            with part.open(mode) as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    hashers.update(chunk)
                    done += len(chunk)
                    state["hashed"] = done
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
            if total is not None and done != total:
                raise requests.exceptions.ChunkedEncodingError(f"connection broken: got {done} of {total} bytes")
            return Fetched(
                url, name, str(part), done, validators.get("etag"), validators.get("last_modified"),
                hashers.sha256.hexdigest(), hashers.md5_hex(),
            )

    try:
        fetched = with_retries(attempt, f"download of {redact(url)}", retries, backoff)
        if unpack_into is not None and state["hashers"] is not None:
            state["hashers"].keep_extraction(unpack_into)
    finally:
        if state["hashers"] is not None:
            state["hashers"].abort()
    remove_quietly(part_meta)
    return fetched
