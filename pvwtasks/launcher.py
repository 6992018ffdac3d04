"""Start, stop, find and health-check the wslink launcher of one deployment.

The launcher runs detached from ``ROOT/bin/start.sh`` in its own session;
its PID is kept in ``ROOT/logs/launcher.pid`` and every use of that PID is
confirmed with psutil against the process's command line (the
``wslink.launcher`` module and this deployment's ``launch.json``), so
another deployment's launcher on the same machine is never touched.

What the running launcher was started with (PID, release, sha256 of
``launch.json`` and ``start.sh``, last health check) is recorded in
``ROOT/.pvwtasks/launcher.json``; ``doit update`` restarts only when that
record no longer matches the files and the live process.

The wslink launcher leaves stale lines in ``proxy.txt`` when it exits, and
after a SIGKILL its apps are orphaned and keep their ports (FACTS.md): the
stop step finds those orphans too, and ``proxy.txt`` is cleared on every
(re)start.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import logging
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import requests

from . import install, pipeline, render
from .config import Settings, current_user
from .errors import LauncherError, PvwError
from .fsutil import atomic_write_text, read_json, remove_quietly, write_json
from .runlog import tail

log = logging.getLogger(__name__)

PROXY_MODE = 0o660
LOG_TAIL_LINES = 12
LAUNCHER_LINGER = 0.15  # seconds a SIGTERMed launcher may outlive its apps
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class PortBusy(LauncherError):
    """The launcher's port is held by a process that is not this deployment's."""


# --------------------------------------------------------------------------
# Paths and small helpers
# --------------------------------------------------------------------------


def record_path(settings: Settings) -> Path:
    """``ROOT/.pvwtasks/launcher.json``: what the running launcher was started with."""
    return settings.layout.state / "launcher.json"


def launcher_log(settings: Settings) -> Path:
    return settings.layout.logs / "launcher.log"


def _launch_json(settings: Settings) -> Path:
    return render.output_path(settings.layout, "launcher")


def _start_sh(settings: Settings) -> Path:
    return render.output_path(settings.layout, "start")


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _connect_host(host: str) -> str:
    """Where to reach a server listening on ``host``: loopback for wildcard and localhost."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "localhost") else host


def _one_line_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = tail(path, lines).strip()
    if not text:
        return f"{path} is empty or missing"
    return f"last lines of {path}: " + " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((_connect_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# proxy.txt
# --------------------------------------------------------------------------


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _members_wanted(settings: Settings) -> list[str]:
    users = [settings.launcher.user or current_user(), settings.web.user]
    return [u for i, u in enumerate(users) if u and u not in users[:i]]


def _is_member(user: str, group: str) -> bool:
    try:
        entry = grp.getgrnam(group)
        return user in entry.gr_mem or pwd.getpwnam(user).pw_gid == entry.gr_gid
    except KeyError:
        return False


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def _run_admin(cmd: list[str]) -> None:
    """Run groupadd/usermod; a group another run just created is fine, a locked /etc/group is retried."""
    log.info("running %s", " ".join(cmd))
    for attempt in range(10):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode == 0 or (cmd[0] == "groupadd" and done.returncode == 9):  # 9: the group exists
            return
        if done.returncode != 10:  # 10: cannot lock or update /etc/group (another run holds it)
            break
        time.sleep(0.1 * (attempt + 1))
    raise LauncherError(f"{' '.join(cmd)} failed (status {done.returncode}): {done.stderr.strip()}")


