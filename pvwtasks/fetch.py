"""Find, check and download a release archive.

A download streams into ``<name>.part`` while it is hashed, resumes with an
HTTP Range request (always with If-Range) after an interruption, and is
recorded as a :class:`~pvwtasks.layout.DownloadRecord`.  The bytes stored and
hashed are the bytes on the server: no Content-Encoding is undone.  A
transfer is bounded in time (``[source] transfer_deadline``, ``min_speed``)
and size (the announced size, else ``max_size_mib``).  The archive itself is
published (renamed without ``.part``) only by :mod:`pvwtasks.verify`, once
its digest and size are checked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote, urljoin, urlsplit

from .config import Source
from .errors import DownloadError
from .frozen import Frozen
from .fsutil import remove_quietly
from .layout import STAGED_PREFIX, DownloadRecord, PartRecord
from .net import (TransferBroken, describe, new_session, quick_head, raise_for_status, redact, redact_text,
                  with_retries)

if TYPE_CHECKING:  # requests and urllib3 are imported where a transfer needs them
    import requests

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MIB = 1 << 20
Progress = Callable[[int, "int | None"], None]


class Options(Frozen):
    """How to talk to the server and the bounds of one transfer (from ``[source]``)."""

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 1.0
    deadline: float = 0.0  # seconds for one whole transfer, 0: none
    min_speed: int = 0  # bytes/s averaged over each `timeout` seconds, 0: none
    max_size: int = 0  # bytes, 0: none
    max_text: int = 32 * MIB  # bytes of a listing or manifest
    ca_file: str = ""
    allow_http_redirect: bool = False
    allow_other_hosts: bool = False

    @classmethod
    def of(cls, source: Source) -> "Options":
        return cls(
            timeout=source.timeout, retries=source.retries, backoff=source.backoff,
            deadline=source.transfer_deadline, min_speed=source.min_speed,
            max_size=source.max_size_mib * MIB, max_text=source.max_listing_mib * MIB,
            ca_file=str(source.ca_file or ""), allow_http_redirect=source.allow_http_redirect,
            allow_other_hosts=source.allow_other_hosts,
        )

    def session(self) -> requests.Session:
        return new_session(self.ca_file or None, self.allow_http_redirect)


# --- validators (RFC 9110 section 8.8.3)

def is_strong(etag: str | None) -> bool:
    """True for a strong entity tag (usable in If-Range), False for a weak ``W/"..."`` one or None."""
    return bool(etag) and not etag.startswith("W/")


def weak_equal(a: str | None, b: str | None) -> bool:
    """The weak comparison: equal opaque tags, whether or not either is marked weak."""
    return bool(a) and bool(b) and a.removeprefix("W/") == b.removeprefix("W/")


class RemoteInfo(Frozen):
    """What the server says about a file, to tell whether it changed."""

    url: str
    size: int | None
    etag: str | None
    last_modified: str | None

    def same_as(self, record: DownloadRecord | PartRecord | None) -> bool:
        """True when ``record`` (a saved download) describes this very file.

        ETags are compared weakly: Apache answers ``W/"x"`` for a file
        changed within the last second and ``"x"`` later, for the same bytes.
        """
        if record is None or record.url != self.url:
            return False
        if self.size is not None and record.size is not None and self.size != record.size:
            return False
        if self.etag and record.etag:
            return weak_equal(self.etag, record.etag)
        if self.last_modified is None and self.size is None:
            return False
        return self.last_modified == record.last_modified and self.size == record.size


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


def read_text(url: str, options: Options, session: requests.Session | None = None) -> str:
    """Return the text at ``url`` (a listing or checksum manifest), at most ``options.max_text`` bytes.

    A leading BOM is dropped.  Raises DownloadError when it cannot be read
    or is bigger than the cap.
    """
    cap = options.max_text
    too_big = f"{redact(url)} is larger than {cap // MIB} MiB ([source] max_listing_mib); not read"
    if is_local(url):
        try:
            with local_path(url).open("rb") as handle:
                data = handle.read(cap + 1)
        except OSError as err:
            raise DownloadError(f"cannot read {url}: {err.strerror}") from None
        if len(data) > cap:
            raise DownloadError(too_big)
        return data.decode("utf-8-sig", errors="replace")
    session = session or options.session()
    import urllib3

    def attempt() -> str:
        with session.get(url, timeout=options.timeout, stream=True) as response:
            raise_for_status(response)
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > cap:
                raise DownloadError(too_big)
            data = bytearray()
            try:
                for chunk in response.iter_content(64 * 1024):
                    data += chunk
                    if len(data) > cap:
                        raise DownloadError(too_big)
            except urllib3.exceptions.HTTPError as err:
                raise TransferBroken(str(err)) from None
        return bytes(data).decode("utf-8-sig", errors="replace")

    return with_retries(attempt, f"GET {redact(url)}", options.retries, options.backoff)


# --- choosing from a listing

# Patterns as text: ``re`` compiles (and caches) them on first use, not at every import.
_PRE = r"(?i)[-_.~+]?(?P<tag>rc|alpha|beta|pre|dev|a|b)[-_.]?(?P<n>\d*)(?![a-z])"
_PRE_RANK = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2, "pre": 3, "rc": 3}
_FINAL = 9


def version_key(name: str, match: re.Match | None = None) -> tuple:
    """Sort key of a release name's version, so 5.10 sorts after 5.9 and 5.10.0-RC1 before 5.10.0.

    Uses the regex group named ``version`` (or the first group) when the
    pattern has one, else the first dotted number in the name.  Numbers are
    compared as numbers (trailing zeros ignored); a pre-release tag right
    after them (``-RC1``, ``rc1``, ``-beta2``, ``a1``, ``.dev3``) sorts below
    the final release, ``dev < alpha < beta < rc``.
    """
    text, after = None, ""
    if match is not None:
        group = "version" if match.groupdict().get("version") else (1 if match.re.groups and match.group(1) else None)
        if group is not None:
            text, after = match.group(group), match.string[match.end(group):]
    if text is None:
        found = re.search(r"\d+(?:\.\d+)+", name)
        text, after = (found.group(0), name[found.end():]) if found else (name, "")
    lead = re.match(r"\d+(?:\.\d+)*", text)
    if lead:
        numbers, rest = [int(n) for n in lead.group(0).split(".")], text[lead.end():] + after
    else:
        numbers, rest = [int(n) for n in re.findall(r"\d+", text)], after
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    pre = re.match(_PRE, rest)
    stage = (_PRE_RANK[pre.group("tag").lower()], int(pre.group("n") or 0)) if pre else (_FINAL, 0)
    return (tuple(numbers), stage)


def natural_key(name: str) -> tuple:
    """``name`` with its digit runs compared as numbers (Python3.10 after Python3.9)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.findall(r"\d+|\D+", name))


