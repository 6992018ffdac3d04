"""Supervision (cron watchdog, systemd units) and the service account the launcher runs as.

PID 1 is not systemd on the test machine, so ``systemctl`` cannot be run
for real: the systemd tests put a stand-in ``systemctl`` on PATH, a small
real program that records its arguments and starts/stops the unit's
``ExecStart`` from the installed unit file.  ``systemd-analyze verify``
checks the rendered units for real.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psutil
import pytest
import requests

from pvwtasks import config as pvwconfig
from pvwtasks import preflight, processes, systemd
from conftest import (build_release, deploy, make_deployment, open_session, pidfile_pid,
                      stop_deployment_processes)
from render_support import fake_crontab
from support.doit import run_doit
from support.waiting import wait_until

needs_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd, switching users)")


def _watchdog(config: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pvwtasks.watchdog", str(config)], capture_output=True, text=True,
                          timeout=120, env=env)


def _gone(pid: int) -> bool:
    """The process ended (a zombie counts: an orphan's reaper may be slow)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _set(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))


# --- cron: the @reboot and watchdog lines, and the watchdog itself


def test_crontab_starts_the_launcher_at_boot_and_every_watchdog_period(dep):
    _set(dep["config"], "[launcher]", '[cron]\nwatchdog = "*/3 * * * *"\n\n[launcher]')
    assert run_doit(dep["config"], "render_cron").returncode == 0
    lines = (dep["root"] / "conf" / "crontab").read_text().splitlines()
    watchdog = [line for line in lines if "pvwtasks.watchdog" in line]
    assert [line.split()[0] for line in watchdog] == ["@reboot", "*/3"]
    assert all(str(dep["config"]) in line for line in watchdog)
    assert any(line.startswith("0 4 * * 1 ") and " update " in line for line in lines)

    _set(dep["config"], "[deploy]\n", '[deploy]\nsupervisor = "systemd"\n')
    assert run_doit(dep["config"], "render_cron").returncode == 0
    commands = [line for line in (dep["root"] / "conf" / "crontab").read_text().splitlines()
                if line and not line.startswith("#")]
    assert len(commands) == 1 and "logrotate" in commands[0]  # systemd's timer and service do the rest


def test_watchdog_starts_a_killed_launcher_is_silent_when_up_and_waits_for_a_running_update(dep):
    deploy(dep)
    settings = dep["settings"]
    first = pidfile_pid(settings)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: _gone(first), what="the launcher to die")

    started = _watchdog(dep["config"])
    assert started.returncode == 0, started.stdout + started.stderr
    assert len(started.stdout.splitlines()) == 1 and "started it" in started.stdout and not started.stderr
    second = pidfile_pid(settings)
    assert second != first and psutil.pid_exists(second)
    assert run_doit(dep["config"], "status").returncode == 0  # answering, health ok

    log_before = settings.layout.update_log.read_text()
    quiet = _watchdog(dep["config"])
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert pidfile_pid(settings) == second
    assert settings.layout.update_log.read_text() == log_before

    # An update holds the lock (another process): the watchdog leaves the dead launcher alone.
    os.kill(second, signal.SIGKILL)
    wait_until(lambda: _gone(second), what="the launcher to die")
    stop_deployment_processes(dep["root"])
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(settings.layout.lock_file)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waiting = _watchdog(dep["config"])
        assert (waiting.returncode, waiting.stdout, waiting.stderr) == (0, "", "")
        assert processes.find_launcher(settings) is None
    finally:
        holder.kill()
        holder.wait()
    again = _watchdog(dep["config"])
    assert again.returncode == 0 and "started it" in again.stdout


def test_watchdog_restarts_only_the_active_slot_and_stops_a_drained_one(dep):
    from pvwtasks import slots

    deploy(dep)
    settings = dep["settings"]
    kept = open_session(settings)  # slot a drains with it after the upgrade
    build_release(dep["server"].root, "5.13.1", name=dep["release"].name)
    deploy(dep)
    assert (slots.state(settings).active, slots.state(settings).draining) == ("b", "a")
    old, new = (int(settings.for_slot(s).layout.pid_file.read_text()) for s in ("a", "b"))

    os.kill(new, signal.SIGKILL)  # the active slot dies: the watchdog starts it again, slot a drains on
    wait_until(lambda: _gone(new), what="slot b to die")
    started = _watchdog(dep["config"])
    assert started.returncode == 0 and "started it (slot b" in started.stdout, started.stdout + started.stderr
    assert pidfile_pid(settings) not in (new, old) and not _gone(old)
    assert slots.state(settings).draining == "a" and kept["id"] in settings.layout.proxy_file.read_text()

    os.kill(old, signal.SIGKILL)  # a draining slot that dies is never started again: its apps are ended
    wait_until(lambda: _gone(old), what="slot a to die")
    quiet = _watchdog(dep["config"])
    assert quiet.returncode == 0 and "started it" not in quiet.stdout, quiet.stdout + quiet.stderr
    assert processes.find_launcher(settings.for_slot("a")) is None
    assert slots.state(settings).draining is None and settings.layout.proxy_file.read_text() == ""
    assert not processes.listeners([kept["port"]])
    assert (_watchdog(dep["config"]).stdout, slots.state(settings).active) == ("", "b")