def ensure_proxy_file(settings: Settings, as_root: bool | None = None) -> dict:
    """Make ``ROOT/proxy.txt`` exist with group ``[launcher] proxy_group`` and mode 0660.

    As root, creates the group when missing (groupadd) and adds the launcher
    user and the web server user to it (usermod -a -G).  As another user it
    logs the exact commands an admin must run and succeeds as long as the
    file exists and this user can read and write it.  Raises LauncherError
    when the file is unusable or an admin command fails.  ``as_root``
    overrides the euid check (tests use it to exercise the non-root path).
    """
    path = settings.layout.proxy_file
    group = settings.launcher.proxy_group
    if not path.exists():
        atomic_write_text(path, "", PROXY_MODE)
        log.info("created %s", path)
    is_root = os.geteuid() == 0 if as_root is None else as_root
    admin: list[list[str]] = []
    if _group_id(group) is None:
        admin.append(["groupadd", group])
    for user in _members_wanted(settings):
        if not _user_exists(user):
            log.warning("user %s does not exist; not adding it to group %s", user, group)
        elif not _is_member(user, group):
            admin.append(["usermod", "-a", "-G", group, user])
    if is_root:
        for cmd in admin:
            _run_admin(cmd)
        admin = []
    gid = _group_id(group)
    stat = path.stat()
    if gid is not None and stat.st_gid != gid:
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            admin.append(["chgrp", group, str(path)])
    if stat.st_mode & 0o777 != PROXY_MODE:
        try:
            os.chmod(path, PROXY_MODE)
        except PermissionError:
            admin.append(["chmod", "0660", str(path)])
    if gid is None and not is_root:
        admin.append(["chgrp", group, str(path)])
    if admin:
        log.warning("proxy.txt needs an admin; run as root: %s", " && ".join(" ".join(c) for c in admin))
        if not os.access(path, os.R_OK | os.W_OK):
            raise LauncherError(f"{path}: not readable and writable by {current_user()}; "
                                f"run as root: {' && '.join(' '.join(c) for c in admin)}")
        return {"proxy_file": str(path), "admin_needed": [" ".join(c) for c in admin]}
    log.info("%s: group %s, mode 0660", path, group)
    return {"proxy_file": str(path), "admin_needed": []}


def proxy_file_ok(settings: Settings) -> bool:
    """True when proxy.txt exists with the right group and mode (and, as root, the group members).

    The ``uptodate`` check of ``doit proxy_file``: never raises.
    """
    try:
        path = settings.layout.proxy_file
        group = settings.launcher.proxy_group
        if not path.exists():
            return False
        stat = path.stat()
        gid = _group_id(group)
        if gid is None or stat.st_gid != gid or stat.st_mode & 0o777 != PROXY_MODE:
            return False
        return all(_is_member(u, group) for u in _members_wanted(settings) if _user_exists(u))
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("proxy.txt check failed: %s", err)
        return False


def clear_proxy_file(settings: Settings) -> None:
    """Empty proxy.txt atomically, keeping its owner, group and mode.

    The launcher leaves stale session lines behind when it exits; Apache
    re-reads the file when it changes.
    """
    path = settings.layout.proxy_file
    try:
        stat = path.stat()
    except FileNotFoundError:
        atomic_write_text(path, "", PROXY_MODE)
        return
    if stat.st_size == 0:
        return
    _replace_keeping_owner(path, "", stat)
    log.info("cleared stale lines from %s", path)


def _replace_keeping_owner(path: Path, text: str, stat: os.stat_result) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            for uid in (stat.st_uid, -1):  # keep owner and group; a non-root user can keep only its groups
                try:
                    os.fchown(handle.fileno(), uid, stat.st_gid)
                    break
                except PermissionError:
                    continue
            os.fchmod(handle.fileno(), stat.st_mode & 0o777)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(Path(tmp))
        raise


def _drop_proxy_line(settings: Settings, session_id: str) -> None:
    path = settings.layout.proxy_file
    try:
        stat = path.stat()
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return
    kept = [line for line in lines if line.split(" ", 1)[0] != session_id]
    if len(kept) != len(lines):
        _replace_keeping_owner(path, "".join(kept), stat)


def proxy_sessions(settings: Settings) -> list[dict]:
    """The sessions listed in proxy.txt: id, host, port."""
    try:
        text = settings.layout.proxy_file.read_text(encoding="utf-8")
    except OSError:
        return []
    sessions = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and ":" in parts[1]:
            host, _, port = parts[1].rpartition(":")
            if port.isdigit():
                sessions.append({"id": parts[0], "host": host, "port": int(port)})
    return sessions


# --------------------------------------------------------------------------
# Finding this deployment's processes
# --------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _is_launcher_cmdline(cmd: list[str], launch_json: Path) -> bool:
    module = any(arg == "wslink.launcher" or arg.endswith("/wslink/launcher.py") for arg in cmd)
    return module and str(launch_json) in cmd


def _alive(proc: psutil.Process) -> bool:
    """True while ``proc`` runs; a zombie counts as gone (and is reaped when it is our child)."""
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


