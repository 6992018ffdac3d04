"""Property: a `doit update` SIGKILLed at any moment of a real upgrade never blocks the next run.

One deployment is upgraded again and again (three stand-in builds served in
turn at the same URL by a throttled loopback server).  Each upgrade is
SIGKILLed at a random moment of one phase: mid-download (at a random share
of the bytes), around verification, mid-install, or around the switch.  A
normal `doit update` follows and must succeed with the new build live.

The seed is random and printed; PVW_KILL_SEED=<n> replays a failing sequence.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import build_release, write_config
from support.doit import run_doit as doit
from support.doit import start_doit
from unattended_support import SlowServer, doit_killed_at, live_name
from pvwtasks.layout import Layout, SlotsRecord

KILLS = 20
DEPLOYMENTS = 5

# Where a run can be SIGKILLed just before an audit event, per phase: (event, needle, possible counts).
# os.replace audits as "os.rename"; the arguments are joined with spaces.
POINTS = {
    "verify": [("os.rename", ".tar.gz.part ", (1,)),  # before the verified .part is published
               ("os.rename", "/verified.json", (1,))],  # published, verified.json not written yet
    "install": [("os.rename", "/.incoming-", (2, 3)),  # staged tree -> incoming, incoming -> versions/<name>
                ("os.rename", "/versions/ParaView-", (1, 2))],  # the tree into place, then its record
    "switch": [("os.rename", "/autodeploy/paraview ", (1,)),
               ("os.rename", "/autodeploy/installed.json ", (1,)),
               ("os.rename", "/www/hash.json ", (1,))],
}
PHASES = ["download", "verify", "install", "switch"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_mid_download(config: Path, root: Path, size: int, share: float, log_dir: Path) -> int:
    proc = start_doit(config, "update", log_dir=log_dir)
    deadline = time.monotonic() + 30
    downloads = root / "autodeploy" / "downloads"
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(downloads.glob("*.part")) if downloads.is_dir() else []
        part = parts[0] if parts else None
        try:
            if part is not None and part.stat().st_size >= share * size:
                break
        except OSError:
            pass
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(30)


def _upgrades(work: Path, kills: int, offset: int, rng: random.Random, seed: int, cleanup: list) -> dict:
    """One deployment upgraded ``kills`` times, each upgrade SIGKILLed once and then rerun normally."""
    builds = work / "builds"
    releases = [build_release(builds / str(n), f"5.13.{n}", filler_files=150, filler_bytes=1_200_000, seed=n)
                for n in (1, 2, 3)]
    name = releases[0].name
    server = SlowServer(work / "served", chunk=16 * 1024, delay=0.02).start()  # about 0.8 MB/s while slow
    try:
        served = server.root / name
        first = build_release(server.root, "5.13.0", name=name)
        root = work / "root"
        config = write_config(work / "pvw.toml", server.url(name), root)
        cleanup.append(config)
        server.slow.clear()
        assert doit(config, "update").returncode == 0
        assert live_name(root).endswith(_sha(first)[:12])
        done = {phase: 0 for phase in PHASES}
        for number in range(kills):
            release = releases[number % len(releases)]
            shutil.copyfile(release, served.with_name(".incoming"))
            os.replace(served.with_name(".incoming"), served)
            os.utime(served, (1e9 + number, 1e9 + number))  # a new Last-Modified too
            phase = PHASES[(number + offset) % len(PHASES)]
            if phase == "download":
                share = rng.uniform(0.05, 0.95)
                where = f"download at {share:.0%}"
                server.slow.set()  # throttled only while a kill must land mid-transfer
                code = _kill_mid_download(config, root, served.stat().st_size, share, work)
                server.slow.clear()
            else:
                event, needle, counts = rng.choice(POINTS[phase])
                count = rng.choice(counts)
                where = f"{phase}: before {event} #{count} of {needle!r}"
                code = doit_killed_at(config, event, needle, count).returncode
            assert code == -signal.SIGKILL, f"kill {number} ({where}) did not happen: exit {code}"
            done[phase] += 1

            rerun = doit(config, "update")

            assert rerun.returncode == 0, f"kill {number} ({where}), seed {seed}:\n{rerun.output}"
            sha = _sha(release)
            live = live_name(root)
            assert live and live.endswith(sha[:12]), f"kill {number} ({where}): {live} live"
            assert json.loads((root / "www" / "hash.json").read_text())["sha256"] == sha
            assert json.loads((root / "autodeploy" / "installed.json").read_text())["sha256"] == sha
            assert (root / "autodeploy" / "versions" / live / "bin" / "pvpython").is_file()
            assert not list((root / "autodeploy" / "downloads").glob("*.part"))
            active = SlotsRecord.load(Layout(root).slots_record)  # the slot taking new sessions
            launcher = json.loads(Layout(root).for_slot(active.active if active else "a").launcher_record.read_text())
            assert launcher["release"] == live and os.path.exists(f"/proc/{launcher['pid']}")
        return done
    finally:
        server.slow.clear()
        server.stop()


def test_sigkill_at_random_moments_of_an_upgrade_never_blocks_the_next_run(tmp_path, cleanup):
    seed = int(os.environ.get("PVW_KILL_SEED", random.randrange(1 << 30)))
    print(f"PVW_KILL_SEED={seed}")
    started = time.monotonic()
    # Five deployments side by side (a run mostly waits on its launcher), a fifth of the kills each,
    # each starting its round of phases at another one.
    with ThreadPoolExecutor(DEPLOYMENTS) as pool:
        futures = [pool.submit(_upgrades, tmp_path / f"d{n}", KILLS // DEPLOYMENTS, n, random.Random(seed + n), seed,
                               cleanup) for n in range(DEPLOYMENTS)]
        counts = [future.result() for future in futures]
    done = {phase: sum(c[phase] for c in counts) for phase in PHASES}
    print(f"{KILLS} kills in {time.monotonic() - started:.1f} s: {done}")
    assert sum(done.values()) == KILLS and min(done.values()) >= KILLS // len(PHASES), done