def test_watchdog_stops_a_slot_whose_last_session_closed(dep):
    from pvwtasks import slots

    deploy(dep)
    settings = dep["settings"]
    kept = open_session(settings)
    build_release(dep["server"].root, "5.13.1", name=dep["release"].name)
    deploy(dep)
    old = int(settings.layout.pid_file.read_text())
    assert _watchdog(dep["config"]).stdout == ""  # a session still open: slot a drains on, silently
    assert not _gone(old)
    assert requests.delete(f"http://127.0.0.1:{settings.launcher.port}/paraview/{kept['id']}", timeout=30).ok
    wait_until(lambda: not slots.live_sessions(settings), timeout=30, what="the old session to end")
    done = _watchdog(dep["config"])
    assert done.returncode == 0 and "launcher slot a drained; stopped it" in done.stdout, done.stdout + done.stderr
    assert wait_until(lambda: _gone(old), what="slot a to stop")
    assert slots.state(settings).draining is None and processes.find_launcher(settings.for_slot("b"))


def test_watchdog_is_silent_before_anything_is_deployed(tmp_path):
    config = tmp_path / "pvw.toml"
    config.write_text(f'[deploy]\nroot = "{tmp_path / "root"}"\n[source]\nurl = "http://127.0.0.1:9/x.tar.gz"\n')
    done = _watchdog(config)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "root").exists()


# --- status and preflight name the supervisor


def test_status_shows_the_supervisor_and_whether_it_is_in_place(dep, tmp_path):
    program, store, _calls = fake_crontab(tmp_path / "cron")
    _set(dep["config"], "[launcher]", f'[cron]\ncrontab = "{program}"\n\n[launcher]')
    deploy(dep)
    shown = run_doit(dep["config"], "status", "--json")
    data = json.loads(shown.stdout[shown.stdout.index("{"):shown.stdout.rindex("}") + 1])
    assert data["supervision"] == {"supervisor": "cron", "state": "not installed", "healthy": False}
    assert run_doit(dep["config"], "install_cron").returncode == 0
    assert "pvwtasks.watchdog" in store.read_text()
    text = run_doit(dep["config"], "status")
    assert "supervisor   cron: crontab block installed (ok)" in text.output


def test_preflight_requires_the_chosen_supervisors_program(tmp_path):
    config = tmp_path / "pvw.toml"
    config.write_text(f'[deploy]\nroot = "{tmp_path}"\n[source]\nurl = "x.tar.gz"\n'
                      '[cron]\ncrontab = "crontab -u pvw"\n')
    assert "crontab" in preflight.required_programs(pvwconfig.load(config))
    assert "systemctl" not in preflight.required_programs(pvwconfig.load(config))
    _set(config, "[deploy]\n", '[deploy]\nsupervisor = "systemd"\n')
    needed = preflight.required_programs(pvwconfig.load(config))
    assert "systemctl" in needed and "crontab" not in needed


# --- systemd: rendered units, install/uninstall, the launcher driven through systemctl

