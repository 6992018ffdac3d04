"""The companion venv of trame apps: content-addressed, built for the release's Python minor.

ParaView 5.13+ serves the web through trame apps run by ``pvpython --venv V``;
pvpython adds ``V/lib/python<its X.Y>/site-packages`` to its path.  This
module makes such a folder under ``ROOT/autodeploy/venvs/<key>``:

* ``key`` = ``py<X.Y>-<hash>``, the hash of the *resolved* set
  (``name==version`` of every distribution pip would install, plus the
  sha256 of local wheels and folders).  The same resolved set is the same
  folder: an upgrade of ParaView with unchanged requirements reuses it.
* Each finished venv keeps, in its record, the hashes of the *declared*
  requirement sets that resolved to it, so an unchanged declaration is
  recognised with no pip run at all.
* With a matching interpreter on the host (``python<X.Y>`` on PATH that
  really runs and has ``venv``), it is a real venv of that interpreter; its
  ``bin/python`` can run the wslink launcher.  Otherwise pip installs for the
  other minor with ``--target V/lib/python<X.Y>/site-packages
  --python-version X.Y --platform manylinux... --only-binary=:all:
  --implementation cp``; the launcher then runs from pvwtasks' own Python.
* It is built in ``venvs/.building-<key>-<pid>`` and renamed into place; the
  record (the ``complete`` marker) is written last.  A folder without it is
  never counted as built and is removed by the next build or :func:`prune`.
* ``vtk`` is refused (ParaView brings its own) unless ``allow_vtk``.
* A cross build resolves for the release's minor and platform, but pip
  evaluates environment markers (``python_version < "3.12"``) against the
  host's Python: a requirement set that depends on such markers should pin
  what it needs.

Pure functions with explicit arguments; the doit graph calls them.  Layer:
next to install/launcher (imports config-level modules only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlparse

from .errors import VenvError
from .frozen import Frozen
from .fsutil import du
from .layout import Layout, VenvRecord, finished_builds

log = logging.getLogger(__name__)

BUILDING_PREFIX = ".building-"
VTK_NAMES = frozenset({"vtk", "vtk-osmesa", "vtk-egl"})
PIP_TIMEOUT = 3600
PROBE_TIMEOUT = 30
# The manylinux baseline of ParaView's own binaries; newer tags are added up to the host's glibc.
MANYLINUX_FIRST = 17
_SKIP_IN_TREE = {"__pycache__", ".git", "build", "dist", ".eggs"}
_CREDENTIALS = r"(?<=://)[^/@\s]+@"  # patterns are compiled (and cached) by re on first use


class VenvSpec(Frozen):
    """What to put in a companion venv, and where pip may get it."""

    python_version: str  # the release's minor, "3.12"
    requirements: tuple[str, ...]  # pip requirement strings; local wheels/folders as absolute paths
    index_url: str | None = None  # may hold credentials: never logged (see redact)
    find_links: tuple[Path, ...] = ()  # wheel folders; without index_url pip runs with --no-index
    allow_vtk: bool = False  # only for stand-in releases that have no VTK of their own
    platforms: tuple[str, ...] = ()  # cross builds: pip --platform tags; default manylinux up to the host's glibc


class Resolved(Frozen):
    """One distribution of a resolved set."""

    name: str  # normalized (PEP 503)
    version: str
    local: str | None = None  # sha256 of a local wheel or folder, None for index packages

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def line(self) -> str:
        return self.pin if self.local is None else f"{self.pin} sha256:{self.local}"


class VenvResult(Frozen):
    """What :func:`ensure_venv` answered: the venv, and whether it was reused or built."""

    record: VenvRecord
    path: Path
    action: str  # "reused" (no pip run) | "resolved" (pip resolved to an existing key) | "built"

    @property
    def site_packages(self) -> Path:
        return self.path / self.record.site_packages


# --------------------------------------------------------------------------- small helpers
def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it replaced by ``***``."""
    return re.sub(_CREDENTIALS, "***@", text)


