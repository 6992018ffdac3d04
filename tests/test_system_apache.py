"""The README's "Deploy on a real server" vhost steps, as root, against the system Apache (/etc/apache2).

The vhost listens on a free port (a ports conf of the test's own, like the README's `Listen` step
for a non-standard port) under a site name of its own.  /etc/apache2 and /var/lib/apache2 (where
a2enmod keeps its state) are snapshotted first and restored exactly afterwards; the system Apache is
started with `apache2ctl start` only when it was not running, and then stopped again.
"""

from __future__ import annotations

import os
import signal
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests

from apache_support import post_session, websocket_status
from conftest import build_release, stop_deployment_processes, write_config
from support.doit import run_doit
from support.ports import free_port
from pvwtasks import apache, config, cron

pytestmark = pytest.mark.timeout(400)
APACHE_DIRS = (Path("/etc/apache2"), Path("/var/lib/apache2"))
PID_FILE = Path("/var/run/apache2/apache2.pid")


def _snapshot(folders) -> dict:
    """Every entry under ``folders``: folders and modes, files' bytes and modes, links' targets."""
    seen = {}
    for top in folders:
        if not top.exists():
            continue
        for folder, dirs, files in os.walk(top):
            for name in dirs + files:
                path = Path(folder, name)
                info = path.lstat()
                if path.is_symlink():
                    seen[path] = ("link", os.readlink(path))
                elif path.is_dir():
                    seen[path] = ("dir", info.st_mode & 0o7777)
                else:
                    seen[path] = ("file", path.read_bytes(), info.st_mode & 0o7777)
    return seen


def _restore(before: dict, folders) -> None:
    """Put the folders back exactly as ``before``: new entries removed, changed or gone ones rewritten."""
    now = _snapshot(folders)
    for path in sorted(set(now) - set(before), key=lambda p: len(p.parts), reverse=True):
        if now[path][0] == "dir":
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for path, entry in sorted(before.items(), key=lambda item: len(item[0].parts)):
        if _snapshot_entry(path) == entry:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        if entry[0] == "dir":
            path.mkdir(exist_ok=True)
            os.chmod(path, entry[1])
        elif entry[0] == "link":
            os.symlink(entry[1], path)
        else:
            path.write_bytes(entry[1])
            os.chmod(path, entry[2])


def _snapshot_entry(path: Path):
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_dir():
        return ("dir", path.lstat().st_mode & 0o7777)
    if path.is_file():
        return ("file", path.read_bytes(), path.lstat().st_mode & 0o7777)
    return None


