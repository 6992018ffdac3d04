"""Unattended operation: update.log, the run lock, kill -9 at each stage, disk full, bad config, exit codes.

Every test drives real `doit update` processes against loopback servers;
kills are real SIGKILLs, full disks are real small filesystems.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import build_release, stop_deployment_processes, write_config
from pvwtasks import preflight
from pvwtasks.config import load
from pvwtasks.layout import Layout, SlotsRecord
from support.doit import doit_cmd, output_of, run_doit, start_doit
from support.waiting import wait_until
from unattended_support import (MailServer, Mounts, SlowServer, doit_killed_at, doit_without, live_name, notify_toml,
                                tree_snapshot)

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} pvwtasks\[(\d+)\] (.*)$")
TASK_LINE = re.compile(r"^(\.  |-- )(\S+)$")


# -- fixtures --------------------------------------------------------------------


@pytest.fixture
def slow_server(tmp_path):
    folder = tmp_path / "slow-served"
    folder.mkdir()
    server = SlowServer(folder).start()
    yield server
    server.slow.clear()
    server.stop()


@pytest.fixture
def mail():
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture
def mounts():
    mounted = Mounts()
    yield mounted
    mounted.unmount_all()


def _config(tmp_path: Path, url: str, cleanup: list, root: Path | None = None, notify: str = "", **kwargs) -> Path:
    config = write_config(tmp_path / "pvw.toml", url, root or tmp_path / "root", extra=notify, **kwargs)
    cleanup.append(config)
    return config


def _log_lines(root: Path) -> list[tuple[int, str]]:
    text = (root / "logs" / "autodeploy" / "update.log").read_text()
    lines = []
    for line in text.splitlines():
        match = LINE.match(line)
        assert match, f"malformed update.log line: {line!r}"
        lines.append((int(match.group(1)), match.group(2)))
    return lines


def _runs(root: Path) -> list[list[str]]:
    """update.log split into runs: the messages of each, in order."""
    runs: dict[int, list[str]] = {}
    for pid, message in _log_lines(root):
        runs.setdefault(pid, []).append(message)
    return list(runs.values())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _published_sha(root: Path) -> str | None:
    data = json.loads((root / "www" / "hash.json").read_text())
    return data["sha256"]


def _incoming(root: Path) -> list[Path]:
    return sorted((root / "autodeploy" / "versions").glob(".incoming-*"))


def _assert_dep_file_sound(root: Path) -> None:
    dep = root / ".pvwtasks" / "doit-deps.sqlite3"
    assert dep.read_bytes()[:16] == b"SQLite format 3\x00"
    with sqlite3.connect(dep) as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        assert conn.execute("select count(*) from doit").fetchone()[0] > 0


def _assert_fully_updated(root: Path, archive: Path, version: str) -> None:
    """The state a finished `doit update` of ``archive`` leaves."""
    sha = _sha(archive)
    live = live_name(root)
    assert live and live.endswith(sha[:12]) and version in live
    assert _published_sha(root) == sha
    installed = json.loads((root / "autodeploy" / "installed.json").read_text())
    assert installed["sha256"] == sha
    assert _incoming(root) == []
    assert list((root / "autodeploy" / "downloads").glob("*.part")) == []


# -- logs ------------------------------------------------------------------------


def test_update_log_has_a_start_line_a_line_per_task_and_an_end_line(tmp_path, http_server, cleanup):
    release = build_release(http_server.root)
    config = _config(tmp_path, http_server.url(release.name), cleanup)
    root = tmp_path / "root"

    first = run_doit(config, "update")
    second = run_doit(config, "update")
    http_server.faults.errors[f"/{release.name}"] = [404] * 5
    build_release(http_server.root, "5.13.1", name=release.name)
    third = run_doit(config, "update")

    assert (first.returncode, second.returncode, third.returncode) == (0, 0, 1)
    runs = _runs(root)
    assert len(runs) == 3
    for run, out in zip(runs, (first, second, third)):
        assert run[0].startswith(f"start: doit update config={config} (pvwtasks ")
        shown = [(m.group(1), m.group(2)) for m in map(TASK_LINE.match, out.stdout.splitlines()) if m]
        logged = [line for line in run[1:-1] if not line.startswith("failed ")]
        assert logged == [("run " if mark == ".  " else "up-to-date ") + name for mark, name in shown]
        assert re.fullmatch(r"end: (ok|failed) in \d+\.\d s", run[-1])
    assert "run download" in runs[0] and "end: ok" in runs[0][-1]
    assert {"up-to-date download", "up-to-date verify", "up-to-date install", "run compare_hash"} <= set(runs[1])
    assert runs[1][-1].startswith("end: ok")
    assert runs[2][-2].startswith("failed download: ") and "HTTP 404" in runs[2][-2]
    assert runs[2][-1].startswith("end: failed")


def test_cron_style_run_appending_to_update_log_writes_each_line_once(tmp_path, http_server, cleanup):
    release = build_release(http_server.root)
    config = _config(tmp_path, http_server.url(release.name), cleanup)
    root = tmp_path / "root"
    log = root / "logs" / "autodeploy" / "update.log"
    log.parent.mkdir(parents=True)

    def cron_run() -> int:  # what the crontab line does: >> update.log 2>&1
        with open(log, "ab") as out:
            return subprocess.run(doit_cmd(config, "update"), stdout=out, stderr=subprocess.STDOUT,
                                  cwd=tmp_path, timeout=180).returncode

    assert cron_run() == 0
    http_server.faults.errors[f"/{release.name}"] = [404] * 5
    build_release(http_server.root, "5.13.1", name=release.name)
    assert cron_run() == 1

    text = log.read_text()
    assert text.count("] run download\n") == 2  # once per run, not echoed again by the console reporter
    assert "\n.  download" not in text and "\n-- " not in text
    assert text.count("] failed download: ") == 1
    assert text.count("ERROR: download: ") == 1  # the one-line error of the failed run
    assert [line for line in text.splitlines() if "] end: " in line][-1].split("] ")[1].startswith("end: failed")


def test_credentials_in_the_source_url_never_reach_logs_output_mail_or_www(tmp_path, http_server, mail, cleanup):
    release = build_release(http_server.root)
    url = http_server.url(release.name).replace("http://", "http://pvwuser:secretZq81@")
    config = _config(tmp_path, url, cleanup, notify=notify_toml(mail.port, on_success=True))
    root = tmp_path / "root"

    ok = run_doit(config, "update")
    assert ok.returncode == 0, ok.output
    assert http_server.gets(release.name)[0].get("Authorization", "").startswith("Basic ")  # they were used
    build_release(http_server.root, "5.13.1", name=release.name)
    http_server.faults.errors[f"/{release.name}"] = [500] * 40
    failed = run_doit(config, "update")
    assert failed.returncode == 1

    mails = mail.wait_for(2)
    assert len(mails) == 2
    failure = mails[1].body
    assert f"http://***@127.0.0.1:{http_server.port}/{release.name}" in failure  # named, but redacted
    exposed = {"update.log": (root / "logs" / "autodeploy" / "update.log").read_text(),
               "first run output": ok.output, "failed run output": failed.output,
               **{f"mail {n}": f"{m.subject}\n{m.body}\n{m.raw.decode()}" for n, m in enumerate(mails)},
               **{f"www/{p.name}": p.read_text() for p in (root / "www").iterdir() if p.is_file()},
               "last-run.json": (root / ".pvwtasks" / "last-run.json").read_text()}
    for name, text in exposed.items():
        # The landing page explains the launcher's session "secret": there, look for the password itself.
        assert ("secretZq81" if name.startswith("www/") else "secret") not in text, name


# -- one run at a time -------------------------------------------------------------


def _big_release(folder: Path, version: str, name: str | None = None) -> Path:
    return build_release(folder, version, name=name, filler_files=8, filler_bytes=8_000_000)


def _wait_for_part(root: Path, proc, total: int) -> Path:
    downloads = root / "autodeploy" / "downloads"

    def partial() -> bool:
        assert proc.poll() is None, f"doit update ended before the test could interrupt it:\n{output_of(proc)}"
        return any(0 < p.stat().st_size < total for p in downloads.glob("*.part"))

    wait_until(partial, timeout=60, what="a partial download")
    return next(downloads.glob("*.part"))


def test_second_update_exits_at_once_naming_the_pid_holding_the_lock(tmp_path, slow_server, cleanup):
    release = _big_release(slow_server.root, "5.13.0")
    config = _config(tmp_path, slow_server.url(release.name), cleanup)
    root = tmp_path / "root"
    first = start_doit(config, "update", log_dir=tmp_path)
    try:
        _wait_for_part(root, first, release.stat().st_size)

        second = run_doit(config, "update", timeout=30)

        assert second.returncode == 1
        assert second.seconds < 10
        (line,) = second.error_lines()
        assert line.startswith(f"ERROR: lock: another pvwtasks run holds {root}/.pvwtasks/update.lock (PID {first.pid} ")
        assert first.poll() is None  # the first run goes on
        for _ in range(3):  # read-only tasks take no lock and share the dep file meanwhile
            assert run_doit(config, "status", timeout=60).returncode in (0, 1)
    finally:
        slow_server.slow.clear()
        assert first.wait(120) == 0, output_of(first)
    last = json.loads((root / ".pvwtasks" / "last-run.json").read_text())
    assert last["result"] == "ok" and "download" in last["ran"]  # not overwritten by the refused run
    _assert_fully_updated(root, release, "5.13.0")
    runs = _runs(root)
    refused = next(r for r in runs if any(m.startswith("failed lock") for m in r))
    assert refused[-1].startswith("end: failed")
    _assert_dep_file_sound(root)
    assert {"-- download", "-- verify", "-- install"} <= set(run_doit(config, "update").stdout.splitlines())


def test_concurrent_updates_leave_one_winner_and_a_sound_dep_file(tmp_path, slow_server, cleanup):
    release = _big_release(slow_server.root, "5.13.0")
    config = _config(tmp_path, slow_server.url(release.name), cleanup)
    root = tmp_path / "root"
    slow_server.delay = 0.05  # ~4 s of download: all three are up before the first one finishes
    procs = [start_doit(config, "update", log_dir=tmp_path) for _ in range(3)]
    codes = [proc.wait(180) for proc in procs]

    assert sorted(codes) == [0, 1, 1], [output_of(p) for p in procs]
    for proc, code in zip(procs, codes):
        if code:
            assert "ERROR: lock: another pvwtasks run holds" in output_of(proc)
    _assert_dep_file_sound(root)
    _assert_fully_updated(root, release, "5.13.0")
    again = run_doit(config, "update")
    assert again.returncode == 0
    assert {"-- download", "-- verify", "-- install", "-- publish_hash"} <= set(again.stdout.splitlines())


# -- kill -9 at each stage -----------------------------------------------------------


def test_kill_9_mid_download_keeps_the_old_version_live_and_the_rerun_resumes(tmp_path, slow_server, cleanup):
    old = build_release(slow_server.root, "5.13.0")
    config = _config(tmp_path, slow_server.url(old.name), cleanup)
    root = tmp_path / "root"
    slow_server.slow.clear()
    assert run_doit(config, "update").returncode == 0
    old_live, old_sha = live_name(root), _sha(old)
    new = _big_release(slow_server.root, "5.13.1", name=old.name)  # upstream rebuilt the same URL
    slow_server.slow.set()
    proc = start_doit(config, "update", log_dir=tmp_path)
    part = _wait_for_part(root, proc, new.stat().st_size)

    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL

    have = part.stat().st_size
    assert 0 < have < new.stat().st_size
    assert live_name(root) == old_live and _published_sha(root) == old_sha
    assert f"PID {proc.pid} " in (root / ".pvwtasks" / "update.lock").read_text()  # the dead run's lock
    slow_server.slow.clear()
    rerun = run_doit(config, "update")

    assert rerun.returncode == 0, rerun.output
    assert slow_server.ranges(old.name)[-1] == f"bytes={have}-"  # resumed, not restarted
    _assert_fully_updated(root, new, "5.13.1")
    assert (root / "autodeploy" / "versions" / old_live).is_dir()  # kept for rollback


# Where a run is SIGKILLed, as (audit event, needle in its arguments, occurrence): see unattended_support.
STAGES = {
    # just before the 200th file of the new tree is created in versions/.incoming-*
    "mid-extract": ("open", "/.incoming-", 200),
    # the new tree is complete, the live symlink has not moved yet
    "mid-switch, before the symlink moves": ("os.rename", "/autodeploy/paraview ", 1),
    # the live symlink moved, installed.json and hash.json are still the old ones
    "mid-switch, after the symlink moved": ("os.rename", "/autodeploy/installed.json ", 1),
    # the old launcher serves on, the new one (slot b, beside it) not spawned yet
    "mid-upgrade, new launcher not spawned": ("subprocess.Popen", "/bin/start-b.sh", 1),
    # the new launcher is spawned, before it is health-checked and recorded
    "mid-upgrade, new launcher spawned": ("os.rename", "/logs/launcher-b.pid ", 1),
}
def _killed_at(stage: str, tmp_path: Path, http_server, cleanup: list) -> dict:
    """Install 5.13.0, serve a large-ish 5.13.1 at the same URL, SIGKILL `doit update` at ``stage``."""
    old = build_release(http_server.root, "5.13.0")
    config = _config(tmp_path, http_server.url(old.name), cleanup)
    root = tmp_path / "root"
    assert run_doit(config, "update").returncode == 0
    before = {"live": live_name(root), "sha": _sha(old), "launcher": _launcher_pid(root)}
    new = build_release(http_server.root, "5.13.1", name=old.name, filler_files=400, filler_bytes=4_000_000)
    killed = doit_killed_at(config, *STAGES[stage])
    assert killed.returncode == -signal.SIGKILL, f"not killed at {stage}:\n{killed.output}"
    return {"config": config, "root": root, "old": before, "new": new, "url": old.name}


def _active(root: Path) -> Layout:
    """The layout of the launcher slot taking new sessions (after an upgrade, the other slot)."""
    record = SlotsRecord.load(Layout(root).slots_record)
    return Layout(root).for_slot(record.active if record else "a")


def _launcher_pid(root: Path) -> int | None:
    try:
        return int(_active(root).pid_file.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_leaves_a_whole_version_live(tmp_path, http_server, cleanup, stage):
    state = _killed_at(stage, tmp_path, http_server, cleanup)
    root, old = state["root"], state["old"]

    live = live_name(root)
    switched = stage.startswith("mid-upgrade") or stage.endswith("after the symlink moved")
    assert (live != old["live"]) is switched
    assert live.endswith(_sha(state["new"])[:12] if switched else old["sha"][:12])
    assert (root / "autodeploy" / "versions" / live / "bin" / "pvpython").is_file()  # never a half tree
    assert _published_sha(root) == (_sha(state["new"]) if stage.startswith("mid-upgrade") else old["sha"])
    partial = _incoming(root)
    if stage == "mid-extract":
        (tree,) = partial
        assert 150 < sum(len(files) for _, _, files in os.walk(tree)) < 400
    else:
        assert partial == []


@pytest.mark.parametrize("stage", list(STAGES))
def test_update_after_kill_9_finishes_correctly(tmp_path, http_server, cleanup, stage):
    state = _killed_at(stage, tmp_path, http_server, cleanup)
    root, config = state["root"], state["config"]
    downloaded = (root / "autodeploy" / "downloads" / "verified.json").read_text().count(_sha(state["new"])) > 0
    gets = len(http_server.gets(state["url"]))

    rerun = run_doit(config, "update")

    assert rerun.returncode == 0, rerun.output
    _assert_fully_updated(root, state["new"], "5.13.1")  # partial extraction discarded, new version live
    if downloaded:
        assert len(http_server.gets(state["url"])) == gets  # the verified download was kept, not fetched again
    assert (root / "autodeploy" / "versions" / state["old"]["live"]).is_dir()  # kept for rollback
    record = json.loads(_active(root).launcher_record.read_text())
    pid = _launcher_pid(root)
    assert record["release"] == live_name(root) and record["pid"] == pid != state["old"]["launcher"]
    assert os.path.exists(f"/proc/{pid}")
    again = run_doit(config, "update")
    assert again.returncode == 0
    assert ".  launcher" not in again.stdout.splitlines()  # running as deployed: left alone


# -- disk full ----------------------------------------------------------------------


def _df_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_disk_full_during_download_cleans_up_and_keeps_the_live_version(tmp_path, http_server, mounts, cleanup):
    root = mounts.tmpfs(tmp_path / "root", "3m")
    old = build_release(http_server.root, "5.13.0")
    config = _config(tmp_path, http_server.url(old.name), cleanup, root=root)
    assert run_doit(config, "update").returncode == 0
    old_live, old_sha, free_before = live_name(root), _sha(old), _df_free(root)
    new = _big_release(http_server.root, "5.13.1", name=old.name)  # 4.7 MB: cannot fit
    assert new.stat().st_size > 3 << 20

    run = run_doit(config, "update")

    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith("ERROR: download: ") and "No space left on device" in line, line
    assert list((root / "autodeploy" / "downloads").glob("*.part*")) == []
    assert _df_free(root) >= free_before - (256 << 10)  # the partial file is gone
    assert live_name(root) == old_live and _published_sha(root) == old_sha
    mounts.remount(root, "size=64m")  # the admin frees space
    rerun = run_doit(config, "update")
    assert rerun.returncode == 0, rerun.output
    _assert_fully_updated(root, new, "5.13.1")


def test_disk_full_during_extraction_cleans_up_and_keeps_the_live_version(tmp_path, http_server, mounts, cleanup):
    root = mounts.tmpfs(tmp_path / "root", "8m")
    old = build_release(http_server.root, "5.13.0")
    config = _config(tmp_path, http_server.url(old.name), cleanup, root=root)
    assert run_doit(config, "update").returncode == 0
    old_live, old_sha = live_name(root), _sha(old)
    new = _big_release(http_server.root, "5.13.1", name=old.name)  # 4.7 MB archive, 7.9 MB extracted

    run = run_doit(config, "update")

    assert run.returncode == 1
    (line,) = run.error_lines()
    # The tree is unpacked while the archive downloads (and again by install if that fell behind),
    # so the disk fills in whichever step writes last.
    assert re.match(r"ERROR: (download|install): ", line) and "No space left on device" in line, line
    assert _incoming(root) == []
    assert list((root / "autodeploy" / "downloads").glob("*.part*")) == []
    assert sorted(p.name for p in (root / "autodeploy" / "versions").iterdir() if p.is_dir()) == [old_live]
    assert live_name(root) == old_live and _published_sha(root) == old_sha
    mounts.remount(root, "size=64m")
    rerun = run_doit(config, "update")
    assert rerun.returncode == 0, rerun.output
    _assert_fully_updated(root, new, "5.13.1")


# -- config and environment errors -----------------------------------------------------


BAD_CONFIGS = {
    "missing key": (lambda text, root: text.replace(f'root = "{root}"\n', ""), "[deploy] root: missing required key"),
    "misspelled key": (lambda text, root: text.replace("keep = 2", "kepe = 2"),
                       "[deploy] kepe: unknown key (did you mean 'keep'?)"),
    "wrong type": (lambda text, root: text.replace("keep = 2", 'keep = "two"'), "[deploy] keep: expected int"),
    "unknown section": (lambda text, root: text + "\n[deploi]\nroot = \"/tmp\"\n",
                        "[deploi]: unknown section (did you mean 'deploy'?)"),
    "bad value in [notify]": (lambda text, root: text.replace('security = "none"', 'security = "ssl"'),
                              "[notify] security: expected 'none', 'starttls' or 'tls'"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_gives_one_line_nonzero_a_failure_mail_and_touches_nothing(tmp_path, http_server, mail, cleanup,
                                                                              case):
    release = build_release(http_server.root)
    config = _config(tmp_path, http_server.url(release.name), cleanup, notify=notify_toml(mail.port,
                                                                                          on_unchanged=False))
    root = tmp_path / "root"
    assert run_doit(config, "update").returncode == 0
    good = config.read_text()
    breaker, expected = BAD_CONFIGS[case]
    config.write_text(breaker(good, root))
    before = tree_snapshot(root)

    run = run_doit(config, "update")

    assert run.returncode == 3
    (line,) = run.output.strip().splitlines()
    assert line.startswith(f"ERROR: {config}: {expected}"), line
    assert tree_snapshot(root) == before
    if case == "bad value in [notify]":
        assert mail.wait_for(1, timeout=1) == []  # the mail settings themselves are unusable
    else:
        (received,) = mail.wait_for(1)
        assert "FAILED" in received.subject and "config" in received.subject
        assert expected in received.body and str(config) in received.body
    config.write_text(good)
    assert run_doit(config, "update").returncode == 0  # fixed: back to normal


def test_bad_config_for_list_or_status_sends_no_mail(tmp_path, mail, cleanup):
    config = _config(tmp_path, "http://127.0.0.1:9/x.tar.gz", cleanup, notify=notify_toml(mail.port))
    config.write_text(config.read_text().replace("keep = 2", "kepe = 2"))
    assert run_doit(config, "list").returncode == 3
    assert run_doit(config, "status").returncode == 1  # it runs with what the config says, and fails (issue 13)
    assert mail.wait_for(1, timeout=1) == []


def test_unwritable_root_gives_one_line_nonzero_and_a_failure_mail(tmp_path, http_server, mail, mounts, cleanup):
    root = mounts.tmpfs(tmp_path / "root", "16m")
    release = build_release(http_server.root)
    config = _config(tmp_path, http_server.url(release.name), cleanup, root=root,
                     notify=notify_toml(mail.port, on_unchanged=False))
    assert run_doit(config, "update").returncode == 0
    live = live_name(root)
    assert run_doit(config, "stop_launcher").returncode == 0  # its open log files would keep the mount busy
    stop_deployment_processes(root)
    mounts.remount(root, "ro")  # e.g. the kernel remounted the disk read-only after errors

    run = run_doit(config, "update")

    assert run.returncode == 3
    assert run.output.strip().splitlines() == [f"ERROR: {config}: [deploy] root: cannot write {root}/.pvwtasks: "
                                               "Read-only file system"]
    (received,) = mail.wait_for(1)
    assert f"cannot write {root}/.pvwtasks" in received.body
    assert f"Live version (still serving): {live}" in received.body
    mounts.remount(root, "rw")


def test_missing_root_parent_on_a_read_only_filesystem(tmp_path, mail, mounts, cleanup):
    readonly = mounts.tmpfs(tmp_path / "ro", "1m", read_only=True)
    config = _config(tmp_path, "http://127.0.0.1:9/x.tar.gz", cleanup, root=readonly / "root",
                     notify=notify_toml(mail.port))

    run = run_doit(config, "update")

    assert run.returncode == 3
    assert run.output.strip().splitlines() == [f"ERROR: {config}: [deploy] root: cannot write "
                                               f"{readonly}/root/.pvwtasks: Read-only file system"]
    (received,) = mail.wait_for(1)
    assert "Read-only file system" in received.body


@pytest.mark.parametrize("program", ["apache2", "logrotate"])
def test_missing_program_gives_one_line_nonzero_and_a_failure_mail(tmp_path, http_server, mail, cleanup, program):
    release = build_release(http_server.root)
    config = _config(tmp_path, http_server.url(release.name), cleanup, notify=notify_toml(mail.port))

    run = doit_without(config, [program], tmp_path / "hide", "update")

    assert run.returncode == 3, run.output
    assert run.output.strip().splitlines() == [
        f"ERROR: {config}: {program} not found ({preflight.required_programs(load(config))[program]}); "
        "install the package or fix the config"]
    assert not (tmp_path / "root").exists()  # checked before anything is touched
    (received,) = mail.wait_for(1)
    assert "FAILED" in received.subject
    assert f"{program} not found" in received.body.lower()


def test_missing_configured_apachectl_is_named_and_only_update_checks_it(tmp_path, mail, cleanup):
    config = _config(tmp_path, "http://127.0.0.1:9/x.tar.gz", cleanup,
                     notify=notify_toml(mail.port) + '\n[web]\napachectl = "/opt/no-apache/bin/apachectl"\n')

    run = run_doit(config, "update")

    assert run.returncode == 3
    assert run.error_lines() == [f"ERROR: {config}: /opt/no-apache/bin/apachectl not found (needed by [web] "
                                 "apachectl); install the package or fix the config"]
    assert len(mail.wait_for(1)) == 1
    assert run_doit(config, "list").returncode == 0  # other commands do not need Apache
    assert len(mail.wait_for(2, timeout=1)) == 1


# -- exit codes ---------------------------------------------------------------------------


def test_exit_codes_are_0_for_success_and_unchanged_and_nonzero_for_failure(tmp_path, http_server, cleanup):
    release = build_release(http_server.root)
    config = _config(tmp_path, http_server.url(release.name), cleanup)
    root = tmp_path / "root"

    assert run_doit(config, "update").returncode == 0  # installed
    unchanged = run_doit(config, "update")
    assert unchanged.returncode == 0  # nothing new upstream is not a failure
    assert json.loads((root / ".pvwtasks" / "compare.json").read_text())["result"] == "unchanged"
    http_server.faults.errors[f"/{release.name}"] = [404] * 10
    assert run_doit(config, "update").returncode == 1
    config.write_text(config.read_text() + "\n[bogus]\n")
    assert run_doit(config, "update").returncode == 3


def test_demo_config_runs_without_apache_when_programs_are_not_required(tmp_path, http_server, cleanup):
    release = build_release(http_server.root)
    config = _config(tmp_path, http_server.url(release.name), cleanup)
    config.write_text(config.read_text().replace("[deploy]\n", "[deploy]\nrequire_programs = false\n", 1))

    run = doit_without(config, ["apache2", "logrotate"], tmp_path / "hide", "update")

    assert run.returncode == 0, run.output
    assert (tmp_path / "root" / "conf" / "pvw-vhost.conf").is_file()