_FAKE_SYSTEMCTL = """#!{python}
# Stand-in for systemctl(1) (PID 1 is not systemd here): records its arguments in {calls},
# and starts/stops a unit's ExecStart (read from the unit file in {unit_dir}) as a detached process.
import os, shlex, signal, subprocess, sys, time
from pathlib import Path
calls, unit_dir, state = Path({calls!r}), Path({unit_dir!r}), Path({state!r})
args = sys.argv[1:]
with calls.open("a") as log:
    log.write(" ".join(args) + "\\n")
state.mkdir(exist_ok=True)
def pid_of(unit):
    try:
        pid = int((state / unit).read_text())
        stat = Path(f"/proc/{{pid}}/stat").read_text()
        return 0 if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid  # a zombie is dead
    except (OSError, ValueError, IndexError):
        return 0
def unit_value(unit, key):
    path, instance = unit_dir / unit, ""
    if not path.exists() and "@" in unit:  # an instance of a template unit, as systemd finds it
        prefix, rest = unit.split("@", 1)
        instance, suffix = rest.rsplit(".", 1)
        path = unit_dir / f"{{prefix}}@.{{suffix}}"
    for line in path.read_text().splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1:].replace("%i", instance).replace("%%", "%")
    return ""
verb, rest = args[0], [a for a in args[1:] if not a.startswith("--")]
if verb == "start":
    for unit in rest:
        if unit.endswith(".service") and not pid_of(unit):
            words = shlex.split(unit_value(unit, "ExecStart"))
            proc = subprocess.Popen(words, cwd=unit_value(unit, "WorkingDirectory") or "/", start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (state / unit).write_text(str(proc.pid))
elif verb in ("stop", "disable") :
    for unit in rest:
        pid = pid_of(unit) if ("--now" in args or verb == "stop") else 0
        if pid:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(200):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.05)
            (state / unit).unlink()
elif verb == "show":
    print(pid_of(rest[0]))
elif verb == "is-active":
    print("active" if pid_of(rest[0]) else "inactive")
    sys.exit(0 if pid_of(rest[0]) else 3)
"""


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    folder, unit_dir = tmp_path / "systemctl", tmp_path / "units"
    folder.mkdir()
    unit_dir.mkdir()
    calls = folder / "calls"
    program = folder / "systemctl"
    program.write_text(_FAKE_SYSTEMCTL.format(python=sys.executable, calls=str(calls), unit_dir=str(unit_dir),
                                              state=str(folder / "state")))
    program.chmod(0o755)
    env = {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}
    yield {"env": env, "calls": calls, "unit_dir": unit_dir}
    for pidfile in (folder / "state").glob("*"):
        try:
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _systemd_config(dep, unit_dir: Path) -> None:
    _set(dep["config"], "[deploy]\n", f'[deploy]\nsupervisor = "systemd"\nsystemd_unit_dir = "{unit_dir}"\n')


@needs_analyze
def test_rendered_units_pass_systemd_analyze_verify(dep, tmp_path):
    _systemd_config(dep, tmp_path / "units")
    _set(dep["config"], "[launcher]\n", '[cron]\nupdate = "30 2 * * 1-5"\n\n[launcher]\nuser = "daemon"\n')
    assert run_doit(dep["config"], "render_systemd").returncode == 0
    units = sorted((dep["root"] / "conf" / "systemd").iterdir())
    names = systemd.unit_names(systemd.instance_name(dep["root"]))
    assert [u.name for u in units] == sorted(names.values())
    launcher = (dep["root"] / "conf" / "systemd" / names["launcher"]).read_text()
    for line in ("Restart=on-failure", "User=daemon", "SupplementaryGroups=mappingfileusers",
                 "KillMode=control-group", "TimeoutStopSec=5s", f'ExecStart=/bin/sh "{dep["root"]}/bin/start.sh" %i'):
        assert line in launcher.splitlines()
    timer = (dep["root"] / "conf" / "systemd" / names["timer"]).read_text()
    assert "OnCalendar=Mon..Fri *-*-* 02:30:00" in timer and "Persistent=true" in timer
    assert "RandomizedDelaySec=5min" in timer
    watchdog = (dep["root"] / "conf" / "systemd" / names["watchdog"]).read_text()
    assert "Type=oneshot" in watchdog and f'"-m" "pvwtasks.watchdog" "{dep["config"]}"' in watchdog
    watchdog_timer = (dep["root"] / "conf" / "systemd" / names["watchdog_timer"]).read_text()
    assert "OnCalendar=*-*-* *:00/5:00" in watchdog_timer and f"Unit={names['watchdog']}" in watchdog_timer
    update = (dep["root"] / "conf" / "systemd" / names["update"]).read_text()
    assert "Type=oneshot" in update and f'"config={dep["config"]}"' in update
    # The launcher unit is a template: verify it as its two instances (the slots) too.
    instances = tmp_path / "instances"
    instances.mkdir()
    for slot in ("a", "b"):
        (instances / systemd.slot_unit(systemd.instance_name(dep["root"]), slot)).symlink_to(
            dep["root"] / "conf" / "systemd" / names["launcher"])
    proc = subprocess.run(["systemd-analyze", "verify", *map(str, units), *map(str, sorted(instances.iterdir()))],
                          capture_output=True, text=True, timeout=120)
    complaints = [line for line in proc.stderr.splitlines() if str(dep["root"]) in line or "pvw-" in line]
    assert proc.returncode == 0 and not complaints, proc.stderr
    # The exec of start.sh keeps the launcher the service's main process.
    start_sh = Path(systemd.__file__).parent / "templates" / "start.sh.j2"
    assert start_sh.read_text().rstrip().splitlines()[-1].startswith("exec ")


