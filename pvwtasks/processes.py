"""Find and stop this deployment's processes: the launcher, its session apps and their orphans.

Every process is matched with psutil by PID and command line (the
``wslink.launcher`` module with this deployment's ``launch.json``, or an
interpreter running a script from this deployment's release tree), so
another deployment's processes on the same machine are never touched.
After a SIGKILL the wslink launcher's apps are orphaned and keep their
ports: they are found by command line and by the launcher's session id.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .errors import LauncherError
from .layout import LauncherRecord, load_json_object, read_pid

if TYPE_CHECKING:  # psutil is imported by the functions that use it (not by a no-op update's check)
    import psutil

log = logging.getLogger(__name__)

LAUNCHER_LINGER = 0.15  # seconds a SIGTERMed launcher may outlive its apps


def cmdline(proc: psutil.Process) -> list[str]:
    """The command line of ``proc``, or [] when it is gone or hidden."""
    import psutil

    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _runs_launcher_module(cmd: list[str]) -> bool:
    return any(arg == "wslink.launcher" or arg.endswith("/wslink/launcher.py") for arg in cmd)


def _is_launcher_cmdline(cmd: list[str], launch_json: Path) -> bool:
    return _runs_launcher_module(cmd) and str(launch_json) in cmd


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` runs; a zombie counts as gone (and is reaped when it is our child)."""
    import psutil

    try:
        if not proc.is_running():
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return False
        return True
    except psutil.NoSuchProcess:
        return False


def quick_launcher_identity(settings: Settings) -> tuple[int, float] | None:
    """(PID, start time) of this deployment's launcher, read from /proc without psutil; None when unsure.

    The same test as :func:`find_launcher` (pidfile, alive, command line)
    and the start time psutil computes (``starttime`` ticks + boot time),
    for the no-op ``update``'s check.  Anything unusual (no /proc, a
    zombie, a command line that does not match) answers None: ask
    :func:`find_launcher` then.
    """
    layout = settings.layout
    pid = read_pid(layout.pid_file)
    if pid is None or pid <= 0:
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        with open("/proc/stat", "rb") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith(b"btime"))
        fields = stat[stat.rindex(b")") + 2:].split()
        state, ticks = fields[0], int(fields[19])
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    if state in (b"Z", b"X", b"x") or not _is_launcher_cmdline([os.fsdecode(a) for a in cmd.split(b"\0")],
                                                               layout.launch_json):
        return None
    return pid, ticks / os.sysconf("SC_CLK_TCK") + boot


def find_launcher(settings: Settings) -> psutil.Process | None:
    """This deployment's running launcher, from the pidfile confirmed by its command line."""
    import psutil

    layout = settings.layout
    pid = read_pid(layout.pid_file)
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    if alive(proc) and _is_launcher_cmdline(cmdline(proc), layout.launch_json):
        return proc
    return None


def _tree_prefixes(settings: Settings) -> list[str]:
    """Path prefixes whose presence in an interpreter's command line marks this deployment's apps.

    The release trees under ``ROOT/autodeploy`` (by their real and their
    symlinked paths) and launch.json's ``python_path``, but only when that
    lies inside ROOT: a shared system path would also match other
    deployments' apps.
    """
    layout = settings.layout
    prefixes = {str(layout.autodeploy) + "/"}
    for path in (layout.autodeploy, layout.versions, layout.live_link):
        try:
            prefixes.add(str(path.resolve()) + "/")
        except OSError:
            pass
    config = load_json_object(layout.launch_json) or {}
    python_path = (config.get("properties") or {}).get("python_path")
    root = str(layout.root.resolve()) + "/"
    if isinstance(python_path, str) and python_path.startswith(root):
        prefixes.add(python_path.rstrip("/") + "/")
    return sorted(prefixes)


def _is_session_cmdline(cmd: list[str], prefixes: list[str]) -> bool:
    if not cmd:
        return False
    interpreter = os.path.basename(cmd[0])
    if not (interpreter.startswith("python") or interpreter.startswith("pvpython") or
            any(cmd[0].startswith(p) or cmd[0] == p for p in prefixes)):
        return False
    return any(arg == p or arg.startswith(p) for arg in cmd for p in prefixes)


def _own_lineage() -> set[int]:
    import psutil

    pids = {os.getpid()}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pass
    return pids


def _session_id_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def deployment_processes(settings: Settings) -> list[psutil.Process]:
    """Every live process of this deployment: the launcher, its children, and orphaned apps.

    Orphans (apps of a SIGKILLed launcher, reparented to PID 1) are found by
    their command line (an interpreter running a script from this
    deployment's release tree, or the python_path of launch.json) and by the
    session id of a launcher this deployment recorded.  Never this process
    or its parents.
    """
    import psutil

    layout = settings.layout
    launch_json = layout.launch_json
    prefixes = _tree_prefixes(settings)
    skip = _own_lineage()
    record = LauncherRecord.load(layout.launcher_record)
    known_launchers = {pid for pid in (read_pid(layout.pid_file), record.pid if record else None) if pid}
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if proc.pid in skip or proc.pid <= 1:
            continue
        cmd = cmdline(proc)
        if not cmd:
            continue
        if (_is_launcher_cmdline(cmd, launch_json) or _is_session_cmdline(cmd, prefixes)) and alive(proc):
            found[proc.pid] = proc
    # An app listening on a session port, in the session of a launcher this
    # deployment started, is ours whatever its command line says.
    for _port, pid in listeners(port_range(settings)).items():
        if pid and pid not in found and pid not in skip and _session_id_of(pid) in known_launchers:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
    for proc in list(found.values()):
        if _is_launcher_cmdline(cmdline(proc), launch_json):
            try:
                for child in proc.children(recursive=True):
                    if child.pid not in skip and alive(child):
                        found.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
    return list(found.values())