def find_launcher(settings: Settings) -> psutil.Process | None:
    """This deployment's running launcher, from the pidfile confirmed by its command line."""
    pid = _read_pid(settings.layout.pid_file)
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    if _alive(proc) and _is_launcher_cmdline(_cmdline(proc), _launch_json(settings)):
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
    config = read_json(_launch_json(settings)) or {}
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
    launch_json = _launch_json(settings)
    prefixes = _tree_prefixes(settings)
    skip = _own_lineage()
    known_launchers = {pid for pid in (_read_pid(settings.layout.pid_file),
                                       (read_json(record_path(settings)) or {}).get("pid")) if pid}
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if proc.pid in skip or proc.pid <= 1:
            continue
        cmd = _cmdline(proc)
        if not cmd:
            continue
        if (_is_launcher_cmdline(cmd, launch_json) or _is_session_cmdline(cmd, prefixes)) and _alive(proc):
            found[proc.pid] = proc
    # An app listening on a session port, in the session of a launcher this
    # deployment started, is ours whatever its command line says.
    for port, pid in listeners(_port_range(settings)).items():
        if pid and pid not in found and pid not in skip and _session_id_of(pid) in known_launchers:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
    for proc in list(found.values()):
        if _is_launcher_cmdline(_cmdline(proc), launch_json):
            try:
                for child in proc.children(recursive=True):
                    if child.pid not in skip and _alive(child):
                        found.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
    return list(found.values())


def _port_range(settings: Settings) -> range:
    first, last = settings.launcher.port_range
    return range(first, last + 1)


def listeners(ports: range | list[int]) -> dict[int, int | None]:
    """Listening TCP ports among ``ports`` -> PID holding it (None when not visible)."""
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


# --------------------------------------------------------------------------
# Stop
# --------------------------------------------------------------------------


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for ``procs`` to end (psutil.wait_procs); return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _gone, alive = psutil.wait_procs(alive, timeout=min(0.05, left))
        alive = [p for p in alive if _alive(p)]
    return alive


def _describe(proc: psutil.Process) -> str:
    return f"PID {proc.pid} ({' '.join(_cmdline(proc))[:120]})"