def entry_allowed(entry_url: str, listing_url: str, options: Options) -> str | None:
    """Why the listing entry ``entry_url`` may not be used, or None when it may.

    Entries must be on the listing's own scheme and host, inside its folder
    tree (``[source] allow_other_hosts`` lifts that, for http(s) only); an
    https listing never leads to http unless ``allow_http_redirect``.
    """
    entry, listing = urlsplit(entry_url), urlsplit(listing_url)
    e_scheme, l_scheme = entry.scheme.lower(), listing.scheme.lower()
    segments = unquote(entry.path).split("/")
    if ".." in segments or "." in segments:
        return "has '..' in its path"
    if l_scheme == "file":
        if e_scheme != "file":
            return f"is {e_scheme}:// in a local listing"
    elif e_scheme not in ("http", "https"):
        return f"is {e_scheme}:// in an {l_scheme}:// listing"
    if l_scheme == "https" and e_scheme == "http" and not options.allow_http_redirect:
        return "is http:// in an https:// listing"
    if options.allow_other_hosts and e_scheme != "file":
        return None
    if e_scheme != l_scheme or entry.netloc.lower() != listing.netloc.lower():
        return "is on another host (set [source] allow_other_hosts to allow)"
    folder = unquote(listing.path).rsplit("/", 1)[0] + "/"
    if not unquote(entry.path).startswith(folder):
        return "is outside the listing's folder (set [source] allow_other_hosts to allow)"
    return None


