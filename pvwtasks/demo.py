"""Generate a small *stand-in* ParaView release for offline demos, tests and benchmarks.

Each stand-in is laid out like one family of ParaView Linux binaries (see
RELEASES.md and :mod:`pvwtasks.families`), with the real file names:

``legacy`` (the default of :func:`build_release`, the 4.x layout)::

    ParaView-<ver>-MPI-Linux-Python<host X.Y>-x86_64/
        bin/pvpython                                   runs this project's Python
        lib/python<X.Y>/site-packages/paraview/web/pv_web_*.py   a small wslink app

``5.9`` (5.6 - 5.9), ``5.12`` (5.10 - 5.12), ``5.13`` and ``6.1`` (6.x)::

    ParaView-5.12.1[-egl|-osmesa]-MPI-Linux-Python3.10-x86_64/
        bin/pvpython, bin/pvpython-real (5.9 on)
        lib/python3.10/site-packages/paraview/apps/<app>.py      (5.9 on)
        lib/python3.10/site-packages/wslink/                     (5.6 - 5.12 only)
        share/paraview-5.12/web/<app>/{server,www}/

It is not ParaView.  The stand-in's ``pvpython`` runs the Python that
generated it, isolated (``-s -S -E``) so that only the release's own
site-packages are importable: a 5.13 or 6.1 stand-in cannot import wslink.
Families that bundle wslink get it from the generating Python through a
``.pth`` file inside the release's site-packages (wslink and its
dependencies only).  The files come from ``pvwtasks/standin/``.

Run ``python -m pvwtasks.demo OUT.tar.gz [--family 5.12 | --version 5.12.1]
[--variant egl] [--broken hang|crash]``.  A ``--version`` alone implies its
family; with neither, the legacy stand-in (5.13.0) is built, as before.
When OUT is a folder, the release's real file name is used inside it.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import lzma
import os
import random
import re
import subprocess
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

STANDIN = Path(__file__).with_name("standin")

FAMILIES = ("legacy", "5.9", "5.12", "5.13", "6.1")
DEFAULT_VERSION = {"legacy": "5.13.0", "5.9": "5.9.1", "5.12": "5.12.1", "5.13": "5.13.3", "6.1": "6.1.0"}
VARIANTS = ("", "egl", "osmesa")

APP_SCRIPTS = ("pv_web_visualizer.py", "pv_web_file_loader.py", "pv_web_data_prober.py")
SERVER_APPS = ("visualizer", "lite", "divvy")  # the wslink apps 5.6 - 5.12 bundle


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644, mtime: float | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime if mtime is not None else time.time())
    tar.addfile(info, io.BytesIO(data))


def version_key(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a ParaView version such as 5.12.1 or 6.0.20250903."""
    numbers = [int(n) for n in re.findall(r"\d+", version)[:3]]
    if len(numbers) < 2:
        raise ValueError(f"not a ParaView version: {version!r}")
    return tuple(numbers + [0] * (3 - len(numbers)))


def family_of(version: str) -> str:
    """The stand-in family a ParaView version belongs to: legacy, 5.9, 5.12, 5.13 or 6.1."""
    key = version_key(version)[:2]
    if key < (5, 6):
        return "legacy"
    if key < (5, 10):
        return "5.9"
    if key < (5, 13):
        return "5.12"
    if key == (5, 13):
        return "5.13"
    return "6.1"


def python_tag_of(version: str) -> str:
    """The Python minor a ParaView Linux binary of ``version`` ships (3.7 for 5.6 - 5.8, whose 2.7 builds
    a stand-in cannot mimic)."""
    key = version_key(version)[:2]
    if key < (5, 9):
        return "3.7"
    if key < (5, 10):
        return "3.8"
    if key < (5, 12):
        return "3.9"
    if key < (5, 14):
        return "3.10"
    return "3.12"


