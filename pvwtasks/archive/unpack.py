"""Extract a tar stream into a folder: from a file (:func:`extract`) or from bytes arriving (:class:`StreamExtractor`).

The caller's thread reads and inflates; a thread of our own parses the tar
headers and creates folders and links; writer threads create the files.
"""

from __future__ import annotations

import queue
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InstallError, PvwError
from .inflate import INPUT_ERRORS, READ_CHUNK, Inflater, kind_of, not_an_archive
from .tarstream import ForwardReader, members
from .tree import ExpansionLimitReached, Tree

# Unpacking while downloading writes at most STREAM_RATIO times the bytes received so far,
# plus STREAM_SLACK, before the digest is known (a ParaView tarball inflates about 3x; a
# gzip bomb about 1000x).  Past it the stream extraction stops and install extracts the
# verified file instead.
STREAM_RATIO = 20
STREAM_SLACK = 16 << 20


class _Stopped(Exception):
    """The producer of a streamed archive went away."""


def _labelled(err: PvwError, label: str) -> PvwError:
    text = str(err)
    return err if text.startswith(f"{label}:") else type(err)(f"{label}: {text}")


def extract(archive: Path, dest: Path) -> list[str]:
    """Extract ``archive`` (.tar.gz, .tar.xz or .tar) into the empty folder ``dest``; return the top-level names.

    Raises UnsafeArchive on the first hostile member (naming it and the
    rule it broke) and InstallError on a corrupt archive or a write error;
    the caller discards ``dest`` then.
    """
    try:
        source = archive.open("rb")
    except OSError as err:
        raise InstallError(f"cannot extract {archive.name}: {err.strerror}") from None
    with source:
        if not kind_of(source.read(262)):
            raise not_an_archive(archive.name)
        source.seek(0)
        unpacker = Unpacker(dest, archive.name)
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


def _extract_chunks(chunks: Iterable[bytes], dest: Path, label: str, budget=None) -> list[str]:
    """Extract the tar whose decompressed bytes ``chunks`` yields into ``dest`` (see :func:`extract`)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        reader = ForwardReader(iter(chunks))
        with Tree(dest, budget) as tree:
            for tar, member in members(reader):
                tree.add(tar, reader, member)
            return tree.finish()
    except PvwError as err:
        raise _labelled(err, label) from None
    except (tarfile.TarError, *INPUT_ERRORS, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise InstallError(f"cannot extract {label}: {err.strerror}") from None
        raise InstallError(f"{label}: corrupt or truncated archive ({err})") from None


class Unpacker:
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
        self.inflated = 0  # tar bytes handed to the parser so far
        self.limit: int | None = None  # the most bytes the tree may take on disk now (set by the feeder)
        self._inflater = Inflater(label)
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
            self.tops = _extract_chunks(self._chunks(), self.dest, self.label, lambda: self.limit)
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

    def feed(self, data: bytes, limit: int | None = None) -> bool:
        """Inflate ``data`` here and queue it for the parser (blocks while the parser is behind).

        Returns False, without queueing the step that would pass it, once the
        tar bytes inflated in all would exceed ``limit``.
        """
        if self._done.is_set() or self._input_failed:
            return True
        try:
            for out in self._inflater.push(data):
                if limit is not None and self.inflated + len(out) > limit:
                    return False
                self.inflated += len(out)
                self._put(out)
        except (InstallError, *INPUT_ERRORS) as err:
            self._input_failed = True
            self._put(err)
        return True

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
                except (InstallError, EOFError) as err:
                    self._input_failed = True
                    self._put(err)
            self._put(None)
        self._thread.join()


class StreamExtractor:
    """Extract an archive into ``dest`` from bytes handed over with :meth:`feed` by another thread.

    Meant for unpacking a download while it arrives: :meth:`feed` inflates in
    the caller's thread, a thread of its own parses, writer threads create
    the files.  It never raises into the feeding thread: a hostile or
    corrupt archive just makes :meth:`finish` answer None (and removes
    ``dest``), and the caller falls back to extracting the verified file.
    Whether the tree may be used is the caller's decision, once the bytes
    it came from are verified.

    Nothing is verified yet, so neither the tar bytes unpacked nor what the
    tree costs the disk (file sizes in whole blocks, a block per folder,
    link or empty file) ever exceed ``STREAM_RATIO`` times the bytes fed
    plus ``STREAM_SLACK`` (nor ``max_bytes``, when given).  An archive that inflates more makes it give
    up quietly: it removes ``dest``, ignores the rest of the bytes, and
    :meth:`finish` answers None with :attr:`error` an ExpansionLimitReached.
    """

    def __init__(self, dest: Path, label: str = "archive", depth: int = 8, max_bytes: int | None = None) -> None:
        self.dest = dest
        self.label = label
        self.max_bytes = max_bytes
        self.received = 0
        self._gave_up: ExpansionLimitReached | None = None
        self._unpacker = Unpacker(dest, label, depth)

    @property
    def error(self) -> BaseException | None:
        return self._gave_up or self._unpacker.error

    @property
    def gave_up(self) -> bool:
        """True once it stopped because the archive inflates more than allowed before verification."""
        return isinstance(self.error, ExpansionLimitReached)

    @property
    def unpacked(self) -> int:
        """Tar bytes handed to the parser so far (an upper bound of the bytes written)."""
        return self._unpacker.inflated

    def limit(self) -> int:
        """The most tar bytes it may unpack from the bytes received so far."""
        bound = STREAM_RATIO * self.received + STREAM_SLACK
        return bound if self.max_bytes is None else min(bound, self.max_bytes)

    def feed(self, chunk: bytes) -> None:
        """Hand over the next bytes of the archive (blocks while the extractor is behind)."""
        if self._gave_up is not None:
            return
        self.received += len(chunk)
        limit = self._unpacker.limit = self.limit()
        fed = self._unpacker.feed(chunk, limit)
        if not fed or isinstance(self._unpacker.error, ExpansionLimitReached):
            written = "inflates" if not fed else "writes"
            self._gave_up = ExpansionLimitReached(
                f"{self.label} {written} to more than {limit} bytes from the first {self.received} received "
                f"(the limit before verification is {STREAM_RATIO}x + {STREAM_SLACK >> 20} MiB"
                + (f", at most {self.max_bytes}" if self.max_bytes is not None else "") + ")")
            self._discard()

    def _discard(self) -> None:
        self._unpacker.stop()
        self._unpacker.close()
        shutil.rmtree(self.dest, ignore_errors=True)

    def finish(self) -> list[str] | None:
        """Wait for the end of the archive; return its top-level names, or None if extraction failed or gave up."""
        if self._gave_up is not None:
            return None
        self._unpacker.close()
        if self._unpacker.error is not None or self._unpacker.tops is None:
            shutil.rmtree(self.dest, ignore_errors=True)
            return None
        return self._unpacker.tops

    def abort(self) -> None:
        """Stop extracting and remove ``dest``."""
        self._discard()