def _end_processes(procs: list[psutil.Process], grace: float) -> tuple[int, int]:
    """SIGTERM ``procs``, wait up to ``grace`` s, SIGKILL the rest; return (terminated, killed).

    The launcher itself holds a SIGTERM until its in-flight POSTs finish
    (aiohttp's graceful shutdown), which for a session whose app was just
    ended means its whole session timeout.  Once every app is gone the
    launcher gets LAUNCHER_LINGER more seconds, then SIGKILL: nothing is lost
    (its apps are gone, proxy.txt is cleared by the caller) and the restart
    is not held up.
    """
    if not procs:
        return 0, 0
    launchers = {p.pid for p in procs if any(a == "wslink.launcher" or a.endswith("/wslink/launcher.py")
                                             for a in _cmdline(p))}
    _signal_all(procs, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = [p for p in procs if _alive(p)]
    only_launchers_since = None
    while alive and time.monotonic() < deadline:
        _gone, alive = psutil.wait_procs(alive, timeout=0.05)
        alive = [p for p in alive if _alive(p)]
        if alive and all(p.pid in launchers for p in alive):
            only_launchers_since = only_launchers_since or time.monotonic()
            if time.monotonic() - only_launchers_since >= LAUNCHER_LINGER:
                log.info("launcher still finishing requests %.1f s after its sessions ended: SIGKILL",
                         LAUNCHER_LINGER)
                break
    if alive:
        if not all(p.pid in launchers for p in alive):
            log.warning("SIGKILL after %.1f s grace: %s", grace, ", ".join(_describe(p) for p in alive))
        _signal_all(alive, signal.SIGKILL)
        still = _wait_gone(alive, 5.0)
        if still:
            raise LauncherError(f"could not end {', '.join(_describe(p) for p in still)} even with SIGKILL")
    return len(procs) - len(alive), len(alive)


def stop(settings: Settings) -> dict:
    """Stop this deployment's launcher and every session process, orphans included.

    SIGTERM, then up to ``[launcher] stop_grace`` seconds, then SIGKILL.
    When it returns no process of this deployment is left and the session
    ports it held are free.  Removes the pidfile and clears proxy.txt.
    Raises LauncherError when a process survives SIGKILL.
    """
    started = time.monotonic()
    layout = settings.layout
    ended = killed = 0
    for _round in range(3):  # a launcher may spawn an app while we signal it
        procs = deployment_processes(settings)
        if not procs:
            break
        log.info("stopping %s", ", ".join(_describe(p) for p in procs))
        terminated, sigkilled = _end_processes(procs, settings.launcher.stop_grace)
        ended += terminated + sigkilled
        killed += sigkilled
    else:
        left = deployment_processes(settings)
        if left:
            raise LauncherError(f"processes keep appearing: {', '.join(_describe(p) for p in left)}")
    foreign = listeners([*_port_range(settings), settings.launcher.port])
    for port, pid in sorted(foreign.items()):
        log.warning("port %d is still held by PID %s, which is not this deployment's; left alone", port, pid)
    remove_quietly(layout.pid_file)
    _update_record(settings, pid=None, stopped_at=time.time())
    clear_proxy_file(settings)
    if ended:
        log.info("launcher stopped: %d process(es) ended (%d with SIGKILL) in %.2f s",
                 ended, killed, time.monotonic() - started)
    else:
        log.info("launcher was not running; nothing to stop")
    return {"ended": ended, "killed": killed}


# --------------------------------------------------------------------------
# Start
# --------------------------------------------------------------------------


def _check_launch_files(settings: Settings) -> None:
    """Refuse to (re)start with a missing start.sh or an unusable launch.json (before any downtime)."""
    start_sh, launch_json = _start_sh(settings), _launch_json(settings)
    if not start_sh.is_file():
        raise LauncherError(f"{start_sh} missing; run `doit render_start` first")
    try:
        config = json.loads(launch_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LauncherError(f"{launch_json} missing; run `doit render_launcher` first") from None
    except (OSError, ValueError) as err:
        raise LauncherError(f"{launch_json}: not usable JSON ({err})") from None
    missing = [k for k in ("configuration", "apps", "properties", "resources") if k not in config]
    if missing:
        raise LauncherError(f"{launch_json}: missing {', '.join(missing)}")


def _launch(settings: Settings) -> psutil.Process:
    """Run start.sh detached, record its PID, wait until the launcher answers on its port."""
    layout, cfg = settings.layout, settings.launcher
    _check_launch_files(settings)
    held = listeners([cfg.port])
    if held:
        pid = held[cfg.port]
        try:
            who = _describe(psutil.Process(pid)) if pid else "a process this user cannot see"
        except psutil.NoSuchProcess:
            who = f"PID {pid}"
        raise PortBusy(f"launcher port {cfg.port} is already in use by {who}; not starting a second server")
    clear_proxy_file(settings)
    layout.logs.mkdir(parents=True, exist_ok=True)
    render.session_log_dir(layout).mkdir(parents=True, exist_ok=True)
    log_path = launcher_log(settings)
    with open(os.devnull, "rb") as devnull, open(log_path, "ab") as out:
        proc = subprocess.Popen(
            ["/bin/sh", str(_start_sh(settings))], stdin=devnull, stdout=out, stderr=out,
            cwd=layout.root, start_new_session=True, close_fds=True,
        )
    atomic_write_text(layout.pid_file, f"{proc.pid}\n", 0o644)
    deadline = time.monotonic() + cfg.start_timeout
    while True:
        status = proc.poll()
        if status is not None:
            remove_quietly(layout.pid_file)
            raise LauncherError(f"launcher exited with status {status} before answering on port {cfg.port}; "
                                f"{_one_line_tail(log_path)}")
        if _port_answers(cfg.host, cfg.port, 0.2):
            break
        if time.monotonic() > deadline:
            _end_processes([psutil.Process(proc.pid), *deployment_processes(settings)], cfg.stop_grace)
            remove_quietly(layout.pid_file)
            raise LauncherError(f"launcher did not answer on port {cfg.port} within {cfg.start_timeout:g} s; "
                                f"{_one_line_tail(log_path)}")
        time.sleep(0.02)
    launcher = psutil.Process(proc.pid)
    proc.returncode = 0  # detached: never reap it from here (it outlives this process)
    _write_record(settings, launcher)
    log.info("launcher started: PID %d on port %d", launcher.pid, cfg.port)
    return launcher


def _write_record(settings: Settings, launcher: psutil.Process) -> None:
    old = read_json(record_path(settings)) or {}
    write_json(record_path(settings), {
        "pid": launcher.pid,
        "create_time": launcher.create_time(),
        "release": install.live_name(settings.layout),
        "launch_json": _sha256(_launch_json(settings)),
        "start_sh": _sha256(_start_sh(settings)),
        "port": settings.launcher.port,
        "started_at": time.time(),
        "health": None,
        "last_good_release": old.get("last_good_release"),
    })


def _update_record(settings: Settings, **changes) -> None:
    record = read_json(record_path(settings))
    if record is None:
        return
    record.update(changes)
    write_json(record_path(settings), record)


def start(settings: Settings) -> dict:
    """Start the launcher if it is not running, wait until it answers, then health-check it.

    Orphaned apps of a killed launcher are ended first and proxy.txt is
    cleared.  Raises LauncherError naming the port and quoting the
    launcher log when it does not come up, or when the health check fails.
    """
    running = find_launcher(settings)
    if running is not None:
        log.info("launcher already running: PID %d", running.pid)
        return {"pid": running.pid, "started": False}
    leftovers = deployment_processes(settings)
    if leftovers:
        log.warning("ending %d leftover process(es) of a launcher that is gone", len(leftovers))
        _end_processes(leftovers, settings.launcher.stop_grace)
    launcher = _launch(settings)
    health = health_check(settings)
    return {"pid": launcher.pid, "started": True, "health": health}


def restart(settings: Settings) -> dict:
    """Stop the launcher and its sessions, start it again and health-check it.

    The server is down only between the stop and the launcher answering.
    """
    _check_launch_files(settings)
    stop(settings)
    launcher = _launch(settings)
    health = health_check(settings)
    return {"pid": launcher.pid, "health": health}


# --------------------------------------------------------------------------
# Health check
# --------------------------------------------------------------------------


def _newest_session_log(settings: Settings, since: float) -> Path | None:
    folder = render.session_log_dir(settings.layout)
    try:
        logs = [p for p in folder.glob("*.txt") if p.stat().st_mtime >= since - 1]
    except OSError:
        return None
    return max(logs, key=lambda p: p.stat().st_mtime, default=None)


def _websocket_upgrade(host: str, port: int, path: str, timeout: float) -> None:
    """Open a websocket to ``host:port/path`` (HTTP upgrade, 101, Sec-WebSocket-Accept) and close it."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /{path.lstrip('/')} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection((_connect_host(host), port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16384:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in f"{status} ":
            raise LauncherError(f"websocket to {host}:{port}/{path} answered {status or 'nothing'!r}, not 101")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if accept.encode() not in head:
            raise LauncherError(f"websocket to {host}:{port}/{path}: wrong Sec-WebSocket-Accept")
        # A masked close frame (code 1000), so the app sees a clean goodbye.
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate((1000).to_bytes(2, "big")))
        try:
            sock.sendall(bytes([0x88, 0x80 | 2]) + mask + payload)
        except OSError:
            pass


def _session_processes(launcher: psutil.Process | None, before: set[int], port: int) -> list[psutil.Process]:
    if launcher is None:
        return []
    try:
        new = [c for c in launcher.children(recursive=True) if c.pid not in before]
    except psutil.NoSuchProcess:
        return []
    holding = {pid for p, pid in listeners([port]).items() if pid}
    chosen = [c for c in new if c.pid in holding or str(port) in _cmdline(c)]
    return chosen or new


def _post_watching_app(settings: Settings, url: str, launcher: psutil.Process | None, before: set[int],
                       since: float) -> requests.Response:
    """POST the health-check session while watching its app; fail at once when the app dies before ready.

    The wslink launcher makes a client wait its whole ``timeout`` even for
    an app that crashed at start (FACTS.md); watching the launcher's new
    children ends that wait early.
    """
    cfg = settings.launcher
    outcome: dict = {}

    def post() -> None:
        try:
            outcome["answer"] = requests.post(url, json={"application": cfg.health_app}, timeout=(5, cfg.timeout + 15))
        except requests.RequestException as err:
            outcome["error"] = err

    thread = threading.Thread(target=post, name="pvwtasks-health-post", daemon=True)
    thread.start()
    seen: set[int] = set()
    dead_polls = 0
    while thread.is_alive():
        thread.join(0.1)
        if launcher is None or not thread.is_alive():
            continue
        try:
            new = [c for c in launcher.children(recursive=True) if c.pid not in before]
        except psutil.NoSuchProcess:
            continue
        seen.update(c.pid for c in new)
        running = [c for c in new if _alive(c)]
        dead_polls = dead_polls + 1 if seen and not running else 0
        if dead_polls >= 3:
            session_log = _newest_session_log(settings, since)
            where = _one_line_tail(session_log) if session_log else _one_line_tail(launcher_log(settings))
            raise LauncherError(f"health check: the {cfg.health_app} session's app exited before printing its "
                                f"ready line (POST {url}); {where}")
    if "error" in outcome:
        raise LauncherError(f"health check: POST {url} failed: {outcome['error']}")
    return outcome["answer"]


def health_check(settings: Settings) -> dict:
    """POST a session of ``[launcher] health_app``, open its websocket, then end it cleanly.

    Checks a 200 with ``sessionURL``, an HTTP upgrade (101) on the app's
    port, a DELETE of the session, that the app process ended and that its
    line left proxy.txt.  Records the result in launcher.json.  Raises
    LauncherError quoting the session's log when any step fails.
    """
    cfg = settings.launcher
    url = f"http://{_connect_host(cfg.host)}:{cfg.port}/{cfg.endpoint.strip('/')}/"
    launcher = find_launcher(settings)
    try:
        before = {c.pid for c in launcher.children(recursive=True)} if launcher else set()
    except psutil.NoSuchProcess:
        launcher, before = None, set()
    started_wall, started = time.time(), time.monotonic()
    try:
        answer = _post_watching_app(settings, url, launcher, before, started_wall)
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or not isinstance(body, dict) or "sessionURL" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            session_log = _newest_session_log(settings, started_wall)
            where = _one_line_tail(session_log) if session_log else _one_line_tail(launcher_log(settings))
            raise LauncherError(f"health check: POST {url} {{application: {cfg.health_app}}} answered "
                                f"{answer.status_code} {error or answer.text[:200]!r}; {where}")
        session_id, host, port = body.get("id"), body.get("host") or cfg.host, int(body.get("port", 0))
        post_seconds = time.monotonic() - started
        apps = _session_processes(launcher, before, port)
        try:
            query = parse_qs(urlsplit(body["sessionURL"]).query)
            _websocket_upgrade(host, port, query.get("path", ["ws"])[0], timeout=5)
        finally:
            _end_session(settings, url, session_id, apps)
    except LauncherError as err:
        _update_record(settings, health={"ok": False, "at": time.time(), "error": str(err)})
        raise
    result = {"ok": True, "at": time.time(), "app": cfg.health_app, "post_seconds": round(post_seconds, 3),
              "seconds": round(time.monotonic() - started, 3)}
    record = read_json(record_path(settings)) or {}
    _update_record(settings, health=result, last_good_release=record.get("release"))
    log.info("health check ok: %s session came up in %.2f s and was ended", cfg.health_app, post_seconds)
    return result


def _end_session(settings: Settings, url: str, session_id: str | None, apps: list[psutil.Process]) -> None:
    """DELETE the health-check session; make sure its app ended and its proxy.txt line is gone."""
    deleted = False
    if session_id:
        try:
            deleted = requests.delete(url + session_id, timeout=10).status_code == 200
        except requests.RequestException as err:
            log.warning("health check: DELETE %s%s failed: %s", url, session_id, err)
        if not deleted:
            log.warning("health check: DELETE %s%s refused (is WSLINK_LAUNCHER_DELETE=1 exported by start.sh?); "
                        "ending the session's app directly", url, session_id)
    if deleted:  # the launcher SIGTERMs the app; give it the grace to go, then insist
        alive = _wait_gone(apps, settings.launcher.stop_grace)
        _end_processes(alive, 1.0)
    else:
        _end_processes([p for p in apps if _alive(p)], settings.launcher.stop_grace)
    if session_id:
        if not deleted:
            _drop_proxy_line(settings, session_id)
        if any(s["id"] == session_id for s in proxy_sessions(settings)):
            raise LauncherError(f"health check: session {session_id} still listed in {settings.layout.proxy_file}")


# --------------------------------------------------------------------------
# doit update: restart only when needed, roll back a bad release
# --------------------------------------------------------------------------


def running_as_deployed(settings: Settings) -> bool:
    """True when the launcher runs, healthy, with the live release and the current launch.json/start.sh.

    The ``uptodate`` check of the ``launcher`` task: never raises.
    """
    try:
        record = read_json(record_path(settings))
        if not record:
            return False
        launcher = find_launcher(settings)
        if launcher is None or launcher.pid != record.get("pid"):
            return False
        if abs(launcher.create_time() - float(record.get("create_time") or 0)) > 1:
            return False
        if record.get("release") != install.live_name(settings.layout):
            return False
        if record.get("launch_json") != _sha256(_launch_json(settings)):
            return False
        if record.get("start_sh") != _sha256(_start_sh(settings)):
            return False
        if not (record.get("health") or {}).get("ok"):
            return False
        return _port_answers(settings.launcher.host, settings.launcher.port)
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("launcher check failed: %s", err)
        return False


def _why_restart(settings: Settings, record: dict | None) -> str:
    live = install.live_name(settings.layout)
    if find_launcher(settings) is None:
        return "the launcher is not running"
    if not record:
        return "no record of how the running launcher was started"
    if record.get("release") != live:
        return f"the live release switched from {record.get('release')} to {live}"
    if record.get("launch_json") != _sha256(_launch_json(settings)):
        return "launch.json changed"
    if record.get("start_sh") != _sha256(_start_sh(settings)):
        return "start.sh changed"
    return "the last health check failed"


def _rollback_target(settings: Settings, record: dict | None, failed: str | None) -> install.Release | None:
    layout = settings.layout
    installed = {r.name: r for r in install.releases(layout)}
    good = (record or {}).get("last_good_release")
    if good and good != failed and good in installed and not install.failure_of(layout, good):
        return installed[good]
    if good == failed:
        return None  # this very release ran healthy before: not a version switch
    candidates = [r for r in installed.values() if r.name != failed and not install.failure_of(layout, r.name)]
    return candidates[-1] if candidates else None


def ensure_running(settings: Settings) -> dict:
    """Restart the launcher only when needed; roll back when a switched-to release is unhealthy.

    Leaves a running launcher alone when it runs as deployed.  Otherwise
    stops it, starts it and health-checks it.  When that fails after a
    version switch, marks the new release failed, switches back to the
    previous good one, re-renders, restarts, checks again and raises
    LauncherError naming both versions.
    """
    if running_as_deployed(settings):
        log.info("launcher already running as deployed (PID %s); leaving it and its sessions alone",
                 _read_pid(settings.layout.pid_file))
        return {"restarted": False}
    record = read_json(record_path(settings))
    reason = _why_restart(settings, record)
    live = install.live_release(settings.layout)
    log.info("restarting the launcher: %s", reason)
    started = time.monotonic()
    try:
        result = restart(settings)
    except PortBusy:
        raise
    except LauncherError as err:
        target = _rollback_target(settings, record, live.name if live else None)
        if live is None or target is None:
            raise
        raise _rollback(settings, live, target, str(err), started) from None
    return {"restarted": True, "reason": reason, "seconds": round(time.monotonic() - started, 3), **result}


def _rollback(settings: Settings, bad: install.Release, good: install.Release, error: str,
              started: float) -> LauncherError:
    """Mark ``bad`` failed, make ``good`` live again, restart; return the error that fails the run."""
    layout = settings.layout
    log.error("%s failed its health check; rolling back to %s", bad.name, good.name)
    install.mark_failed(layout, bad.name, error)
    install.switch_live(layout, good)
    try:
        render.render_file(settings, "launcher")
        render.render_file(settings, "start")
        pipeline.publish_hash(settings)
        try:
            render.render_file(settings, "index")
        except PvwError as err:
            log.warning("landing page not re-rendered after rollback: %s", err)
        restart(settings)
    except PvwError as again:
        return LauncherError(
            f"{bad.version} ({bad.name}) failed its health check and the rollback to {good.version} "
            f"({good.name}) failed too: {again}; first failure: {error}")
    seconds = time.monotonic() - started
    log.info("rolled back to %s in %.1f s", good.name, seconds)
    return LauncherError(
        f"{bad.version} ({bad.name}) failed its health check, rolled back to {good.version} ({good.name}) "
        f"in {seconds:.1f} s, which is live and healthy; {bad.name} is marked failed and stays on disk "
        f"until upstream changes; {error}")
