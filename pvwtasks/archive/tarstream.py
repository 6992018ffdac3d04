"""Tar headers parsed over a forward-only stream of decompressed chunks.

``tarfile`` mode ``r:`` parses the headers (ustar, GNU, pax); it reads from
:class:`ForwardReader`, which never copies more than one header or one
chunk of file data at a time and refuses headers too big to buffer.
"""

from __future__ import annotations

import tarfile
from typing import Iterator

from ..errors import UnsafeArchive
from .writers import ASYNC_MAX_FILE, COPY_CHUNK

MAX_READ = max(COPY_CHUNK, ASYNC_MAX_FILE)  # the largest read a member's data needs


class ForwardReader:
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
            raise UnsafeArchive(f"a tar header of {size} bytes (rule: headers fit in {MAX_READ} bytes); "
                                "refusing to buffer it")
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


def members(reader: ForwardReader) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Yield each member header of the tar ``reader`` streams, in order, with its ``TarFile``.

    The member's data must be read (or skipped, by seeking) before the next
    one is asked for.  Raises ``tarfile.TarError`` / ``EOFError`` on a
    corrupt or cut-short tar.
    """
    with tarfile.open(fileobj=reader, mode="r:") as tar:
        while (member := tar.next()) is not None:
            yield tar, member
            tar.members.clear()  # keep memory flat: we never look members up again