def top_folder(version: str, family: str = "legacy", variant: str = "", python_tag: str | None = None) -> str:
    """The release's top folder, which is also its file name without ``.tar.gz``.

    The legacy stand-in keeps its old name (the host's Python, ``x86_64``);
    the others use ParaView's naming: ``ParaView-<ver>[-egl|-osmesa]-MPI-Linux-
    Python<X.Y>-64bit`` up to 5.9 and ``-x86_64`` from 5.10 on.
    """
    if family == "legacy":
        return f"ParaView-{version}-MPI-Linux-Python{python_tag or PYTHON_TAG}-x86_64"
    arch = "64bit" if version_key(version)[:2] < (5, 10) else "x86_64"
    parts = [f"ParaView-{version}", *([variant] if variant else []), "MPI", "Linux",
             f"Python{python_tag or python_tag_of(version)}", arch]
    return "-".join(parts)


def release_file_name(version: str, family: str | None = None, variant: str = "", python_tag: str | None = None) -> str:
    """The tarball's file name, e.g. ``ParaView-5.12.1-egl-MPI-Linux-Python3.10-x86_64.tar.gz``."""
    return top_folder(version, family or family_of(version), variant, python_tag) + ".tar.gz"


def build_release(
    out: Path,
    version: str = "5.13.0",
    *,
    family: str = "legacy",
    variant: str = "",
    python_tag: str | None = None,
    broken: str = "",
    python: str = sys.executable,
    filler_files: int = 0,
    filler_bytes: int = 0,
    seed: int = 0,
    compresslevel: int = 6,
) -> Path:
    """Write a stand-in release tarball to ``out`` (.tar.gz or .tar.xz) and return its path.

    ``family`` is one of FAMILIES; the default, ``legacy``, is the 4.x layout
    the test suite has always deployed, whatever ``version`` says.  The
    others follow ParaView's own layout for that family, with details by
    ``version`` (``pvpython-real`` and ``paraview/apps`` from 5.9 on,
    ``paraview/apps/trame.py`` from 5.10.1 on, ``--venv`` from 5.13 on).
    ``variant`` ("egl", "osmesa") only changes the name, as in ParaView;
    6.x has none.  ``python_tag`` overrides the Python minor of the name and
    of ``lib/python<X.Y>`` (default: ParaView's for that version; the legacy
    stand-in uses the host's).  ``broken`` makes the apps never become ready
    ("hang") or exit at once ("crash").  ``filler_files``/``filler_bytes``
    add share/ data with a mix of random and text-like bytes, for benchmarks.
    Same arguments and seed give the same bytes.

    The archive is streamed to an adjacent temp file and renamed into place,
    so memory stays flat even for a 1 GiB / 30,000-file release.  gzip is
    written with ISA-L when available (``compresslevel`` 0-9 maps onto its
    levels 0-3), which is several times faster than zlib; the output is plain
    gzip that any tool inflates.  Raises ValueError on a bad combination.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown stand-in family {family!r}; one of {', '.join(FAMILIES)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of egl, osmesa or none")
    if variant and family in ("legacy", "6.1"):
        raise ValueError(f"the {family} stand-in has no {variant} variant (6.x is one universal build)")
    if broken not in ("", "hang", "crash"):
        raise ValueError(f"broken must be hang or crash, not {broken!r}")
    _check_fill(python, "python")
    version_key(version)
    tag = python_tag or (PYTHON_TAG if family == "legacy" else python_tag_of(version))
    top = top_folder(version, family, variant, tag)
    major_minor = ".".join(version.split(".")[:2])
    mtime = 1_700_000_000
    if family == "legacy":
        entries = _legacy_entries(major_minor, tag, version, broken, python)
    else:
        entries = _family_entries(major_minor, tag, version, family, broken, python)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with _compressor(raw, out, compresslevel, mtime) as packed:
                with tarfile.open(fileobj=packed, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                    _write_entries(tar, top, entries, mtime)
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


# An entry: (path relative to the top folder, bytes or None for a folder, mode).
Entry = tuple[str, "bytes | None", int]


def _standin(name: str, **values: str) -> bytes:
    """A file of pvwtasks/standin/ with its ``@KEY@`` marks filled."""
    text = (STANDIN / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"standin/{name}: unfilled {', '.join(sorted(set(left)))}")
    return text.encode()


def _check_fill(value: str, what: str) -> None:
    """Refuse a value that would break out of the quotes it is filled into."""
    if re.search(r"[\"'`$\\\n]", value):
        raise ValueError(f"{what} {value!r} has a quote, $, backslash or newline; use a plainer path")


def _legacy_entries(major_minor: str, tag: str, version: str, broken: str, python: str) -> list[Entry]:
    site = f"lib/python{tag}/site-packages"
    entries: list[Entry] = [(folder, None, 0o755) for folder in (
        "bin", "lib", f"lib/python{tag}", site, f"{site}/paraview", f"{site}/paraview/web", "share",
        f"share/paraview-{major_minor}")]
    entries.append(("bin/pvpython", _standin("legacy_pvpython.sh", PYTHON_TAG=tag, PYTHON=python), 0o755))
    entries.append((f"{site}/paraview/__init__.py", f'"""Stand-in paraview package {version}."""\n'.encode(), 0o644))
    entries.append((f"{site}/paraview/web/__init__.py", b"", 0o644))
    app = _standin("legacy_app.py", BROKEN=broken, VERSION=version)
    entries += [(f"{site}/paraview/web/{script}", app, 0o644) for script in APP_SCRIPTS]
    readme = f"pvwtasks stand-in release {version}: not ParaView.\n".encode()
    entries.append((f"share/paraview-{major_minor}/README.txt", readme, 0o644))
    return entries


def _family_entries(major_minor: str, tag: str, version: str, family: str, broken: str,
                    python: str) -> list[Entry]:
    """The files of a 5.9, 5.12, 5.13 or 6.1 stand-in, by RELEASES.md."""
    key = version_key(version)
    site = f"lib/python{tag}/site-packages"
    share = f"share/paraview-{major_minor}"
    web = f"{share}/web"
    entries: list[Entry] = []

    def folder(path: str) -> None:
        parts = path.split("/")
        for n in range(1, len(parts) + 1):
            sub = "/".join(parts[:n])
            if not any(e[0] == sub for e in entries):
                entries.append((sub, None, 0o755))

    def add(path: str, data: bytes, mode: int = 0o644) -> None:
        folder(path.rsplit("/", 1)[0])
        entries.append((path, data, mode))

    def stub(path: str, module: str) -> None:
        add(path, _standin("stub.py", MODULE=module, VERSION=version))

    real = _standin("pvpython_real.py", PYTHON=python, PYTHON_TAG=tag,
                    HAS_VENV="1" if key[:2] >= (5, 13) else "0", HAS_BACKEND_OPTION="1" if key[0] >= 6 else "0")
    if key[:2] >= (5, 9):
        add("bin/pvpython", _standin("pvpython_launcher.sh"), 0o755)
        add("bin/pvpython-real", real, 0o755)
    else:
        add("bin/pvpython", real, 0o755)
    folder(f"lib/paraview-{major_minor}/plugins")
    add(f"lib/paraview-{major_minor}/plugins/paraview.plugins.xml", b"<Plugins>\n</Plugins>\n")
    stub(f"{site}/paraview/__init__.py", "paraview package")
    if key[0] >= 6:
        stub(f"{site}/paraview/simple/__init__.py", "paraview.simple package")
    else:
        stub(f"{site}/paraview/simple.py", "paraview.simple")
    stub(f"{site}/paraview/web/__init__.py", "paraview.web")
    if key[:2] >= (5, 10):
        stub(f"{site}/paraview/web/venv.py", "paraview.web.venv")

    app = _standin("app_echo.py", BROKEN=broken, VERSION=version, FAMILY=family)
    if family in ("5.9", "5.12"):
        # wslink bundled: marker folders as in ParaView, the code loaded from the host Python.
        host = _host_wslink(python)
        _check_fill(host["site"], "host site-packages")
        add(f"{site}/pvwtasks_standin_wslink.py",
            _standin("wslink_bundle.py", HOST_SITE=host["site"], ALLOWED=" ".join(host["allowed"])))
        add(f"{site}/pvwtasks_standin_wslink.pth", _standin("wslink_bundle.pth"))
        note = b"Stand-in: wslink is loaded from the Python that built this release (pvwtasks_standin_wslink.pth).\n"
        add(f"{site}/wslink/STANDIN.txt", note)
        if family == "5.9":
            folder(f"{site}/twisted")
            folder(f"{site}/autobahn")
        else:
            folder(f"{site}/wslink/backends/aiohttp")
            for package in ("aiohttp", "yarl", "multidict"):
                folder(f"{site}/{package}")
    if family == "5.9":
        for name in SERVER_APPS:
            add(f"{web}/{name}/server/pvw-{name}.py", app, 0o755)
    for name in (*SERVER_APPS, "glance") if family in ("5.9", "5.12") else ("glance",):
        add(f"{web}/{name}/www/index.html", _standin("index.html", APP=name))
    if key[:2] >= (5, 9):
        stub(f"{site}/paraview/apps/__init__.py", "paraview.apps package")
        modules = [*SERVER_APPS, "glance"] if family in ("5.9", "5.12") else ["glance"]
        for name in modules:
            add(f"{site}/paraview/apps/{name}.py", app)
        if key >= (5, 10, 1):
            add(f"{site}/paraview/apps/trame.py", _standin("apps_trame.py"))
        if key[0] >= 6:
            add(f"{site}/paraview/apps/packages.py", _standin("apps_packages.py"))
    readme = f"pvwtasks stand-in of ParaView {version} ({family} family): not ParaView.\n".encode()
    add(f"{share}/README.txt", readme)
    return entries


def _host_wslink(python: str) -> dict:
    """Where ``python`` has wslink, and the top-level packages wslink needs (standin/hostinfo.py)."""
    done = subprocess.run([python, "-s", str(STANDIN / "hostinfo.py")], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ValueError(f"{python} cannot lend wslink to the stand-in: {done.stderr.strip() or done.returncode}")
    return json.loads(done.stdout)


def _write_entries(tar: tarfile.TarFile, top: str, entries: list[Entry], mtime: int) -> None:
    _add_dir(tar, top, mtime)
    for path, data, mode in entries:
        if data is None:
            _add_dir(tar, f"{top}/{path}", mtime)
        else:
            _add(tar, f"{top}/{path}", data, mode, mtime)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a stand-in ParaView release tarball (not ParaView).")
    parser.add_argument("out", help="output .tar.gz or .tar.xz path, or a folder for the real file name")
    parser.add_argument("--family", choices=FAMILIES, default=None,
                        help="release family to mimic (default: the one --version implies; legacy without --version)")
    parser.add_argument("--version", default=None, help="ParaView version (default: the family's, 5.13.0 for legacy)")
    parser.add_argument("--variant", choices=["egl", "osmesa"], default="", help="headless variant in the name (5.x)")
    parser.add_argument("--python-tag", default=None, help="Python minor of the release (default: ParaView's)")
    parser.add_argument("--broken", choices=["", "hang", "crash"], default="",
                        help="an app that never prints its ready line (hang) or exits at once (crash), "
                             "to see the rollback")
    parser.add_argument("--python", default=sys.executable, help="Python the stand-in pvpython runs")
    parser.add_argument("--filler-files", type=int, default=0,
                        help="extra files that make the tarball ParaView-sized (benchmarks)")
    parser.add_argument("--filler-bytes", type=int, default=0, help="total bytes of those files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the filler content (same seed, same bytes)")
    args = parser.parse_args(argv)
    try:
        family = args.family or (family_of(args.version) if args.version else "legacy")
        version = args.version or DEFAULT_VERSION[family]
        out = Path(args.out)
        if out.is_dir() or args.out.endswith(os.sep):
            out = out / release_file_name(version, family, args.variant, args.python_tag)
        path = build_release(out, version, family=family, variant=args.variant, python_tag=args.python_tag,
                             broken=args.broken, python=args.python, filler_files=args.filler_files,
                             filler_bytes=args.filler_bytes, seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"stand-in release ({family} family) written to {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