def pick_from_listing(listing_text: str, listing_url: str, pattern: str, options: Options | None = None) -> str:
    """Return the URL of the newest file in a ParaView-style ``listing.txt``.

    Each line's first column is a path relative to the listing's folder;
    files whose base name matches ``pattern`` are compared by
    :func:`version_key`, then by :func:`natural_key` of the name.  Entries
    refused by :func:`entry_allowed` are skipped with a warning.  Raises
    DownloadError when nothing usable matches.
    """
    options = options or Options()
    regex = re.compile(pattern)
    base = listing_url if not is_local(listing_url) else local_path(listing_url).as_uri()
    best: tuple | None = None
    refused: list[str] = []
    for line in listing_text.lstrip("\ufeff").splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        path = fields[0]
        name = PurePosixPath(unquote(urlsplit(path).path)).name
        match = regex.search(name)
        if not match:
            continue
        url = urljoin(base, path)
        why = entry_allowed(url, base, options)
        if why:
            refused.append(f"{redact(url)} {why}")
            continue
        key = (version_key(name, match), natural_key(name), url)
        if best is None or key > best:
            best = key
    for reason in refused[:5]:
        log.warning("listing entry skipped: %s", reason)
    if best is None:
        extra = f"; {len(refused)} matching entries refused, first: {refused[0]}" if refused else ""
        raise DownloadError(f"no usable file in {redact(listing_url)} matches pattern {pattern!r}{extra}")
    return best[2]


# --- asking the server

HEAD_REFUSED = (403, 405, 501)  # answers to a HEAD that a GET may not get (presigned URLs sign the method)

def remote_info(url: str, options: Options, session: requests.Session | None = None) -> RemoteInfo:
    """Ask the server (HEAD) or the filesystem about ``url``.

    A HEAD answered 403, 405 or 501 (presigned URLs sign the method) is
    retried as a GET whose body is not read.  5xx answers and connection
    errors are retried.  Raises DownloadError when it cannot be reached.
    """
    if is_local(url):
        try:
            stat = local_path(url).stat()
        except OSError as err:
            raise DownloadError(f"cannot read {url}: {err.strerror}") from None
        return RemoteInfo(url, stat.st_size, None, formatdate(stat.st_mtime, usegmt=True))
    import requests

    session = session or options.session()

    def attempt() -> requests.Response:
        response = session.head(url, timeout=options.timeout, allow_redirects=True)
        if response.status_code in HEAD_REFUSED:
            response = session.get(url, timeout=options.timeout, stream=True)
            response.close()
        raise_for_status(response)
        return response

    try:
        response = with_retries(attempt, f"HEAD {redact(url)}", options.retries, options.backoff)
    except requests.RequestException as err:
        raise DownloadError(f"cannot reach {redact(url)}: {describe(err)}") from None
    except DownloadError as err:
        raise DownloadError(f"cannot reach {redact(url)}: {err}") from None
    return _remote_info_of(url, response.headers)


def _remote_info_of(url: str, headers) -> RemoteInfo:
    length = headers.get("Content-Length")
    return RemoteInfo(url, int(length) if length and length.isdigit() else None, headers.get("ETag"),
                      headers.get("Last-Modified"))


