"""Safe, streaming extraction of release tarballs (.tar.gz, .tar.xz).

Each member goes through the checks of ``filter="data"`` (no absolute
paths, nothing outside the destination, no links that escape it, no device
files) plus two stricter rules of ours: no absolute names at all and no
``..`` components.  The archive is read once, as a stream, and members are
written with plain ``os`` calls.

ParaView releases hold tens of thousands of files, so the per-member cost
matters (issue 6):

- gzip is inflated with ISA-L (``isal``), which releases the GIL;
- tar headers are parsed by ``tarfile`` over a forward-only reader, without
  ``tarfile``'s small-block stream copies;
- a regular file or folder whose parent is a folder this extraction created
  itself, and whose name nothing has claimed yet, cannot resolve anywhere but
  ``dest/name``: for it the ``realpath`` walks of ``tarfile.data_filter``
  are skipped and the same mode rules are applied directly
  (:func:`_data_mode`).  Every other member (links, duplicates, anything
  below a symlink) takes ``data_filter`` itself, after all earlier writes
  have landed;
- file creation, which costs the kernel far more than tar parsing, runs in
  a few writer threads.

:class:`StreamExtractor` runs the same extraction on bytes handed over by
another thread, so a download can be unpacked while it arrives; the caller
decides whether to keep the result (only once the bytes are verified).
"""

from __future__ import annotations

import errno
import lzma
import os
import queue
import shutil
import tarfile
import threading
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, Iterator

from .errors import InstallError, UnsafeArchive

try:  # ISA-L inflates gzip several times faster than zlib, and releases the GIL.
    from isal import igzip as _gzip
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip
    import zlib as _zlib

COPY_CHUNK = 1 << 20
READ_CHUNK = 1 << 20  # compressed bytes read from disk at a time
INFLATE_MAX = 1 << 20  # decompressed bytes produced per step (bounds memory even for gzip bombs)
ASYNC_MAX_FILE = 4 << 20  # bigger files are written by the parsing thread itself
MAX_READ = max(COPY_CHUNK, ASYNC_MAX_FILE)  # the largest read a member's data needs
WRITE_BUDGET = 32 << 20  # bytes queued for the writer threads at most (about two folders of ParaView files)
_JOB_COST = 1024  # bookkeeping per queued file, so many empty files stay bounded too
# Files of one folder always go to the same writer: creations in one folder serialize on
# its lock in the kernel, and threads fighting for it burned more sys time than they saved.
WRITERS = 4
STAGED_PREFIX = ".incoming-staged-"
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def open_archive(path: Path) -> BinaryIO:
    """Open ``path`` as a decompressed byte stream, by its magic bytes."""
    with path.open("rb") as probe:
        magic = probe.read(6)
    if magic[:2] == _GZIP_MAGIC:
        return _gzip.open(path, "rb")
    if magic == _XZ_MAGIC:
        return lzma.open(path, "rb")
    raise InstallError(f"{path.name}: not a .tar.gz or .tar.xz archive")


def staged_path(folder: Path, sha256: str) -> Path:
    """Where a tree extracted while downloading is kept until the bytes whose sha256 it is are verified."""
    return folder / f"{STAGED_PREFIX}{sha256}"


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


def _data_mode(mode: int | None) -> int | None:
    """The mode ``tarfile.data_filter`` gives a regular file (see ``_get_filtered_attrs``)."""
    if mode is None:
        return None
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def extract(archive: Path, dest: Path) -> list[str]:
    """Extract ``archive`` into the empty folder ``dest``; return the top-level names.

    Raises UnsafeArchive on the first hostile member and InstallError on a
    corrupt archive; the caller discards ``dest`` then.  This thread reads
    and inflates; another parses and writes.
    """
    try:
        source = archive.open("rb")
    except OSError as err:
        raise InstallError(f"cannot extract {archive.name}: {err.strerror}") from None
    with source:
        magic = source.read(6)
        source.seek(0)
        if magic[:2] != _GZIP_MAGIC and magic != _XZ_MAGIC:
            raise InstallError(f"{archive.name}: not a .tar.gz or .tar.xz archive")
        unpacker = _Unpacker(dest, archive.name)
        try:
            while not unpacker.finished() and (chunk := source.read(READ_CHUNK)):
                unpacker.feed(chunk)
        except OSError as err:
            unpacker.stop()
            raise InstallError(f"cannot extract {archive.name}: {err.strerror}") from None
        finally:
            unpacker.close()
    if unpacker.error is not None:
        raise unpacker.error
    return unpacker.tops or []


