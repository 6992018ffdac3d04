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
import io
import os
import random
import sys
import tarfile
import time
from pathlib import Path

from .fsutil import atomic_write_bytes

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
    """
    top = top_folder(version)
    major_minor = ".".join(version.split(".")[:2])
    site = f"{top}/lib/python{PYTHON_TAG}/site-packages"
    mtime = 1_700_000_000
    mode = "w:xz" if out.name.endswith(".xz") else "w:gz"
    buffer = io.BytesIO()
    options = {} if mode == "w:xz" else {"compresslevel": compresslevel}
    with tarfile.open(fileobj=buffer, mode=mode, **options) as tar:
        for folder in (top, f"{top}/bin", f"{top}/lib", f"{top}/lib/python{PYTHON_TAG}", site,
                       f"{site}/paraview", f"{site}/paraview/web", f"{top}/share", f"{top}/share/paraview-{major_minor}"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        pvpython = PVPYTHON.format(tag=PYTHON_TAG, python=_sh_quote(python))
        _add(tar, f"{top}/bin/pvpython", pvpython.encode(), 0o755, mtime)
        _add(tar, f"{site}/paraview/__init__.py", f'"""Stand-in paraview package {version}."""\n'.encode(), 0o644, mtime)
        _add(tar, f"{site}/paraview/web/__init__.py", b"", 0o644, mtime)
        app = APP.format(broken=broken, version=version).encode()
        for script in APP_SCRIPTS:
            _add(tar, f"{site}/paraview/web/{script}", app, 0o644, mtime)
        readme = f"pvwtasks stand-in release {version}: not ParaView.\n".encode()
        _add(tar, f"{top}/share/paraview-{major_minor}/README.txt", readme, 0o644, mtime)
        if filler_files:
            _add_filler(tar, f"{top}/share/paraview-{major_minor}/data", filler_files, filler_bytes, seed, mtime)
    atomic_write_bytes(out, buffer.getvalue())
    return out


def _add_filler(tar: tarfile.TarFile, folder: str, count: int, total: int, seed: int, mtime: int) -> None:
    """Add ``count`` files of ``total`` bytes overall: half random, half text-like."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 12))) for _ in range(512)]
    per_file = max(1, total // count)
    for index in range(count):
        sub = f"{folder}/d{index // 500:03d}"
        if index % 500 == 0:
            info = tarfile.TarInfo(sub)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        size = max(1, int(per_file * rng.uniform(0.5, 1.5)))
        if index % 2:
            data = rng.randbytes(size)
        else:
            chunk = b" ".join(rng.choice(words) for _ in range(256)) + b"\n"
            data = (chunk * (size // len(chunk) + 1))[:size]
        _add(tar, f"{sub}/f{index:06d}.dat", data, 0o644, mtime)


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
    args = parser.parse_args(argv)
    path = build_release(args.out, args.version, broken=args.broken, python=args.python,
                         filler_files=args.filler_files, filler_bytes=args.filler_bytes)
    print(f"stand-in release written to {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