def quick_remote_info(url: str, options: Options) -> RemoteInfo:
    """:func:`remote_info` without retries, from one plain HEAD when the server answers it with a 200.

    What needs the session's rules goes through :func:`remote_info` itself,
    unchanged: a proxy or credentials, a redirect, a refused HEAD (403, 405,
    501) or another answer that is not an error.  No answer or an error
    status raises DownloadError, as :func:`remote_info` would without
    retries.  For the no-op check, where importing requests costs more
    than the rest of it.
    """
    if is_local(url):
        return remote_info(url, options)
    try:
        answer = quick_head(url, options.timeout, options.ca_file or None)
    except OSError as err:
        raise DownloadError(f"cannot reach {redact(url)}: {redact_text(str(err)) or type(err).__name__}") from None
    if answer is not None:
        status, headers = answer
        if status == 200:
            return _remote_info_of(url, headers)
        if status >= 400 and status not in HEAD_REFUSED:
            raise DownloadError(f"cannot reach {redact(url)}: HTTP {status}")
    return remote_info(url, replace(options, retries=0))


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
            from . import archive as extract  # only a download that unpacks as it arrives needs it

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
        from . import archive as extract

        staged = extract.staged_path(stage_dir, self.sha256.hexdigest())
        try:
            shutil.rmtree(staged, ignore_errors=True)
            os.rename(extractor.dest, staged)
        except OSError as err:  # only a head start: never fail the download for it
            log.info("cannot keep the tree unpacked while downloading (%s); the install step will extract", err)
            shutil.rmtree(extractor.dest, ignore_errors=True)


class _Clock:
    """The time bounds of one transfer: an overall deadline and a minimum speed."""

    def __init__(self, options: Options, what: str) -> None:
        self.options, self.what = options, what
        self.started = time.monotonic()
        self.window_start, self.window_bytes = self.started, 0

    def tick(self, received: int) -> None:
        """Account ``received`` new bytes; raise DownloadError once a bound is broken."""
        now = time.monotonic()
        deadline, min_speed, window = self.options.deadline, self.options.min_speed, self.options.timeout
        if deadline > 0 and now - self.started > deadline:
            raise DownloadError(f"{self.what} took longer than {deadline:g} s ([source] transfer_deadline); "
                                f"the partial file is kept for the next run")
        self.window_bytes += received
        elapsed = now - self.window_start
        if min_speed > 0 and elapsed >= window:
            speed = self.window_bytes / elapsed
            if speed < min_speed:
                raise DownloadError(f"{self.what} too slow: {speed:.0f} bytes/s over {elapsed:.0f} s, below "
                                    f"[source] min_speed = {min_speed}; the partial file is kept for the next run")
            self.window_start, self.window_bytes = now, 0


def _end_progress(progress: Progress | None) -> None:
    end = getattr(progress, "end", None)
    if end is not None:
        end()


def download(
    url: str,
    part: Path,
    part_record: Path,
    *,
    options: Options,
    progress: Progress | None = None,
    session: requests.Session | None = None,
    md5: bool = True,
    unpack_into: Path | None = None,
    info: RemoteInfo | None = None,
) -> DownloadRecord:
    """Stream ``url`` into ``part`` (``<name>.part``), hashing while writing.

    A ``part`` left by an earlier run is resumed with Range + If-Range only
    when its saved validators (``part_record``) still describe what the
    server announces (``info``, asked for when not given); one already as
    long as the file is just hashed.  Returns the finished download; the
    file stays ``.part`` until verified.  Raises DownloadError; on a full
    disk, or bytes that cannot belong to the file, the partial file is removed.

    ``md5=False`` skips the md5 digest (``md5`` is then "").  With
    ``unpack_into``, the archive is also unpacked while it arrives, into a
    hidden folder there that is renamed ``extract.staged_path(unpack_into,
    sha256)`` when both the download and the extraction succeed; nothing
    uses it before the bytes are verified (see ``install.install``).
    """
    name = filename_of(url)
    part.parent.mkdir(parents=True, exist_ok=True)
    stage = None
    if unpack_into is not None:
        unpack_into.mkdir(parents=True, exist_ok=True)
        stage = unpack_into / f"{STAGED_PREFIX}{os.getpid()}.tmp"

    def hashers() -> _Hashers:
        return _Hashers(md5, stage, name)

    import requests

    try:
        if is_local(url):
            return _copy_local(url, name, part, progress, hashers, unpack_into)
        return _Http(url, name, part, part_record, options, progress, session or options.session(),
                     hashers, info).run(unpack_into)
    except requests.RequestException as err:  # not retryable (bad URL, redirect loop): keep the .part
        raise DownloadError(f"download of {redact(url)} failed: {describe(err)}") from None
    except OSError as err:
        remove_quietly(part)
        remove_quietly(part_record)
        raise DownloadError(f"cannot write {part}: {err.strerror or err}") from None
    finally:
        _end_progress(progress)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _copy_local(url: str, name: str, part: Path, progress: Progress | None,
                new_hashers: Callable[[], _Hashers] = _Hashers, unpack_into: Path | None = None) -> DownloadRecord:
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
                     hashers: _Hashers) -> DownloadRecord:
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
    return DownloadRecord(url, name, str(part), done, None, mtime, hashers.sha256.hexdigest(), hashers.md5_hex())


