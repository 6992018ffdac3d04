"""Benchmark 3: restart downtime of the launcher, stopped and started with a new release.

Since issue 14 ``doit update`` starts a new release beside the running
launcher (bench_upgrade.py compares the two); what is
measured here is the stop-and-start it did before, and that
``doit restart_launcher`` still does: install, render, restart.

A stand-in release is deployed with ``doit update`` (the launcher starts).
For each run, a new stand-in version is served, and while ``doit install``
installs it and ``doit restart_launcher`` restarts, a few staggered clients keep POSTing
sessions (``{"application": APP}``) to the launcher.  A watcher records the
launcher's PID over time, so each successful POST is attributed to the old
or the new launcher.

Downtime = completion of the last successful POST answered by the old
launcher -> completion of the first successful POST answered by the new one
(the issue's definition; it includes the new POST's own ~1 s, since the
launcher polls the app's output once a second).  The start-to-start gap is
reported too.

Target (issue 6): median downtime <= 2.5 s with the demo app.

    .venv/bin/python bench/bench_restart.py             # 5 restarts
    .venv/bin/python bench/bench_restart.py --runs 7 --clients 3
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import common
from bench_noop import launcher_pids, stop_deployment


@dataclass
class Post:
    started: float
    ended: float
    ok: bool


def _launcher_pid(root: Path) -> int | None:
    import psutil

    for pid in launcher_pids(root):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if "wslink.launcher" in cmd or "launcher.py" in cmd:
            return pid
    return None


class Watcher:
    """Polls the launcher PID under ``root`` every 20 ms: [(time, pid or None), ...] on each change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.changes: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last: object = object()
        while not self._stop.is_set():
            pid = _launcher_pid(self.root)
            if pid != last:
                self.changes.append((time.monotonic(), pid))
                last = pid
            self._stop.wait(0.02)

    def pid_at(self, when: float) -> int | None:
        current = None
        for at, pid in self.changes:
            if at > when:
                break
            current = pid
        return current

    def __enter__(self) -> "Watcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Clients:
    """``count`` threads POSTing sessions back to back, staggered, until stopped."""

    def __init__(self, url: str, app: str, count: int) -> None:
        import requests

        self.url, self.app, self.count = url, app, count
        self.posts: list[Post] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._session = requests
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(count)]

    def _run(self, number: int) -> None:
        self._stop.wait(number / self.count)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = self._session.post(self.url, json={"application": self.app}, timeout=(1, 20))
                ok = answer.status_code == 200 and "sessionURL" in answer.text
            except Exception:  # noqa: BLE001 - refused / reset while restarting: not a success
                ok = False
            ended = time.monotonic()
            with self._lock:
                self.posts.append(Post(started, ended, ok))
            if not ok:
                self._stop.wait(0.05)

    def __enter__(self) -> "Clients":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def one_restart(config: Path, root: Path, served: Path, work: Path, version: str, url: str, app: str,
                clients: int) -> dict:
    name = common.release_name()
    release = common.build_release(work / "releases" / version, version)
    old_pid = _launcher_pid(root)
    if old_pid is None:
        raise RuntimeError("the launcher is not running before the update")
    tmp = served / f".{name}.tmp"
    tmp.write_bytes(release.read_bytes())
    os.replace(tmp, served / name)
    with Watcher(root) as watcher, Clients(url, app, clients) as posters:
        time.sleep(1.5)  # some successful POSTs on the old launcher first
        # The stop-and-start a version switch cost before upgrades started the new launcher beside the old
        # one (issue 14): install the new release, render its launcher files, `doit restart_launcher`.
        update = common.doit(config, "install", "render_launcher", "render_start", "restart_launcher", check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the new launcher has answered a POST
            new_pid = _launcher_pid(root)
            with posters._lock:
                done = [p for p in posters.posts if p.ok and watcher.pid_at(p.started) not in (None, old_pid)
                        and watcher.pid_at(p.ended) == new_pid]
            if done:
                break
            time.sleep(0.1)
        posters.stop()
    if update.returncode != 0:
        raise RuntimeError(f"doit update failed:\n{update.output[-3000:]}")
    new_pid = _launcher_pid(root)
    if new_pid in (None, old_pid):
        raise RuntimeError(f"the launcher was not restarted (pid {old_pid} -> {new_pid}):\n{update.output[-2000:]}")
    old_ok = [p for p in posters.posts if p.ok and watcher.pid_at(p.ended) == old_pid]
    new_ok = [p for p in posters.posts if p.ok and watcher.pid_at(p.started) == new_pid]
    if not old_ok or not new_ok:
        raise RuntimeError(f"no successful POST on the {'old' if not old_ok else 'new'} launcher "
                           f"({len(posters.posts)} POSTs)")
    last_old = max(old_ok, key=lambda p: p.ended)
    first_new = min(new_ok, key=lambda p: p.ended)
    return {"downtime": first_new.ended - last_old.ended, "start_gap": first_new.started - last_old.started,
            "posts": len(posters.posts), "failed": sum(not p.ok for p in posters.posts),
            "update_wall": update.wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=3, help="staggered POSTing clients")
    parser.add_argument("--app", default="visualizer")
    parser.add_argument("--work", type=Path, default=common.WORK / "restart")
    parser.add_argument("--results", type=Path, default=None, help="write here instead of bench/RESULTS.md")
    args = parser.parse_args(argv)
    common.print_machine()
    served = common.fresh_served_folder(args.work)
    runs = []
    with common.LoopbackServer(served) as server:
        name = common.release_name()
        root = args.work / "root"
        config = common.write_config(args.work / "pvw.toml", server.url(name), root, keep=2, port_count=80)
        launcher_url = _launcher_url(config)
        first = common.build_release(args.work / "releases" / "5.13.0", "5.13.0")
        (served / name).write_bytes(first.read_bytes())
        try:
            common.doit(config, "update")
            for number in range(args.runs):
                result = one_restart(config, root, served, args.work, f"5.13.{number + 1}", launcher_url,
                                     args.app, args.clients)
                runs.append(result)
                common.progress(f"  restart {number + 1}/{args.runs}: downtime {result['downtime']:.2f} s "
                                f"(start-to-start {result['start_gap']:.2f} s), {result['posts']} POSTs, "
                                f"{result['failed']} failed, update {result['update_wall']:.1f} s")
        finally:
            stopped = stop_deployment(config, root)
    downtime = common.median([r["downtime"] for r in runs])
    gap = common.median([r["start_gap"] for r in runs])
    lines = ["| run | downtime s (end to end) | start-to-start s | POSTs | failed POSTs | doit update s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n + 1} | {r['downtime']:.2f} | {r['start_gap']:.2f} | {r['posts']} | {r['failed']} | "
              f"{r['update_wall']:.1f} |" for n, r in enumerate(runs)]
    lines += ["", common.verdict(f"median restart downtime ({len(runs)} restarts, {args.clients} clients)",
                                 downtime, 2.5, "s"),
              f"- median start-to-start gap: {gap:.2f} s",
              f"- processes left after `doit stop_launcher`: {', '.join(map(str, stopped)) or 'none'}"]
    common.report("restart", "3. Restart downtime during `doit update`", lines, args.results)
    common.rmtree(args.work)
    return 0


def _launcher_url(config: Path) -> str:
    import tomllib

    data = tomllib.loads(config.read_text())
    launcher = data["launcher"]
    return f"http://127.0.0.1:{launcher['port']}/{launcher.get('endpoint', 'paraview')}/"


if __name__ == "__main__":
    sys.exit(main())
