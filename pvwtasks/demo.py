"""Generate a small *stand-in* ParaView release for offline demos, tests and benchmarks.

The tarball is laid out like a ParaView Linux binary::

    ParaView-<ver>-MPI-Linux-Python3.X-x86_64/
        bin/pvpython                       runs this project's Python
        lib/python3.X/site-packages/paraview/web/pv_web_*.py   a small wslink app
        share/paraview-<maj.min>/README.txt

It is not ParaView: ``pvpython`` is a shell script that drops pvpython-only
flags (``-dr``) and execs the Python that generated it, which has wslink,
so the wslink launcher and the demo app really start.

Run ``python -m pvwtasks.demo OUT.tar.gz [--version 5.13.0] [--broken hang|crash]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import lzma
import os
import random
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

try:  # ISA-L deflates several times faster than zlib: a 1 GiB stand-in in seconds.
    from isal import igzip as _isal_gzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    _isal_gzip = None

PYTHON_TAG = f"{sys.version_info.major}.{sys.version_info.minor}"

PVPYTHON = """#!/bin/sh
# Stand-in pvpython of the pvwtasks demo release (not ParaView): runs the
# project's Python with the release's site-packages first on the path.
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here/lib/python{tag}/site-packages${{PYTHONPATH:+:$PYTHONPATH}}"
first=1
for arg in "$@"; do
  if [ "$first" = 1 ]; then set --; first=0; fi
  case "$arg" in
    -dr|--disable-registry|--force-offscreen-rendering) ;;
    *) set -- "$@" "$arg" ;;
  esac