_RANGE = r"(?i)^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$"  # compiled on first use
_UNSATISFIED = r"(?i)^\s*bytes\s+\*/(\d+)\s*$"


def _length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


class _Http:
    """One HTTP download with its retries: resume rules, 206/416 checks, bounds."""

    def __init__(self, url: str, name: str, part: Path, part_record: Path, options: Options,
                 progress: Progress | None, session: requests.Session, new_hashers: Callable[[], _Hashers],
                 info: RemoteInfo | None) -> None:
        self.url, self.name, self.part, self.meta = url, name, part, part_record
        self.options, self.progress, self.session, self.new_hashers = options, progress, session, new_hashers
        self.info = info or remote_info(url, options, session)
        self.clock = _Clock(options, f"download of {redact(url)}")
        self.hashers: _Hashers | None = None
        self.hashed = 0
        self.saved: PartRecord | None = None
        self.if_range: str | None = None
        self.total: int | None = self.info.size  # the size announced for the whole file
        max_size = options.max_size
        if max_size and self.total is not None and self.total > max_size:
            raise DownloadError(f"{name}: the server announces {self.total} bytes, more than [source] "
                                f"max_size_mib = {max_size // MIB}")
        saved = PartRecord.load(part_record)
        if part.exists() and saved is not None:
            self.if_range = self._resume_validator(saved)
        if self.if_range is None:
            self.discard()
        else:
            self.saved = saved
            if self.total is None:
                self.total = saved.size

    def _resume_validator(self, saved: PartRecord) -> str | None:
        """The If-Range value that vouches for the saved ``.part``, or None (start over)."""
        info = self.info
        if saved.url != self.url:
            return None
        if info.etag and saved.etag and not weak_equal(info.etag, saved.etag):
            return None
        if info.size is not None and saved.size is not None and info.size != saved.size:
            return None
        if is_strong(saved.etag) and (info.etag is None or info.etag == saved.etag):
            return saved.etag
        if saved.last_modified and info.last_modified in (None, saved.last_modified):
            return saved.last_modified  # never a weak ETag in If-Range (RFC 9110 13.1.5)
        return None

    def discard(self) -> None:
        """Forget the partial file and its validators: the next request starts from byte 0."""
        remove_quietly(self.part)
        remove_quietly(self.meta)
        self.saved, self.if_range, self.hashed = None, None, 0
        self.total = self.info.size

    def restart_hashers(self) -> _Hashers:
        if self.hashers is not None:
            self.hashers.abort()
        self.hashers = self.new_hashers()
        self.hashed = 0
        return self.hashers

    def run(self, unpack_into: Path | None) -> DownloadRecord:
        try:
            fetched = with_retries(self.attempt, f"download of {redact(self.url)}", self.options.retries,
                                   self.options.backoff)
            if unpack_into is not None and self.hashers is not None:
                self.hashers.keep_extraction(unpack_into)
        finally:
            if self.hashers is not None:
                self.hashers.abort()
        remove_quietly(self.meta)
        return fetched

    def _record(self, size: int) -> DownloadRecord:
        saved = self.saved or PartRecord(self.url)
        return DownloadRecord(self.url, self.name, str(self.part), size, saved.etag, saved.last_modified,
                              self.hashers.sha256.hexdigest(), self.hashers.md5_hex())

    def _from_part(self, why: str) -> DownloadRecord:
        log.info("%s: %s; hashing the %d bytes already here", self.name, why, self.part.stat().st_size)
        size = self.restart_hashers().feed_file(self.part)
        self.hashed = size
        return self._record(size)

    def attempt(self) -> DownloadRecord:
        have = self.part.stat().st_size if self.part.exists() else 0
        if have and self.if_range and self.total is not None:
            if have == self.total:
                return self._from_part("the partial file is already complete")
            if have > self.total:
                log.warning("%s: the partial file (%d bytes) is longer than the file (%d); starting over",
                            self.name, have, self.total)
                self.discard()
                have = 0
        if have and not self.if_range:
            self.discard()
            have = 0
        headers = {"Range": f"bytes={have}-", "If-Range": self.if_range} if have else {}
        with self.session.get(self.url, headers=headers, stream=True, timeout=self.options.timeout) as response:
            if response.status_code == 416 and have:
                complete = self._unsatisfiable(response, have)
                if complete is not None:
                    return complete
                restart = True
            else:
                raise_for_status(response)
                restart = response.status_code == 206 and bool(self._bad_206(response, have))
            if not restart:
                return self._receive(response, have)
        return self.attempt()  # the .part was discarded: the next request has no Range

    def _receive(self, response: requests.Response, have: int) -> DownloadRecord:
        """Check the answer to the GET and stream its body into the .part."""
        if response.status_code == 206:
            if not have:
                raise DownloadError(f"a 206 answer to a request without Range from {redact(self.url)}")
            log.info("resuming %s at byte %d", self.name, have)
            if self.hashed != have or self.hashers is None:
                self.hashed = self.restart_hashers().feed_file(self.part)
            mode = "ab"
        elif response.status_code == 200:
            self.restart_hashers()
            mode, have = "wb", 0
            length = _length(response)
            if length is not None:
                self.total = length
            elif self.info.size is None:
                self.total = None  # announced by nobody: read to the end, within max_size
            max_size = self.options.max_size
            if max_size and self.total is not None and self.total > max_size:
                raise DownloadError(f"{self.name}: the server announces {self.total} bytes, more than "
                                    f"[source] max_size_mib = {max_size // MIB}")
            self.saved = PartRecord(self.url, response.headers.get("ETag"),
                                    response.headers.get("Last-Modified"), self.total)
            self.saved.save(self.meta)
            self.if_range = self._resume_validator(self.saved) if self.total is not None else None
        else:
            raise DownloadError(f"unexpected HTTP {response.status_code} {response.reason} for "
                                f"{redact(self.url)}")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            log.info("%s: the server sent Content-Encoding: %s; keeping the bytes as sent", self.name, encoding)
        done = self._stream(response, mode, have)
        if self.total is not None and done < self.total:
            raise TransferBroken(f"connection broken: got {done} of {self.total} bytes")
        return self._record(done)

    def _stream(self, response: requests.Response, mode: str, have: int) -> int:
        """Write the body's raw bytes (no Content-Encoding undone) to the .part; return its new size.

        Reads return what the socket has (so the time bounds are checked even
        while bytes trickle in); they are gathered into CHUNK-sized pieces
        before they are written, hashed and unpacked.
        """
        raw, hashers = response.raw, self.hashers
        limit = self.total if self.total is not None else (self.options.max_size or None)
        pieces: list[bytes] = []
        state = {"done": have, "pending": 0}

        def flush(out) -> None:
            if not pieces:
                return
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            out.write(data)
            hashers.update(data)
            state["done"] += len(data)
            state["pending"] = 0
            self.hashed = state["done"]
            if self.progress:
                self.progress(state["done"], self.total)

        import urllib3

        with self.part.open(mode) as out:
            try:
                while True:
                    try:
                        chunk = raw.read1(CHUNK, decode_content=False)
                    except urllib3.exceptions.HTTPError as err:
                        raise TransferBroken(f"connection broken mid-transfer ({describe(err)})") from None
                    if not chunk:
                        break
                    if limit is not None and state["done"] + state["pending"] + len(chunk) > limit:
                        pieces.clear()
                        out.close()
                        self.discard()
                        if self.total is not None:
                            raise DownloadError(f"{self.name}: the server sent more than the {self.total} bytes "
                                                f"announced; partial file removed")
                        raise DownloadError(f"{self.name}: larger than [source] max_size_mib = {limit // MIB} "
                                            f"(no size announced); partial file removed")
                    pieces.append(chunk)
                    state["pending"] += len(chunk)
                    if state["pending"] >= CHUNK:
                        flush(out)
                    self.clock.tick(len(chunk))
            finally:
                if not out.closed:
                    flush(out)  # what arrived is kept, for the next try to resume from
                    out.flush()
                    os.fsync(out.fileno())
        return state["done"]

    def _unsatisfiable(self, response: requests.Response, have: int) -> DownloadRecord | None:
        """416 to ``Range: bytes=<have>-``: a .part of exactly the file's size is complete, else start over."""
        found = re.match(_UNSATISFIED, response.headers.get("Content-Range", ""))
        size = int(found.group(1)) if found else None
        etag = response.headers.get("ETag")
        vouched = not etag or not self.saved or not self.saved.etag or weak_equal(etag, self.saved.etag)
        if size == have and (self.total is None or self.total == size) and vouched:
            self.total = size
            return self._from_part(f"the server says the file has {size} bytes (416)")
        log.warning("%s: 416 for the partial file of %d bytes (the file has %s); starting over",
                    self.name, have, size if size is not None else "an unknown size")
        self.discard()
        return None

    def _bad_206(self, response: requests.Response, have: int) -> bool:
        """True (and the .part discarded) when a 206 cannot continue the .part of ``have`` bytes."""
        problem = self._problem_206(response, have) if have else None
        if problem:
            log.warning("%s: %s; starting over", self.name, problem)
            self.discard()
        return bool(problem)

    def _problem_206(self, response: requests.Response, have: int) -> str | None:
        if response.headers.get("Content-Type", "").lower().startswith("multipart/"):
            return "a multipart 206 answer"
        found = re.match(_RANGE, response.headers.get("Content-Range", ""))
        if not found:
            return f"a 206 answer without a usable Content-Range ({response.headers.get('Content-Range')!r})"
        start, end, total = int(found.group(1)), int(found.group(2)), found.group(3)
        if start != have:
            return f"a 206 answer starting at byte {start}, not {have}"
        if total == "*" or (self.total is not None and int(total) != self.total):
            return f"a 206 answer for a file of {total} bytes, not {self.total}"
        if int(total) != end + 1:
            return f"a 206 answer ending at byte {end} of {total}"
        length = _length(response)
        if length is not None and length != end - start + 1:
            return f"a 206 answer of {length} bytes for the range {start}-{end}"
        etag = response.headers.get("ETag")
        saved = self.saved.etag if self.saved else None
        if etag and saved and etag.removeprefix("W/") != saved.removeprefix("W/"):
            return f"a 206 answer for another version (ETag {etag}, expected {saved})"
        if etag and saved and not is_strong(etag) and is_strong(saved):
            return f"a 206 answer with the weak ETag {etag}"
        self.total = int(total)
        return None