def normalize(name: str) -> str:
    """A distribution name normalized as PEP 503 does (``Trame_VTK`` -> ``trame-vtk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages_rel(python_version: str) -> str:
    """``lib/python<X.Y>/site-packages``: where pvpython --venv looks."""
    return f"lib/python{python_version}/site-packages"


def _check_minor(python_version: str) -> None:
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise VenvError(f"companion venv: Python version {python_version!r} is not a minor such as 3.12")


def tree_sha256(folder: Path) -> str:
    """sha256 over a source folder's files (relative path and bytes), skipping build leftovers."""
    digest = hashlib.sha256()
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_IN_TREE and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(here, name)
            if path.suffix in (".pyc", ".pyo"):
                continue
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
            digest.update(b"\0")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_path(requirement: str) -> Path | None:
    """The local wheel, archive or folder a requirement names, or None for an index requirement."""
    text = requirement.strip()
    if text.startswith("file://"):
        text = text[len("file://"):]
    if "/" not in text and not text.endswith((".whl", ".tar.gz", ".zip")):
        return None
    path = Path(text).expanduser()
    return path if path.exists() else None


def _local_hash(path: Path) -> str:
    return tree_sha256(path) if path.is_dir() else file_sha256(path)


def _ignore_build_leftovers(_folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP_IN_TREE or n.endswith(".egg-info") or n.endswith((".pyc", ".pyo"))}


def stage_local_folders(requirements: Sequence[str], scratch: Path) -> list[str]:
    """``requirements`` with each local source folder replaced by a copy in ``scratch``.

    pip builds a folder in place (``build/``, ``*.egg-info``); a copy keeps
    pvwtasks' tree and a lab's read-only folder untouched.
    """
    staged = []
    for index, req in enumerate(requirements):
        path = _local_path(req)
        if path is not None and path.is_dir():
            copy = scratch / f"src{index}-{path.name}"
            shutil.copytree(path, copy, symlinks=True, ignore=_ignore_build_leftovers)
            staged.append(str(copy))
        else:
            staged.append(req)
    return staged


