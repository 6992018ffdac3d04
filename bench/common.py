"""Shared pieces of the benchmarks: machine info, a loopback file server, measured runs, RESULTS.md.

Every benchmark runs pvwtasks and its baseline *in the same run*, alternating
sides, and reports medians and ratios: on a shared machine absolute times are
noise, ratios are not.  Child processes are measured one by one with
``os.wait4``, which returns the child's own rusage including the children it
waited for (``tar`` -> ``gzip``).
"""

from __future__ import annotations

import email.utils
import http.server
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
DODO = PROJECT / "dodo.py"
WORK = BENCH / "_work"
RESULTS = BENCH / "RESULTS.md"
PYTHON = sys.executable
DOIT = [PYTHON, "-m", "doit", "-f", str(DODO)]

if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))


# ---------------------------------------------------------------- machine

def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "not found"
    return out.splitlines()[0].strip() if out else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info() -> list[str]:
    """Lines describing this machine and the tools compared."""
    import doit
    try:
        import isal
        isal_version = isal.__version__
    except ImportError:
        isal_version = "not installed"
    load = os.getloadavg()
    return [
        f"date (UTC): {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}",
        f"cores: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), cpu: {_cpu_model()}",
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"os: {platform.platform()}",
        f"python: {platform.python_version()} ({PYTHON})",
        f"doit: {doit.__version__}, python-isal: {isal_version}",
        f"curl: {_first_line(['curl', '--version'])}",
        f"tar: {_first_line(['tar', '--version'])}",
        f"sha256sum: {_first_line(['sha256sum', '--version'])}",
    ]


# ---------------------------------------------------------------- loopback server

class LoopbackServer:
    """A threaded HTTP/1.1 file server on 127.0.0.1 (free port) for benchmark tarballs.

    Streams bodies with ``sendfile`` so serving a 1 GiB file costs the
    benchmark process almost nothing; sends ETag (from size and mtime),
    Last-Modified and honours Range and If-None-Match, like a real mirror.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(False)

            def do_GET(self):
                self._serve(True)

            def _serve(self, body: bool) -> None:
                outer.requests.append((self.command, self.path))
                target = outer.root / self.path.split("?", 1)[0].lstrip("/")
                if not target.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                stat = target.stat()
                etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, status = 0, 200
                wanted = self.headers.get("Range")
                if wanted and self.headers.get("If-Range", etag) == etag:
                    start, status = int(wanted.split("=")[1].split("-")[0]), 206
                self.send_response(status)
                self.send_header("Content-Length", str(stat.st_size - start))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{stat.st_size - 1}/{stat.st_size}")
                self.end_headers()
                if body:
                    self.wfile.flush()
                    with target.open("rb") as handle:
                        try:
                            self.connection.sendfile(handle, start)
                        except (BrokenPipeError, ConnectionResetError):
                            self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- configs and releases

def write_config(path: Path, url: str, root: Path, keep: int = 2, extra: str = "", port_count: int = 20) -> Path:
    """A pvwtasks config deploying ``url`` under ``root`` with a private launcher port and session ports."""
    first = free_port()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""
[deploy]
root = "{root}"
keep = {keep}

[source]
url = "{url}"
timeout = 30
retries = 2
backoff = 0.2

[launcher]
host = "127.0.0.1"
port = {free_port()}
timeout = 15
port_range = [{first}, {first + port_count}]
stop_grace = 5
start_timeout = 30
allow_root = true  # benchmarks may run as root (pvwtasks refuses a root launcher otherwise)
{extra}
""" + ("" if "[web]" in extra else "\n[web]\n# the benchmarks run no system Apache\nmanage_apache = false\n"))
    return path


def release_name(version: str = "5.13.0") -> str:
    from pvwtasks import demo
    return f"ParaView-{version}-MPI-Linux-Python{demo.PYTHON_TAG}-x86_64.tar.gz"


def build_release(folder: Path, version: str = "5.13.0", size: int = 0, files: int = 0,
                  name: str | None = None) -> Path:
    """A stand-in release of about ``size`` bytes unpacked in ``files`` files (cached by parameters)."""
    from pvwtasks import demo
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (name or release_name(version))
    stamp = out.with_name(out.name + ".params")
    sources = [Path(demo.__file__), *sorted(demo.STANDIN.iterdir())]
    params = f"{version} {size} {files} {demo.__file__} {max(os.path.getmtime(p) for p in sources)}"
    if out.is_file() and stamp.is_file() and stamp.read_text() == params:
        return out
    demo.build_release(out, version, filler_files=files, filler_bytes=size)
    stamp.write_text(params)
    return out