def test_install_systemd_runs_the_launcher_through_systemctl_and_uninstall_removes_it(dep, fake_systemctl):
    _systemd_config(dep, fake_systemctl["unit_dir"])
    env = fake_systemctl["env"]
    deploy(dep)  # the units are not installed yet: pvwtasks starts the launcher itself
    assert not fake_systemctl["calls"].exists()
    detached = pidfile_pid(dep["settings"])
    instance = systemd.instance_name(dep["root"])
    names = systemd.unit_names(instance)
    unit_a, unit_b = systemd.slot_unit(instance, "a"), systemd.slot_unit(instance, "b")
    assert names["launcher"] == f"pvw-launcher-{instance}@.service"

    done = run_doit(dep["config"], "install_systemd", env=env)
    assert done.returncode == 0, done.output
    assert sorted(p.name for p in fake_systemctl["unit_dir"].iterdir()) == sorted(names.values())
    calls = fake_systemctl["calls"].read_text().splitlines()
    timers = f"{names['timer']} {names['watchdog_timer']}"
    assert calls[:3] == ["daemon-reload", f"enable {unit_a} {timers}", f"start {timers}"]
    assert f"start {unit_a}" in calls and f"start {unit_b}" not in calls
    assert calls[-2:] == [f"enable {unit_a}", f"disable {unit_b}"]  # slot a is the one started at boot
    settings = pvwconfig.load(dep["config"])
    under_systemd = pidfile_pid(settings)
    assert under_systemd != detached and _gone(detached)
    assert open_session(settings)["id"] in settings.layout.proxy_file.read_text()

    status = run_doit(dep["config"], "status", env=env)
    assert f"supervisor   systemd: {unit_a} active (ok)" in status.output, status.output

    # systemd restarts a crashed launcher (Restart=on-failure): pvwtasks follows its new main PID.
    os.kill(under_systemd, signal.SIGKILL)
    wait_until(lambda: _gone(under_systemd), what="the launcher to die")
    subprocess.run(["systemctl", "start", unit_a], env=env, check=True)  # what systemd would do
    wait_until(lambda: processes.port_answers("127.0.0.1", settings.launcher.port), timeout=30,
               what="the restarted launcher to answer")
    status = run_doit(dep["config"], "status", env=env)
    assert status.returncode == 0, status.output
    assert pidfile_pid(settings) != under_systemd and not _gone(pidfile_pid(settings))

    restarted = run_doit(dep["config"], "restart_launcher", env=env)
    assert restarted.returncode == 0, restarted.output
    calls = fake_systemctl["calls"].read_text().splitlines()
    assert calls[-6:] == [f"stop {unit_a}", f"stop {unit_b}", f"start {unit_a}",
                          f"show --property=MainPID --value {unit_a}", f"enable {unit_a}", f"disable {unit_b}"]

    gone = run_doit(dep["config"], "uninstall_systemd", env=env)
    assert gone.returncode == 0, gone.output
    assert list(fake_systemctl["unit_dir"].iterdir()) == []
    calls = fake_systemctl["calls"].read_text().splitlines()
    assert f"disable --now {timers} {unit_a} {unit_b}" in calls and calls[-1] == "daemon-reload"
    last = pidfile_pid(settings)
    assert wait_until(lambda: _gone(last), what="the launcher to stop")