def request_hash(spec: VenvSpec) -> str:
    """Hash of what is *declared*: minor, requirements (local ones by content), find_links listing.

    The index URL is left out: it says where to get the packages, not which.
    """
    local = {}
    for req in spec.requirements:
        path = _local_path(req)
        if path is not None:
            local[req] = _local_hash(path)
    links = {}
    for folder in spec.find_links:
        try:
            links[str(folder)] = sorted((p.name, p.stat().st_size) for p in Path(folder).iterdir() if p.is_file())
        except OSError:
            links[str(folder)] = None
    blob = json.dumps({"python": spec.python_version, "requirements": sorted(spec.requirements), "local": local,
                       "find_links": links, "allow_vtk": spec.allow_vtk, "platforms": list(spec.platforms)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def venv_key(python_version: str, resolved: Sequence[Resolved]) -> str:
    """``py<X.Y>-<hash of the sorted resolved lines>``."""
    lines = "\n".join(sorted(r.line for r in resolved))
    return f"py{python_version}-{hashlib.sha256(lines.encode()).hexdigest()[:16]}"


def probe_interpreter(exe: str | Path, python_version: str) -> Path | None:
    """``exe``'s real ``sys.executable`` when it runs, is Python ``python_version`` and can make a venv."""
    probe = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"
    try:
        proc = subprocess.run([str(exe), "-c", probe], capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) != 2 or lines[0] != python_version:
        log.info("%s is not a Python %s able to make a venv: %s", exe, python_version,
                 (proc.stderr.strip().splitlines() or [f"it is {lines[0] if lines else '?'}"])[0])
        return None
    return Path(lines[1])


def find_interpreter(python_version: str, search_path: str | None = None) -> Path | None:
    """A host interpreter of ``python_version`` able to make a venv, or None.

    Looks for ``python<X.Y>`` on ``search_path`` (default PATH) and runs it:
    a pyenv shim for a version not selected, or a Debian python without
    ``venv``/``ensurepip``, does not count.
    """
    exe = shutil.which(f"python{python_version}", path=search_path)
    return probe_interpreter(exe, python_version) if exe else None


def host_glibc() -> tuple[int, int]:
    """The host's glibc version, the newest manylinux a release on this host can load."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError, OSError):
        return 2, 28


def default_platforms(machine: str | None = None) -> tuple[str, ...]:
    """pip ``--platform`` tags for a cross build: manylinux2014 and manylinux_2_17 .. the host glibc."""
    arch = machine or os.uname().machine
    _major, newest = host_glibc()
    tags = [f"manylinux2014_{arch}"] + [f"manylinux_2_{n}_{arch}" for n in range(MANYLINUX_FIRST, newest + 1)]
    return tuple(tags)


def _cross_options(spec: VenvSpec) -> list[str]:
    opts = ["--python-version", spec.python_version, "--implementation", "cp", "--only-binary=:all:"]
    for tag in spec.platforms or default_platforms():
        opts += ["--platform", tag]
    return opts


def _index_options(spec: VenvSpec, cache_dir: Path | None) -> list[str]:
    opts: list[str] = []
    if spec.index_url:
        opts += ["--index-url", spec.index_url]
    elif spec.find_links:  # a wheel folder and no index: air-gapped, never wait on PyPI
        opts += ["--no-index"]
    for folder in spec.find_links:
        opts += ["--find-links", str(folder)]
    if cache_dir is not None:
        opts += ["--cache-dir", str(cache_dir)]
    return opts


# --------------------------------------------------------------------------- pip
_NOT_FOUND = (r"No matching distribution found for (\S+)",
              r"Could not find a version that satisfies the requirement (\S+)")
_OTHER = (r"Invalid requirement: '?([^']+)'?",
          r"(?:Directory|File) '?([^']+?)'? does not (?:appear to be a Python project|exist)")


def pip_failure(output: str) -> str:
    """One line saying what pip failed on, naming the requirement when pip does."""
    for pattern in _NOT_FOUND:
        match = re.search(pattern, output)
        if match:
            return f"no distribution found for requirement {match.group(1)!r}"
    for pattern in _OTHER:
        match = re.search(pattern, output)
        if match:
            return f"requirement {match.group(1).strip()!r} rejected: {match.group(0).strip()}"
    if "ResolutionImpossible" in output or "conflicting dependencies" in output:
        causes = [line.strip() for line in output.splitlines() if " depends on " in line]
        return "conflicting requirements: " + ("; ".join(causes[:3]) or "pip found no consistent set")
    errors = [line.strip() for line in output.splitlines() if line.strip().startswith("ERROR:")
              and "is ignored" not in line]
    tail = errors[-1] if errors else (output.strip().splitlines() or ["(no output)"])[-1].strip()
    return tail[:300]


def _run_pip(cmd: list[str], spec: VenvSpec, what: str, env: dict | None = None) -> None:
    log.info("pip %s: %s", what, redact(" ".join(cmd)))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise VenvError(f"companion venv for Python {spec.python_version}: pip {what} took over {PIP_TIMEOUT} s")
    except OSError as exc:
        raise VenvError(f"companion venv for Python {spec.python_version}: cannot run {cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        reason = redact(pip_failure(proc.stdout + "\n" + proc.stderr))
        raise VenvError(f"companion venv for Python {spec.python_version}: pip could not {what}: {reason}")


def _pip_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env.setdefault("SOURCE_DATE_EPOCH", "315532800")  # reproducible wheels of local folders
    env.pop("PYTHONPATH", None)
    return env


def resolve(spec: VenvSpec, mode: str, interpreter: Path | None = None,
            cache_dir: Path | None = None) -> list[Resolved]:
    """The distributions pip would install for ``spec`` (``pip install --dry-run --report``).

    ``mode`` "venv" asks ``interpreter``'s own pip; "target" asks pvwtasks'
    pip for the release's minor and platform.  Raises VenvError naming the
    requirement pip could not satisfy.
    """
    _check_minor(spec.python_version)
    if not spec.requirements:
        return []
    with tempfile.TemporaryDirectory(prefix="pvwtasks-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        if mode == "venv":
            assert interpreter is not None
            cmd = [str(interpreter), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--no-input", "--report", str(report)]
        else:
            cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--no-input", "--report", str(report), "--target", str(Path(scratch) / "target"),
                   *_cross_options(spec)]
        cmd += [*_index_options(spec, cache_dir), *stage_local_folders(spec.requirements, Path(scratch))]
        _run_pip(cmd, spec, "resolve the requirements", _pip_env())
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError) as exc:
            raise VenvError(f"companion venv for Python {spec.python_version}: pip wrote no report: {exc}") from None
        return parse_report(data)  # inside: a staged local folder is hashed before the scratch goes


def parse_report(data: dict) -> list[Resolved]:
    """The resolved set of a ``pip install --report`` document, sorted by name.

    Only a direct local requirement (wheel or folder) carries a content hash;
    what an index answered, even a ``file://`` one, is ``name==version``.
    """
    resolved = []
    for item in data.get("install", []):
        meta, info = item.get("metadata", {}), item.get("download_info", {})
        url = info.get("url", "")
        local = None
        if item.get("is_direct") and url.startswith("file://"):
            path = Path(unquote(urlparse(url).path))
            hashes = (info.get("archive_info") or {}).get("hashes") or {}
            local = hashes.get("sha256") or (_local_hash(path) if path.exists() else None)
        resolved.append(Resolved(normalize(meta["name"]), meta["version"], local))
    return sorted(resolved, key=lambda r: r.name)


def refuse_vtk(spec: VenvSpec, names: Sequence[str]) -> None:
    """Raise VenvError when the set holds VTK and ``allow_vtk`` is off (ParaView brings its own)."""
    found = sorted(set(normalize(n) for n in names) & VTK_NAMES)
    if found and not spec.allow_vtk:
        raise VenvError(f"companion venv for Python {spec.python_version}: the requirements pull in {found[0]!r}, "
                        "which must not sit beside ParaView's own VTK (set allow_vtk only for a stand-in release)")


# --------------------------------------------------------------------------- venvs on disk
def built_venvs(layout: Layout) -> dict[str, VenvRecord]:
    """The finished venvs: key -> record.  A folder without its record, or its site-packages, does not count."""
    return finished_builds(layout.venvs, layout.venv_record, VenvRecord,
                           lambda folder, record: (folder / record.site_packages).is_dir())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(layout: Layout) -> list[str]:
    """Remove interrupted builds (``.building-*`` of a dead process) and folders without a record."""
    removed = []
    try:
        folders = list(layout.venvs.iterdir())
    except OSError:
        return []
    complete = built_venvs(layout)
    for folder in folders:
        if folder.name.startswith(BUILDING_PREFIX):
            pid = folder.name.rsplit("-", 1)[-1]
            if pid.isdigit() and _pid_alive(int(pid)) and int(pid) != os.getpid():
                continue
        elif folder.name in complete or not folder.is_dir():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    if removed:
        log.info("removed unfinished venv folders: %s", ", ".join(sorted(removed)))
    return removed


def prune(layout: Layout, keep_keys: Sequence[str]) -> list[str]:
    """Delete the venvs whose key no kept release uses, and unfinished builds; answers the keys removed."""
    keep = set(keep_keys)
    removed = remove_leftovers(layout)
    for key in built_venvs(layout):
        if key not in keep:
            shutil.rmtree(layout.venv_dir(key), ignore_errors=True)
            removed.append(key)
            log.info("pruned companion venv %s", key)
    return removed


def _installed_names(site_packages: Path) -> list[str]:
    names = []
    for info in site_packages.glob("*.dist-info"):
        names.append(normalize(info.name[: -len(".dist-info")].rsplit("-", 1)[0]))
    return names


def _relocate(folder: Path, old: Path, new: Path) -> None:
    """Rewrite ``old`` to ``new`` in the venv's scripts and ``pyvenv.cfg`` (shebangs, activate)."""
    before, after = str(old).encode(), str(new).encode()
    candidates = [folder / "pyvenv.cfg"] + ([p for p in (folder / "bin").iterdir()] if (folder / "bin").is_dir() else [])
    for path in candidates:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        data = path.read_bytes()
        if before in data and b"\0" not in data[:1024]:
            mode = path.stat().st_mode
            path.write_bytes(data.replace(before, after))
            os.chmod(path, mode)


def _wslink_ok(resolved: Sequence[Resolved]) -> bool:
    for item in resolved:
        if item.name == "wslink":
            parts = [int(p) for p in re.findall(r"\d+", item.version)[:2]] + [0, 0]
            return tuple(parts[:2]) >= (2, 5)
    return False


def _own_wslink_ok() -> bool:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return _wslink_ok([Resolved("wslink", version("wslink"))])
    except (ImportError, PackageNotFoundError):
        return False


def _build(layout: Layout, spec: VenvSpec, key: str, resolved: list[Resolved], mode: str,
           interpreter: Path | None, cache_dir: Path | None, request: str) -> VenvRecord:
    started = time.monotonic()
    final = layout.venv_dir(key)
    tmp = layout.venvs / f"{BUILDING_PREFIX}{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    layout.venvs.mkdir(parents=True, exist_ok=True)
    site_rel = site_packages_rel(spec.python_version)
    env = _pip_env()
    try:
        with tempfile.TemporaryDirectory(prefix="pvwtasks-pins-") as scratch:
            pins = Path(scratch) / "constraints.txt"
            pins.write_text("".join(f"{r.pin}\n" for r in resolved if r.local is None))
            if mode == "venv":
                assert interpreter is not None
                cmd = [str(interpreter), "-m", "venv", str(tmp)]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise VenvError(f"companion venv for Python {spec.python_version}: {interpreter} -m venv "
                                    f"failed: {exc}") from None
                if proc.returncode != 0:
                    reason = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    raise VenvError(f"companion venv for Python {spec.python_version}: {interpreter} -m venv "
                                    f"failed: {reason}")
                cmd = [str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input",
                       "--constraint", str(pins)]
            else:
                cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--no-compile",
                       "--target", str(tmp / site_rel), *_cross_options(spec), "--constraint", str(pins)]
            cmd += [*_index_options(spec, cache_dir), *stage_local_folders(spec.requirements, Path(scratch))]
            _run_pip(cmd, spec, "install the requirements", env)
        site = tmp / site_rel
        if not site.is_dir():
            raise VenvError(f"companion venv for Python {spec.python_version}: pip made no {site_rel}")
        refuse_vtk(spec, _installed_names(site))
        if mode == "venv":
            _relocate(tmp, tmp, final)
        if final.exists():  # a folder without its record: never counted as built
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    launcher = str(final / "bin" / "python") if mode == "venv" and _wslink_ok(resolved) else sys.executable
    if launcher == sys.executable and not _own_wslink_ok():
        log.warning("the launcher for venv %s runs from %s, whose wslink is older than 2.5 (trame needs 2.5)",
                    key, sys.executable)
    record = VenvRecord(key=key, python_version=spec.python_version, mode=mode,
                        packages=[r.line for r in resolved], site_packages=site_rel, launcher_python=launcher,
                        interpreter=str(interpreter) if mode == "venv" else None, requests=[request],
                        built_at=time.time(), seconds=round(time.monotonic() - started, 2), size=du(final))
    record.save(layout.venv_record(key))  # the complete marker, written last
    log.info("built companion venv %s (%s, %d packages, %.1f s)", key, mode, len(resolved), record.seconds)
    return record


def choose_mode(python_version: str, interpreter: Path | str | None = "auto",
                search_path: str | None = None) -> tuple[str, Path | None]:
    """("venv", interpreter) when a matching interpreter is usable, else ("target", None).

    ``interpreter``: "auto" looks for ``python<X.Y>`` (see :func:`find_interpreter`),
    None forces a cross build, a path uses that interpreter (VenvError if it cannot).
    """
    if interpreter is None:
        return "target", None
    if interpreter == "auto":
        found = find_interpreter(python_version, search_path)
        return ("venv", found) if found else ("target", None)
    found = probe_interpreter(interpreter, python_version)
    if found is None:
        raise VenvError(f"companion venv: {interpreter} is not a Python {python_version} able to make a venv")
    return "venv", found


def tool_python(record: VenvRecord, venv: Path) -> tuple[list[str], dict[str, str] | None]:
    """(command, env) of a Python on the host that sees the venv's packages, for trame.tools.*.

    A real venv: its ``bin/python``.  A ``--target`` venv for another minor:
    pvwtasks' own Python with ``PYTHONPATH`` on its site-packages, enough for
    the pure-Python trame tools (the release's ``pvpython --venv`` is the other way).
    """
    if record.mode == "venv":
        return [str(venv / "bin" / "python")], None
    env = dict(os.environ)
    env["PYTHONPATH"] = str(venv / record.site_packages)
    return [sys.executable], env


def ensure_venv(layout: Layout, spec: VenvSpec, interpreter: Path | str | None = "auto",
                cache_dir: Path | None = None, search_path: str | None = None) -> VenvResult:
    """The companion venv for ``spec``: reused when already built, else built beside the others.

    1. A finished venv whose record lists this declaration's hash: reused, no pip run.
    2. Otherwise pip resolves the set; a finished venv of that key is reused.
    3. Otherwise it is built in a temp folder and renamed into ``venvs/<key>``.
    Raises VenvError (one line, naming the requirement pip failed on, or vtk);
    nothing half-built is left counted as built.
    """
    _check_minor(spec.python_version)
    request = request_hash(spec)
    built = built_venvs(layout)
    for key, record in built.items():
        if request in record.requests:
            log.info("companion venv %s is up to date (requirements unchanged)", key)
            return VenvResult(record, layout.venv_dir(key), "reused")
    mode, interp = choose_mode(spec.python_version, interpreter, search_path)
    resolved = resolve(spec, mode, interp, cache_dir)
    refuse_vtk(spec, [r.name for r in resolved])
    key = venv_key(spec.python_version, resolved)
    if key in built:
        record = built[key].replace(requests=[*built[key].requests, request])
        record.save(layout.venv_record(key))
        log.info("companion venv %s already holds the resolved set", key)
        return VenvResult(record, layout.venv_dir(key), "resolved")
    remove_leftovers(layout)
    record = _build(layout, spec, key, resolved, mode, interp, cache_dir, request)
    return VenvResult(record, layout.venv_dir(key), "built")