def parse_size(text: str) -> int:
    """``512M``, ``1G``, ``300000`` -> bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(float(match.group(1)) * factor)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# ---------------------------------------------------------------- measured runs

@dataclass
class Sample:
    wall: float
    user: float
    sys: float
    maxrss_mb: float  # peak RSS of the process (or of its biggest waited-for child), MiB
    returncode: int
    output: str = ""

    def __add__(self, other: "Sample") -> "Sample":
        return Sample(self.wall + other.wall, self.user + other.user, self.sys + other.sys,
                      max(self.maxrss_mb, other.maxrss_mb), self.returncode or other.returncode,
                      self.output + other.output)


def _child_env(env: dict | None) -> dict:
    """This environment plus ``env``, without a ``PVW_CONFIG`` that would override ``config=``."""
    full = {**os.environ, **(env or {})}
    full.pop("PVW_CONFIG", None)
    return full


def run(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None, check: bool = True) -> Sample:
    """Run ``cmd`` (never through a shell) and measure it with ``os.wait4``."""
    full_env = _child_env(env)
    out_file = WORK / f".out-{os.getpid()}.txt"
    WORK.mkdir(parents=True, exist_ok=True)
    with out_file.open("w+b") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    out_file.unlink(missing_ok=True)
    sample = Sample(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, text)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{text[-3000:]}")
    return sample


def doit(config: Path, *args: str, check: bool = True) -> Sample:
    return run([*DOIT, *args, f"config={config}"], cwd=config.parent, check=check)


def median(values: list[float]) -> float:
    return statistics.median(values)


def instructions(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None) -> int | None:
    """Instructions ``cmd`` executes, counted by valgrind's callgrind; None without valgrind.

    Unlike wall or CPU time, the count does not move with the machine's load
    or clock: the same run gives the same count to about 0.1%.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    full_env = _child_env(env)
    proc = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd], cwd=cwd, env=full_env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"valgrind {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return int(match.group(1))


@dataclass
class Side:
    name: str
    samples: list[Sample] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    requests_per_run: float = 0.0

    def med(self, attr: str) -> float:
        return median([getattr(s, attr) for s in self.samples])

    def peak_rss(self) -> float:
        return max(s.maxrss_mb for s in self.samples)


def summary_table(sides: list[Side]) -> list[str]:
    """Markdown rows: median wall/user/sys, peak RSS, runs, for each side."""
    rows = ["| side | runs | median wall s | median user s | median sys s | peak RSS MiB |",
            "|---|---|---|---|---|---|"]
    for side in sides:
        rows.append(f"| {side.name} | {len(side.samples)} | {side.med('wall'):.3f} | {side.med('user'):.3f} | "
                    f"{side.med('sys'):.3f} | {side.peak_rss():.1f} |")
    return rows


def verdict(label: str, value: float, target: float, unit: str = "x") -> str:
    ok = value <= target
    shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.1f} {unit}"
    goal = f"{target:.2f}{unit}" if unit == "x" else f"{target:g} {unit}"
    return f"- {label}: **{shown}** (target <= {goal}): {'met' if ok else 'NOT met'}"


# ---------------------------------------------------------------- results

def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(PROJECT)
    except ValueError:
        shown = script
    return " ".join([".venv/bin/python", str(shown), *sys.argv[1:]])


def report(key: str, title: str, lines: list[str], results: Path | None = None) -> None:
    """Print ``lines`` and store them in RESULTS.md under ``title`` (replacing an older run)."""
    body = [f"## {title}", "", f"Command: `{command_line()}`", "", "```", *machine_info_cached(), "```", "", *lines, ""]
    text = "\n".join(body)
    print("\n" + text)
    path = results or RESULTS
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    old = path.read_text() if path.exists() else "# Benchmark results\n\nWritten by the scripts in `bench/` (see bench/README.md).\n"
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


_MACHINE: list[str] | None = None


def machine_info_cached() -> list[str]:
    global _MACHINE
    if _MACHINE is None:
        _MACHINE = machine_info()
    return _MACHINE


def print_machine() -> None:
    print("\n".join(machine_info_cached()), flush=True)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def fresh_served_folder(work: Path) -> Path:
    """Empty ``work`` and return its new ``served/`` folder (what the loopback server serves)."""
    rmtree(work)
    served = work / "served"
    served.mkdir(parents=True)
    return served


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