def _extract_chunks(chunks: Iterable[bytes], dest: Path, label: str) -> list[str]:
    """Extract the tar whose decompressed bytes ``chunks`` yields into ``dest`` (see :func:`extract`)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        reader = _ForwardReader(iter(chunks))
        with _Extraction(dest) as extraction, tarfile.open(fileobj=reader, mode="r:") as tar:
            while (member := tar.next()) is not None:
                extraction.add(tar, reader, member)
                tar.members.clear()  # keep memory flat: we never look members up again
            extraction.check_links()
            return extraction.tops()
    except (tarfile.TarError, EOFError, lzma.LZMAError, _zlib.error, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise InstallError(f"cannot extract {label}: {err.strerror}") from None
        raise InstallError(f"{label}: corrupt or truncated archive ({err})") from None


class _Stopped(Exception):
    """The producer of a streamed archive went away."""


class _Inflater:
    """Push-style decompression of gzip (any number of members) or xz, in steps of at most INFLATE_MAX bytes."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._head = b""
        self._kind = ""
        self._inflater = None

    def _new(self):
        return _zlib.decompressobj(31) if self._kind == "gz" else lzma.LZMADecompressor()

    def push(self, data: bytes) -> Iterator[bytes]:
        """Yield the decompressed bytes ``data`` completes (raises on corrupt input)."""
        if not self._kind:
            self._head += data
            if len(self._head) < 6:
                return
            data, self._head = self._head, b""
            if data[:2] == _GZIP_MAGIC:
                self._kind = "gz"
            elif data[:6] == _XZ_MAGIC:
                self._kind = "xz"
            else:
                raise InstallError(f"{self.label}: not a .tar.gz or .tar.xz archive")
            self._inflater = self._new()
        yield from (self._push_gz(data) if self._kind == "gz" else self._push_xz(data))

    def _push_gz(self, pending: bytes) -> Iterator[bytes]:
        while pending:
            if self._inflater.eof:  # a gzip member ended; another follows (pigz, concatenated files)
                self._inflater = self._new()
            out = self._inflater.decompress(pending, INFLATE_MAX)
            pending = self._inflater.unconsumed_tail
            if self._inflater.eof:
                pending = self._inflater.unused_data + pending
            if out:
                yield out
        while not self._inflater.eof:  # output held back by the size limit, with no input left
            out = self._inflater.decompress(b"", INFLATE_MAX)
            if not out:
                break
            yield out

    def _push_xz(self, pending: bytes) -> Iterator[bytes]:
        while True:
            if self._inflater.eof:
                if not pending:
                    return
                self._inflater = self._new()
            if self._inflater.needs_input:
                if not pending:
                    return
                out = self._inflater.decompress(pending, INFLATE_MAX)
            else:
                out = self._inflater.decompress(b"", INFLATE_MAX)
            pending = self._inflater.unused_data if self._inflater.eof else b""
            if out:
                yield out

    def check_complete(self) -> None:
        """At the end of input: raise EOFError if the last stream is cut short."""
        if self._inflater is None or not self._inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")


class _Unpacker:
    """One extraction: the caller's thread pushes compressed bytes (and inflates them); a thread of
    its own parses the tar and hands files to the writers.

    Errors of the input (corrupt or cut-short compression) are queued, not
    raised, and reach the parser only if it reads that far: bytes after the
    tar's end-of-archive never matter, as with ``tarfile`` alone.
    """

    def __init__(self, dest: Path, label: str, depth: int = 8) -> None:
        self.dest = dest
        self.label = label
        self.error: BaseException | None = None
        self.tops: list[str] | None = None
        self._inflater = _Inflater(label)
        self._queue: queue.Queue = queue.Queue(depth)
        self._input_failed = False
        self._closed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="extract-parse", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self) -> None:
        try:
            self.tops = _extract_chunks(self._chunks(), self.dest, self.label)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            self.error = err
        finally:
            self._done.set()

    def _put(self, item) -> None:
        while not self._done.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def finished(self) -> bool:
        """True once the parser stopped (end of the archive, or an error)."""
        return self._done.is_set()

    def feed(self, data: bytes) -> None:
        """Inflate ``data`` here and queue it for the parser (blocks while the parser is behind)."""
        if self._done.is_set() or self._input_failed:
            return
        try:
            for out in self._inflater.push(data):
                self._put(out)
        except (InstallError, EOFError, lzma.LZMAError, _zlib.error) as err:
            self._input_failed = True
            self._put(err)

    def stop(self) -> None:
        """Make the parser stop at its next read."""
        if not self._input_failed:
            self._input_failed = True
            self._put(_Stopped("extraction stopped"))

    def close(self) -> None:
        """End of input: wait until the parser is done (``error`` / ``tops`` tell how it went)."""
        if not self._closed:
            self._closed = True
            if not self._input_failed:
                try:
                    self._inflater.check_complete()
                except EOFError as err:
                    self._input_failed = True
                    self._put(err)
            self._put(None)
        self._thread.join()