def _apache_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().split()[0])
        return pid if psutil.Process(pid).name().startswith("apache2") else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def _apache2ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["apache2ctl", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def system_apache():
    """The system Apache, with /etc/apache2 restored exactly and Apache stopped again if this test started it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: installs a site into the system Apache (/etc/apache2)")
    if not Path("/etc/apache2").is_dir() or shutil.which("apache2ctl", path="/usr/sbin:/usr/bin:/sbin") is None:
        pytest.skip("no system Apache here (/etc/apache2 or apache2ctl missing)")
    before = _snapshot(APACHE_DIRS)
    was_running = _apache_pid() is not None
    if not was_running and not _port_free(80):
        pytest.skip("port 80 is held by something else: the system Apache (ports.conf: Listen 80) cannot start")
    state = {"started": False}
    try:
        yield state
    finally:
        if state["started"] or (not was_running and _apache_pid() is not None):
            pid = _apache_pid()
            _apache2ctl("stop")
            if pid is not None:
                psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=15)
        _restore(before, APACHE_DIRS)
        if was_running:
            _apache2ctl("graceful")  # the restored configuration
        state["restored"] = _snapshot(APACHE_DIRS) == before
        assert state["restored"], "/etc/apache2 was not restored exactly"


@pytest.fixture
def open_folder():
    """A deployment folder the web user can traverse (pytest's tmp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="pvw-system-apache-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    stop_deployment_processes(folder / "root")
    shutil.rmtree(folder, ignore_errors=True)


def test_readme_vhost_steps_on_the_system_apache_survive_a_launcher_restart(system_apache, open_folder, http_server):
    release = build_release(http_server.root)
    port = free_port()
    site = f"pvw-test-{os.getpid()}.conf"
    # README step "the vhost", for a port other than 80: Apache must Listen on it.
    ports_conf = Path("/etc/apache2/conf-enabled") / f"pvw-test-{os.getpid()}-ports.conf"
    ports_conf.write_text(f"Listen 127.0.0.1:{port}\n")
    # README step "the config": [web] as on a real server (manage_apache is on by default; said here
    # because the tests' write_config turns it off unless the config names it).
    web = textwrap.dedent(f"""
        [web]
        manage_apache = true
        server_name = "127.0.0.1"
        http_port = {port}
        site_name = "{site}"
        disable_default_site = true
        """)
    cfg = write_config(open_folder / "pvw.toml", http_server.url(release.name), open_folder / "root", extra=web)
    settings = config.load(cfg)
    assert settings.web.manage_apache and settings.web.sites_dir == Path("/etc/apache2/sites-available")
    # Start the system Apache when it is not running (and stop it again at the end).
    if _apache_pid() is None:
        started = _apache2ctl("start")
        assert started.returncode == 0, started.stderr
        system_apache["started"] = True

    # README: `doit install_vhost` enables the modules, installs and enables the site, reloads Apache.
    missing = [m for m in apache.needed_modules(settings) if not Path(f"/etc/apache2/mods-enabled/{m}.load").exists()]
    default_site = Path("/etc/apache2/sites-enabled/000-default.conf")
    had_default = default_site.is_symlink()
    done = run_doit(cfg, "install_vhost")
    assert done.returncode == 0, done.output
    said = next(line for line in done.output.splitlines() if f"installed /etc/apache2/sites-available/{site}" in line)
    assert said.endswith("reloaded Apache gracefully"), said
    if missing:
        assert f"enabled Apache modules {', '.join(missing)}" in said
    if had_default:
        assert "disabled the default site 000-default" in said
    assert not default_site.is_symlink()
    for module in apache.needed_modules(settings):
        assert Path(f"/etc/apache2/mods-enabled/{module}.load").exists(), module
    assert Path(f"/etc/apache2/sites-enabled/{site}").resolve() == Path(f"/etc/apache2/sites-available/{site}")

    # README: `doit update`; its health check goes through the system Apache.
    done = run_doit(cfg, "update")
    assert done.returncode == 0, done.output
    base = f"http://127.0.0.1:{port}"
    assert f"health check ok through the front {base}/paraview/" in done.output
    assert requests.get(f"{base}/hash.json", timeout=10).json()["sha256"]
    session = post_session(base, "loader")
    assert websocket_status(session["sessionURL"]) == 101

    # A restart of the launcher: a client still reaches an app through Apache afterwards.
    pid = int(settings.layout.pid_file.read_text())
    done = run_doit(cfg, "restart_launcher")
    assert done.returncode == 0, done.output
    assert int(settings.layout.pid_file.read_text()) != pid
    session = post_session(base, "loader")
    assert websocket_status(session["sessionURL"]) == 101

    # A reboot-like loss of the launcher (SIGKILL, as a crash or power cut leaves it), then the cron
    # supervisor's watchdog line (the @reboot line runs the same command): a client reaches an app again.
    pid = int(settings.layout.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    stop_deployment_processes(settings.layout.root)  # its orphaned sessions die with the "reboot" too
    watchdog = subprocess.run(cron.watchdog_command(settings), capture_output=True, text=True, timeout=120)
    assert watchdog.returncode == 0, watchdog.stdout + watchdog.stderr
    assert "started" in watchdog.stdout + watchdog.stderr
    assert int(settings.layout.pid_file.read_text()) != pid
    session = post_session(base, "loader")
    assert websocket_status(session["sessionURL"]) == 101

    # README "uninstalling": the site goes, Apache reloads, the front no longer answers for us.
    run_doit(cfg, "stop_launcher")
    done = run_doit(cfg, "uninstall_vhost")
    assert done.returncode == 0, done.output
    assert "reloaded Apache gracefully" in done.output
    assert not Path(f"/etc/apache2/sites-available/{site}").exists()
    assert not Path(f"/etc/apache2/sites-enabled/{site}").is_symlink()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if requests.post(f"{base}/paraview/", json={"application": "loader"}, timeout=10).status_code == 404:
            break
        time.sleep(0.2)
    assert requests.post(f"{base}/paraview/", json={"application": "loader"}, timeout=10).status_code == 404