done
exec {python} "$@"
"""

APP = '''"""Stand-in ParaViewWeb app of the pvwtasks demo release: a wslink echo server."""
import argparse
import sys

from wslink import register as exportRpc
from wslink import server
from wslink.websocket import LinkProtocol, ServerProtocol

BROKEN = {broken!r}
VERSION = {version!r}


class Echo(LinkProtocol):
    @exportRpc("test.echo")
    def echo(self, x):
        return {{"echo": x}}

    @exportRpc("demo.version")
    def version(self):
        return {{"version": VERSION}}


class App(ServerProtocol):
    authKey = "wslink-secret"

    @staticmethod
    def configure(options):
        App.authKey = options.authKey

    def initialize(self):
        self.registerLinkProtocol(Echo())
        self.updateSecret(App.authKey)


if __name__ == "__main__":
    if BROKEN == "crash":
        sys.exit("demo release built broken: crashing at start")
    if BROKEN == "hang":
        print("demo release built broken: never ready", flush=True)
        import time
        while True:
            time.sleep(3600)
    parser = argparse.ArgumentParser(description="pvwtasks demo app")
    server.add_arguments(parser)
    parser.add_argument("--data-dir", default=".")
    parser.add_argument("-f", "--force-flush", action="store_true")
    args = parser.parse_args()
    App.configure(args)
    server.start_webserver(options=args, protocol=App)
'''

APP_SCRIPTS = ("pv_web_visualizer.py", "pv_web_file_loader.py", "pv_web_data_prober.py")


def top_folder(version: str) -> str:
    return f"ParaView-{version}-MPI-Linux-Python{PYTHON_TAG}-x86_64"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644, mtime: float | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime if mtime is not None else time.time())
    tar.addfile(info, io.BytesIO(data))


def build_release(
    out: Path,
    version: str = "5.13.0",
    *,
    broken: str = "",
    python: str = sys.executable,
    filler_files: int = 0,
    filler_bytes: int = 0,
    seed: int = 0,
    compresslevel: int = 6,
) -> Path:
    """Write a stand-in release tarball to ``out`` (.tar.gz or .tar.xz) and return its path.

    ``broken`` makes the app never become ready ("hang") or exit at once
    ("crash").  ``filler_files``/``filler_bytes`` add share/ data with a mix of
    random and text-like bytes, for benchmarks.  Same arguments and seed give
    the same bytes.

    The archive is streamed to an adjacent temp file and renamed into place,
    so memory stays flat even for a 1 GiB / 30,000-file release.  gzip is
    written with ISA-L when available (``compresslevel`` 0-9 maps onto its
    levels 0-3), which is several times faster than zlib; the output is plain
    gzip that any tool inflates.
    """
    top = top_folder(version)
    major_minor = ".".join(version.split(".")[:2])
    site = f"{top}/lib/python{PYTHON_TAG}/site-packages"
    mtime = 1_700_000_000
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with _compressor(raw, out, compresslevel, mtime) as packed:
                with tarfile.open(fileobj=packed, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                    _add_release(tar, top, major_minor, site, version, broken, python, mtime)
                    if filler_files:
                        _add_filler(tar, f"{top}/share/paraview-{major_minor}/data", filler_files, filler_bytes,
                                    seed, mtime)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return out


def _compressor(raw: BinaryIO, out: Path, compresslevel: int, mtime: int) -> BinaryIO:
    if out.name.endswith(".xz"):
        return lzma.LZMAFile(raw, "wb", preset=min(compresslevel, 6))
    if _isal_gzip is not None:
        level = min(3, max(0, compresslevel) // 3)
        return _isal_gzip.IGzipFile(filename=out.name, mode="wb", compresslevel=level, fileobj=raw, mtime=mtime)
    return gzip.GzipFile(filename=out.name, mode="wb", compresslevel=compresslevel, fileobj=raw, mtime=mtime)


def _add_release(tar: tarfile.TarFile, top: str, major_minor: str, site: str, version: str, broken: str,
                 python: str, mtime: int) -> None:
    for folder in (top, f"{top}/bin", f"{top}/lib", f"{top}/lib/python{PYTHON_TAG}", site,
                   f"{site}/paraview", f"{site}/paraview/web", f"{top}/share", f"{top}/share/paraview-{major_minor}"):
        _add_dir(tar, folder, mtime)
    pvpython = PVPYTHON.format(tag=PYTHON_TAG, python=_sh_quote(python))
    _add(tar, f"{top}/bin/pvpython", pvpython.encode(), 0o755, mtime)
    _add(tar, f"{site}/paraview/__init__.py", f'"""Stand-in paraview package {version}."""\n'.encode(), 0o644, mtime)
    _add(tar, f"{site}/paraview/web/__init__.py", b"", 0o644, mtime)
    app = APP.format(broken=broken, version=version).encode()
    for script in APP_SCRIPTS:
        _add(tar, f"{site}/paraview/web/{script}", app, 0o644, mtime)
    readme = f"pvwtasks stand-in release {version}: not ParaView.\n".encode()
    _add(tar, f"{top}/share/paraview-{major_minor}/README.txt", readme, 0o644, mtime)


def _add_dir(tar: tarfile.TarFile, name: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
    tar.addfile(info)


_RANDOM_POOL = 16 << 20
_TEXT_POOL = 4 << 20


def _add_filler(tar: tarfile.TarFile, folder: str, count: int, total: int, seed: int, mtime: int) -> None:
    """Add ``count`` files of ``total`` bytes overall: half random, half text-like.

    Bytes are windows at random offsets into a 16 MiB random pool and a 4 MiB
    pool of random words.  gzip only looks 32 KiB back, so it compresses them
    like real binaries and text (about 1.5x overall, like a ParaView tarball)
    while generation costs almost nothing.  Every 100th file also gets a
    relative symlink beside it, as shared libraries have.
    """
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 12))) for _ in range(512)]
    per_file = max(1, total // count)
    biggest = int(per_file * 1.5) + 1
    random_pool = _pool(rng, min(_RANDOM_POOL, biggest * 4), lambda n: rng.randbytes(n))
    text_pool = _pool(rng, min(_TEXT_POOL, biggest * 4),
                      lambda n: b" ".join(rng.choice(words) for _ in range(n // 7)) + b"\n")
    for index in range(count):
        sub = f"{folder}/d{index // 500:03d}"
        if index % 500 == 0:
            _add_dir(tar, sub, mtime)
        size = max(1, int(per_file * rng.uniform(0.5, 1.5)))
        pool = random_pool if index % 2 else text_pool
        data = _window(pool, size, rng)
        _add(tar, f"{sub}/f{index:06d}.dat", data, 0o644, mtime)
        if index % 100 == 99:
            link = tarfile.TarInfo(f"{sub}/lib{index:06d}.so")
            link.type, link.linkname, link.mode, link.mtime = tarfile.SYMTYPE, f"f{index:06d}.dat", 0o777, mtime
            tar.addfile(link)


def _pool(rng: random.Random, size: int, make) -> bytes:
    parts, have = [], 0
    while have < size:
        part = make(min(1 << 20, size - have) or 1)
        parts.append(part)
        have += len(part)
    return b"".join(parts)


def _window(pool: bytes, size: int, rng: random.Random) -> bytes:
    if size <= len(pool):
        start = rng.randrange(0, len(pool) - size + 1)
        return pool[start:start + size]
    return (pool * (size // len(pool) + 1))[:size]


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a stand-in ParaView release tarball (not ParaView).")
    parser.add_argument("out", type=Path, help="output .tar.gz or .tar.xz path")
    parser.add_argument("--version", default="5.13.0")
    parser.add_argument("--broken", choices=["", "hang", "crash"], default="")
    parser.add_argument("--python", default=sys.executable, help="Python the stand-in pvpython runs")
    parser.add_argument("--filler-files", type=int, default=0)
    parser.add_argument("--filler-bytes", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_release(args.out, args.version, broken=args.broken, python=args.python,
                         filler_files=args.filler_files, filler_bytes=args.filler_bytes, seed=args.seed)
    print(f"stand-in release written to {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