class _ForwardReader:
    """A read-only, forward-seeking file over decompressed chunks (what ``tarfile`` mode ``r:`` needs)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._at = 0  # read position inside _buf
        self._pos = 0  # absolute position
        self.name = None
        self.mode = "rb"

    def _fill(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._buf = self._buf[self._at:] + chunk if self._at < len(self._buf) else chunk
        self._at = 0
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buf[self._at:]]
            parts.extend(self._chunks)
            data = b"".join(parts)
            self._buf, self._at = b"", 0
            self._pos += len(data)
            return data
        if size > MAX_READ:  # only tar's own pax/long-name headers read this much at once
            raise UnsafeArchive(f"a tar header of {size} bytes; refusing to buffer it")
        if len(self._buf) - self._at < size:
            parts, have = [self._buf[self._at:]], len(self._buf) - self._at
            while have < size:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                parts.append(chunk)
                have += len(chunk)
            self._buf, self._at = b"".join(parts), 0
        data = self._buf[self._at:self._at + size]
        self._at += len(data)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self._pos
        elif whence != 0:
            raise OSError("cannot seek from the end of a stream")
        if offset < self._pos:
            raise tarfile.ReadError("backward seek in a streamed archive")
        while offset > self._pos:
            have = len(self._buf) - self._at
            if not have and not self._fill():
                break
            step = min(offset - self._pos, len(self._buf) - self._at)
            self._at += step
            self._pos += step
        return self._pos

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True


class _Writers:
    """Threads that create small regular files, which costs the kernel far more than parsing them."""

    def __init__(self, count: int = WRITERS) -> None:
        self._queues: list[queue.Queue] = [queue.Queue() for _ in range(count)]  # one per writer
        self._writer_of: dict[str, int] = {}
        self._cond = threading.Condition()
        self._pending = 0  # jobs queued or running
        self._bytes = 0
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._run, args=(self._queues[n],), name=f"extract-writer-{n}",
                                          daemon=True) for n in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, path: str, data: bytes, mode: int, mtime: float) -> None:
        cost = len(data) + _JOB_COST
        with self._cond:
            while self._pending and self._bytes + cost > WRITE_BUDGET and self._error is None:
                self._cond.wait()
            self._raise()
            self._pending += 1
            self._bytes += cost
        folder = os.path.dirname(path)
        writer = self._writer_of.get(folder)
        if writer is None:  # folders in archive order take turns: neighbours write in parallel
            writer = self._writer_of[folder] = len(self._writer_of) % len(self._queues)
        self._queues[writer].put((path, data, mode, mtime, cost))

    def _run(self, jobs: queue.Queue) -> None:
        while (job := jobs.get()) is not None:
            path, data, mode, mtime, cost = job
            try:
                if self._error is None:
                    _write_file(path, data, mode, mtime)
            except BaseException as err:  # noqa: BLE001 - handed to the parsing thread
                with self._cond:
                    if self._error is None:
                        self._error = err
            finally:
                with self._cond:
                    self._pending -= 1
                    self._bytes -= cost
                    self._cond.notify_all()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def barrier(self) -> None:
        """Wait until every queued file is written; raise the first writer error."""
        with self._cond:
            while self._pending:
                self._cond.wait()
            self._raise()

    def close(self) -> None:
        """Stop the threads (after the queued jobs; a failure skips them)."""
        for number in range(len(self._threads)):
            self._queues[number].put(None)
        for thread in self._threads:
            thread.join()


def _write_file(path: str, data: bytes, mode: int, mtime: float) -> None:
    fd = os.open(path, _WRITE_FLAGS, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        if mtime:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


class _Extraction:
    """The state of one extraction into ``dest``: what it created, and its writer threads."""

    def __init__(self, dest: Path) -> None:
        self.dest = os.path.realpath(dest)
        # Fast path only into an empty folder: then nothing exists that this extraction did not make.
        fresh = not os.listdir(self.dest)
        self.real_dirs: set[str] = {""} if fresh else set()  # folders we made, reached through folders only
        self.claimed: set[str] = {""}  # names (resolved, relative to dest) that exist because of us
        self.made_dirs: set[str] = {self.dest}
        self._tops: set[str] = set()
        self.links: list[str] = []  # every symlink made, checked again at the end
        self.writers = _Writers()

    def __enter__(self) -> "_Extraction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.writers.barrier()
        finally:
            if exc_type is not None:
                with self.writers._cond:  # skip queued files: the caller discards dest
                    self.writers._error = self.writers._error or exc or RuntimeError("extraction stopped")
            self.writers.close()

    def tops(self) -> list[str]:
        return sorted(self._tops)

    def add(self, tar: tarfile.TarFile, reader: _ForwardReader, member: tarfile.TarInfo) -> None:
        name = _checked_name(member)
        if not name:
            return
        member.name = name
        self._tops.add(name.split("/", 1)[0])
        parent, _, _base = name.rpartition("/")
        if name not in self.claimed and not member.issparse() and self._real_parent(parent):
            if member.isdir():
                os.mkdir(os.path.join(self.dest, name))
                self.real_dirs.add(name)
                self.claimed.add(name)
                return
            if member.isreg():
                self.claimed.add(name)
                self._write_regular(reader, member, os.path.join(self.dest, name))
                return
            if member.issym():
                # Nothing is (or is being written) at this name, and the target check
                # only resolves links and folders, which are never written late.
                member = self._filtered(member)
                os.symlink(member.linkname, os.path.join(self.dest, name))
                self.claimed.add(name)
                self.links.append(os.path.join(self.dest, name))
                return
        # Everything else: links, devices, duplicates, names under a symlink.  The
        # checks look at the disk, so let every earlier write land first.
        self.writers.barrier()
        member = self._filtered(member)
        target = os.path.join(self.dest, member.name)
        _write_member(tar, member, self.dest, self.made_dirs)
        self._claim(target)
        if member.issym():
            self.links.append(target)

    def check_links(self) -> None:
        """Refuse the tree if a symlink now resolves outside it.

        Each link was checked when it was made, but a later member can
        replace a link that an earlier one goes through (``a -> b/../..``
        made while ``b`` pointed two folders down, then ``b -> .``).
        Nothing is written through such a link (every write is checked
        when it happens), but the tree must not keep it either.
        """
        for link in self.links:
            name = os.path.relpath(link, self.dest)
            self._inside(name, _resolve(link))

    def _filtered(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        if member.issparse():  # written out in full, a tiny archive could fill the disk
            raise UnsafeArchive(f"member {member.name!r} is a sparse file; releases have none")
        target = os.path.join(self.dest, member.name)
        self._inside(member.name, _resolve(target))
        if member.issym():
            self._inside(member.name, _resolve(os.path.join(os.path.dirname(target), member.linkname)))
        elif member.islnk():
            source = os.path.join(self.dest, member.linkname)
            self._inside(member.name, _resolve(source))
            if os.path.islink(source):  # os.link would copy the symlink's text to another folder
                raise UnsafeArchive(f"hard link {member.name!r} points to the symlink {member.linkname!r}")
        try:
            return tarfile.data_filter(member, self.dest)
        except tarfile.FilterError as err:
            raise UnsafeArchive(f"member {member.name!r} rejected: {err}") from None

    def _inside(self, name: str, resolved: str) -> None:
        if os.path.commonpath([resolved, self.dest]) != self.dest:
            raise UnsafeArchive(f"member {name!r} resolves to {resolved!r}, outside the tree")

    def _real_parent(self, parent: str) -> bool:
        """True when ``parent`` is (or can be made as) a real folder of ours: no symlink on the way.

        Missing folders that nothing has claimed are created here, as
        ``makedirs`` would; an archive need not list every folder.
        """
        if parent in self.real_dirs:
            return True
        missing = []
        while parent not in self.real_dirs:
            if parent in self.claimed:  # a link, a file or a folder reached through a link
                return False
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for folder in reversed(missing):
            os.mkdir(os.path.join(self.dest, folder))
            self.real_dirs.add(folder)
            self.claimed.add(folder)
        return True

    def _claim(self, target: str) -> None:
        """Record where a slow-path member landed (and the folders above it) as taken."""
        resolved = os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
        rel = os.path.relpath(resolved, self.dest)
        if rel == ".." or rel.startswith("../"):
            return
        while rel and rel != "." and rel not in self.claimed:
            self.claimed.add(rel)
            rel = os.path.dirname(rel)

    def _write_regular(self, reader: _ForwardReader, member: tarfile.TarInfo, target: str) -> None:
        mode = _data_mode(member.mode)
        mode = 0o644 if mode is None else mode
        reader.seek(member.offset_data)
        if member.size <= ASYNC_MAX_FILE:
            data = reader.read(member.size)
            if len(data) != member.size:
                raise tarfile.ReadError("unexpected end of data")
            self.writers.submit(target, data, mode, member.mtime)
            return
        fd = os.open(target, _WRITE_FLAGS, mode)
        try:
            left = member.size
            while left:
                data = reader.read(min(COPY_CHUNK, left))
                if not data:
                    raise tarfile.ReadError("unexpected end of data")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                left -= len(data)
            os.fchmod(fd, mode)
            if member.mtime:
                os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)


def _resolve(path: str) -> str:
    """``realpath`` that refuses what the kernel refuses (a path too long, a link loop).

    Python 3.11.7's non-strict ``realpath`` stops following links once the
    path passes PATH_MAX and carries on lexically, so a crafted tree can
    look inside while the kernel resolves it outside (CVE-2025-4517).
    Missing trailing parts are joined lexically, as the member does not
    exist yet; a link loop, which the kernel cannot follow either, is
    judged as written.
    """
    try:
        return os.path.realpath(path, strict=True)
    except (FileNotFoundError, NotADirectoryError):
        head, tail = os.path.split(path)
        if not tail or head == path:
            return os.path.normpath(path)
        return os.path.normpath(os.path.join(_resolve(head), tail))
    except OSError as err:
        if err.errno == errno.ELOOP:  # the kernel cannot follow it either: judge the path as written
            return os.path.normpath(path)
        raise UnsafeArchive(f"cannot resolve {path!r} safely: {err.strerror}") from None


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
            out.flush()  # before utime, or the last buffered write stamps the file "now"
            os.fchmod(out.fileno(), member.mode if member.mode is not None else 0o644)
            if member.mtime:
                os.utime(out.fileno(), (member.mtime, member.mtime))
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        os.link(os.path.join(dest, member.linkname), target, follow_symlinks=False)
    else:  # data_filter already refuses devices and fifos
        raise UnsafeArchive(f"member {member.name!r} is not a file, folder or link")


class StreamExtractor:
    """Extract an archive into ``dest`` from bytes handed over with :meth:`feed` by another thread.

    Meant for unpacking a download while it arrives: :meth:`feed` inflates in
    the caller's thread, a thread of its own parses, writer threads create
    the files.  It never raises into the feeding thread: a hostile or
    corrupt archive just makes :meth:`finish` answer None (and removes
    ``dest``), and the caller falls back to extracting the verified file.
    Whether the tree may be used is the caller's decision, once the bytes
    it came from are verified.
    """

    def __init__(self, dest: Path, label: str = "archive", depth: int = 8) -> None:
        self.dest = dest
        self.label = label
        self._unpacker = _Unpacker(dest, label, depth)

    @property
    def error(self) -> BaseException | None:
        return self._unpacker.error

    def feed(self, chunk: bytes) -> None:
        """Hand over the next bytes of the archive (blocks while the extractor is behind)."""
        self._unpacker.feed(chunk)

    def finish(self) -> list[str] | None:
        """Wait for the end of the archive; return its top-level names, or None if extraction failed."""
        self._unpacker.close()
        if self._unpacker.error is not None or self._unpacker.tops is None:
            shutil.rmtree(self.dest, ignore_errors=True)
            return None
        return self._unpacker.tops

    def abort(self) -> None:
        """Stop extracting and remove ``dest``."""
        self._unpacker.stop()
        self._unpacker.close()
        shutil.rmtree(self.dest, ignore_errors=True)