def test_an_upgrade_under_systemd_starts_the_other_slots_service_and_drains_the_old_one(dep, fake_systemctl):
    from pvwtasks import slots

    _systemd_config(dep, fake_systemctl["unit_dir"])
    env = fake_systemctl["env"]
    deploy(dep)
    assert run_doit(dep["config"], "install_systemd", env=env).returncode == 0
    instance = systemd.instance_name(dep["root"])
    unit_a, unit_b = systemd.slot_unit(instance, "a"), systemd.slot_unit(instance, "b")
    settings = pvwconfig.load(dep["config"])
    old_pid = pidfile_pid(settings)
    kept = open_session(settings)  # an open session on slot a: it must outlive the upgrade
    build_release(dep["server"].root, "5.13.1", name=dep["release"].name)  # upstream's next release
    first_calls = len(fake_systemctl["calls"].read_text().splitlines())

    done = run_doit(dep["config"], "update", env=env)
    assert done.returncode == 0, done.output
    calls = fake_systemctl["calls"].read_text().splitlines()[first_calls:]
    assert f"start {unit_b}" in calls and f"stop {unit_a}" not in calls
    switched = calls.index(f"enable {unit_b}")  # after slot b took over: a reboot brings back the active slot
    assert calls.index(f"start {unit_b}") < switched and calls[switched + 1] == f"disable {unit_a}"
    state = slots.state(settings)
    assert (state.active, state.draining) == ("b", "a")
    new_pid = pidfile_pid(settings)
    assert new_pid != old_pid and psutil.Process(new_pid).cmdline()[-1].endswith("launch-b.json")
    assert not _gone(old_pid) and kept["id"] in settings.layout.proxy_file.read_text()
    shown = run_doit(dep["config"], "status", env=env).output
    assert f"supervisor   systemd: {unit_b} active (ok)" in shown and "slot a     draining" in shown, shown

    # The old session ends: the next drain stops slot a through systemctl.
    assert requests.delete(f"http://127.0.0.1:{settings.launcher.port}/paraview/{kept['id']}", timeout=30).ok
    wait_until(lambda: not slots.live_sessions(settings), timeout=30, what="the old session to end")
    drained = run_doit(dep["config"], "drain", env=env)
    assert drained.returncode == 0, drained.output
    assert f"stop {unit_a}" in fake_systemctl["calls"].read_text().splitlines()
    assert wait_until(lambda: _gone(old_pid), what="slot a to stop")
    assert slots.state(settings).draining is None and not _gone(new_pid)


def test_systemctl_missing_is_one_line(dep, tmp_path):
    _systemd_config(dep, tmp_path / "units")
    (tmp_path / "units").mkdir()
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + ":/nonexistent"}
    done = run_doit(dep["config"], "uninstall_systemd", env=env)
    assert done.returncode == 0  # nothing installed: nothing to do
    (tmp_path / "units" / systemd.unit_names(systemd.instance_name(dep["root"]))["timer"]).write_text("")
    done = run_doit(dep["config"], "uninstall_systemd", env=env)
    assert done.returncode != 0 and "systemctl not found" in done.output


# --- the service account


def test_launcher_as_root_is_refused_unless_allowed(dep):
    _set(dep["config"], "allow_root = true", "allow_root = false")
    if os.geteuid() != 0:
        pytest.skip("only root is refused")
    done = run_doit(dep["config"], "update")
    assert done.returncode != 0
    assert ("refusing to run the launcher as root: set [launcher] user to a service account "
            "(or allow_root = true)") in done.output
    assert not (dep["root"] / "logs" / "launcher.pid").exists()


@pytest.fixture
def service_account():
    name = f"pvwtest-{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    yield pwd.getpwnam(name)
    subprocess.run(["userdel", name], check=False)


@pytest.fixture
def open_folder():
    """A deployment folder the service account can reach (pytest's tmp folders are root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="pvw-account-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    stop_deployment_processes(folder / "a" / "root")
    shutil.rmtree(folder, ignore_errors=True)


@needs_root
def test_launcher_and_sessions_run_as_the_service_account(http_server, service_account, open_folder):
    # The launcher's Python must be reachable by the account (this venv lives under /root): a venv
    # from the system Python with wslink, run by a stand-in 5.12 release's bundled pvpython.
    venv = open_folder / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "wslink"], check=True, timeout=600,
                   capture_output=True)
    release = build_release(http_server.root, version="5.12.1", family="5.12", python=str(venv / "bin" / "python"))
    made = make_deployment(open_folder / "a", http_server.url(release.name),
                           extra=f'user = "{service_account.pw_name}"')
    _set(made["config"], "allow_root = true", "allow_root = false")
    deploy(made)
    settings = made["settings"]
    launcher = psutil.Process(pidfile_pid(settings))
    assert launcher.uids().real == service_account.pw_uid
    status_lines = Path(f"/proc/{launcher.pid}/status").read_text().splitlines()
    groups = next(line.split()[1:] for line in status_lines if line.startswith("Groups:"))
    assert str(grp.getgrnam(settings.launcher.proxy_group).gr_gid) in groups
    session = open_session(settings, app="visualizer")
    children = launcher.children(recursive=True)
    assert children and all(child.uids().real == service_account.pw_uid for child in children)
    assert session["id"] in settings.layout.proxy_file.read_text()  # written by the account through its group
    log = settings.layout.session_logs / f"{session['id']}.txt"
    assert wait_until(log.exists, what="the session log") and log.stat().st_uid == service_account.pw_uid
    assert run_doit(made["config"], "status").returncode == 0