def new_children(launcher: psutil.Process | None, before: set[int]) -> list[psutil.Process]:
    """The launcher's descendants that were not in ``before`` ([] when it is gone)."""
    import psutil

    if launcher is None:
        return []
    try:
        return [c for c in launcher.children(recursive=True) if c.pid not in before]
    except psutil.NoSuchProcess:
        return []


def port_range(settings: Settings) -> range:
    """The session ports of ``[launcher] port_range``."""
    first, last = settings.launcher.port_range
    return range(first, last + 1)


def listeners(ports: range | list[int]) -> dict[int, int | None]:
    """Listening TCP ports among ``ports`` -> PID holding it (None when not visible)."""
    import psutil

    wanted = set(ports)
    held: dict[int, int | None] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return held
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted:
            held.setdefault(conn.laddr.port, conn.pid)
    return held


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    # An ASCII host as bytes: a str goes through the idna codec, whose import the no-op update can skip.
    address = host.encode("ascii") if host.isascii() else host
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe(proc: psutil.Process) -> str:
    """``PID n (command line)`` for messages."""
    return f"PID {proc.pid} ({' '.join(cmdline(proc))[:120]})"


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for ``procs`` to end (psutil.wait_procs); return those still alive."""
    import psutil

    deadline = time.monotonic() + timeout
    left = [p for p in procs if alive(p)]
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        _gone, left = psutil.wait_procs(left, timeout=min(0.05, remaining))
        left = [p for p in left if alive(p)]
    return left


def end_processes(procs: list[psutil.Process], grace: float) -> tuple[int, int]:
    """SIGTERM ``procs``, wait up to ``grace`` s, SIGKILL the rest; return (terminated, killed).

    The launcher itself holds a SIGTERM until its in-flight POSTs finish
    (aiohttp's graceful shutdown), which for a session whose app was just
    ended means its whole session timeout.  Once every app is gone the
    launcher gets LAUNCHER_LINGER more seconds, then SIGKILL: nothing is lost
    (its apps are gone, proxy.txt is cleared by the caller) and the restart
    is not held up.  Raises LauncherError when a process survives SIGKILL.
    """
    import psutil

    if not procs:
        return 0, 0
    launchers = {p.pid for p in procs if _runs_launcher_module(cmdline(p))}
    _signal_all(procs, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = [p for p in procs if alive(p)]
    only_launchers_since = None
    while left and time.monotonic() < deadline:
        _gone, left = psutil.wait_procs(left, timeout=0.05)
        left = [p for p in left if alive(p)]
        if left and all(p.pid in launchers for p in left):
            only_launchers_since = only_launchers_since or time.monotonic()
            if time.monotonic() - only_launchers_since >= LAUNCHER_LINGER:
                log.info("launcher still finishing requests %.1f s after its sessions ended: SIGKILL",
                         LAUNCHER_LINGER)
                break
    if left:
        if not all(p.pid in launchers for p in left):
            log.warning("SIGKILL after %.1f s grace: %s", grace, ", ".join(describe(p) for p in left))
        _signal_all(left, signal.SIGKILL)
        still = wait_gone(left, 5.0)
        if still:
            raise LauncherError(f"could not end {', '.join(describe(p) for p in still)} even with SIGKILL")
    return len(procs) - len(left), len(left)


def stop_all(settings: Settings) -> tuple[int, int]:
    """End every process of this deployment, orphans included; return (ended, killed with SIGKILL).

    SIGTERM, then up to ``[launcher] stop_grace`` seconds, then SIGKILL.
    Raises LauncherError when a process survives SIGKILL or new ones keep
    appearing.  Session ports held by other users' processes are logged and
    left alone.
    """
    ended = killed = 0
    for _round in range(3):  # a launcher may spawn an app while we signal it
        procs = deployment_processes(settings)
        if not procs:
            break
        log.info("stopping %s", ", ".join(describe(p) for p in procs))
        terminated, sigkilled = end_processes(procs, settings.launcher.stop_grace)
        ended += terminated + sigkilled
        killed += sigkilled
    else:
        left = deployment_processes(settings)
        if left:
            raise LauncherError(f"processes keep appearing: {', '.join(describe(p) for p in left)}")
    foreign = listeners([*port_range(settings), settings.launcher.port])
    for port, pid in sorted(foreign.items()):
        log.warning("port %d is still held by PID %s, which is not this deployment's; left alone", port, pid)
    return ended, killed
