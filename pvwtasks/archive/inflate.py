"""Push-style inflating of the bytes of a .tar.gz, .tar.xz or plain .tar, in bounded steps.

The caller hands over compressed bytes as they come (from a file or a
socket); :meth:`Inflater.push` yields the tar bytes they complete, at most
``INFLATE_MAX`` at a time, so memory stays flat even for a gzip bomb and
the caller can stop between two steps.
"""

from __future__ import annotations

import lzma
from typing import Iterator

from ..errors import InstallError

try:  # ISA-L inflates gzip several times faster than zlib, and releases the GIL.
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    import zlib as _zlib

READ_CHUNK = 1 << 20  # compressed bytes read from disk at a time
INFLATE_MAX = 1 << 20  # decompressed bytes produced per step (bounds memory even for gzip bombs)
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
_TAR_MAGIC_AT = 257  # "ustar" in the first header of a plain tar
_HEAD = _TAR_MAGIC_AT + 5
# What corrupt or cut-short compressed input raises.
INPUT_ERRORS = (EOFError, lzma.LZMAError, _zlib.error)


def kind_of(head: bytes) -> str:
    """"gz", "xz" or "tar" from an archive's first bytes ("" if it is none of them)."""
    if head[:2] == GZIP_MAGIC:
        return "gz"
    if head[:6] == XZ_MAGIC:
        return "xz"
    if head[_TAR_MAGIC_AT:_HEAD] == b"ustar":
        return "tar"
    return ""


def not_an_archive(label: str) -> InstallError:
    return InstallError(f"{label}: not a .tar.gz or .tar.xz archive (nor a plain .tar)")


class Inflater:
    """Decompress gzip (any number of members), xz (any number of streams) or pass a plain tar through."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._head = b""
        self._kind = ""
        self._inflater = None
        self._ended = False  # plain tar: nothing to check at the end

    def _new(self):
        return _zlib.decompressobj(31) if self._kind == "gz" else lzma.LZMADecompressor()

    def push(self, data: bytes) -> Iterator[bytes]:
        """Yield the decompressed bytes ``data`` completes (raises InstallError or INPUT_ERRORS on bad input)."""
        if not self._kind:
            self._head += data
            # Compressed archives are told by 2-6 bytes; a plain tar only by its 262nd.
            if len(self._head) < 6 or (len(self._head) < _HEAD and not kind_of(self._head[:6])):
                return
            data, self._head = self._head, b""
            self._kind = kind_of(data)
            if not self._kind:
                raise not_an_archive(self.label)
            if self._kind != "tar":
                self._inflater = self._new()
        if self._kind == "tar":
            for start in range(0, len(data), INFLATE_MAX):
                yield data[start:start + INFLATE_MAX]
        else:
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
        """At the end of input: raise InstallError/EOFError if the input was no archive or is cut short."""
        if not self._kind:
            if self._head:  # a plain tar shorter than one header, or no archive at all
                raise not_an_archive(self.label)
            raise EOFError("no bytes at all")
        if self._kind != "tar" and not self._inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
