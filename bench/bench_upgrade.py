"""Benchmark 6: an upgrade beside the running launcher vs the stop-and-start, through a real Apache (issue 14).

A stand-in release is deployed with ``doit update`` and served through a
private Apache (``apache2 -f <own httpd.conf> -DFOREGROUND`` on a free
port, Including the rendered vhost).  A poller POSTs ``/paraview`` through
Apache back to back (and DELETEs each session); for each step 3 sessions
opened before it call the app's ``test.echo`` every 100 ms over ``/proxy``
(the load generators of tests/support/sessions.py).  Each round measures:

- upgrade: upstream serves the next version, ``doit update`` starts it in
  the idle launcher slot and switches new sessions to it; then the old
  slot's sessions are closed and ``doit drain`` (what the watchdog and the
  next update run) stops it: the time from the last session's end to the
  old slot being gone;
- stop-and-start (the baseline, what every version switch did before):
  ``doit restart_launcher``.

Figures per step: the largest gap between two successful POSTs over the
step, failed POSTs, open sessions kept (every echo answered), and the same
gap with no step at all (the steady POST + DELETE cycle).

    .venv/bin/python bench/bench_upgrade.py               # 3 rounds
    .venv/bin/python bench/bench_upgrade.py --rounds 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.PROJECT / "tests"))  # the load generators the end-to-end tests use
from support.sessions import Poller, Talker  # noqa: E402

SESSIONS = 3


def _apache(work: Path, settings) -> subprocess.Popen:
    from pvwtasks import apache, processes, render

    port = settings.web.http_port
    conf = apache.httpd_conf(work / "httpd", [port], render.output_path(settings.layout, "vhost"))
    proc = subprocess.Popen(["apache2", "-f", str(conf), "-DFOREGROUND"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not processes.port_answers("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Apache did not start on port {port}")
        time.sleep(0.05)
    return proc


def _talkers(base: str, port: int) -> list[Talker]:
    import requests

    talkers = []
    for _ in range(SESSIONS):
        opened = requests.post(f"{base}/paraview/", json={"application": "loader"}, timeout=60).json()
        talker = Talker(f"ws://127.0.0.1:{port}/proxy?sessionId={opened['id']}&path=ws", opened["secret"])
        talker.start()  # connected before the next POST rewrites the proxy file (see tests/test_upgrade_drain.py)
        if not talker.ready.wait(30) or talker.error:
            raise RuntimeError(f"a session did not open: {talker.error}")
        talkers.append(talker)
    return talkers


def _step(config: Path, settings, poller: Poller, *task: str) -> dict:
    """Run ``doit TASK`` with open sessions talking; the step's figures."""
    talkers = _talkers(poller.base, settings.web.http_port)
    failed_before = len(poller.failures)
    started = time.monotonic()
    done = common.doit(config, *task, check=False)
    ended = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"doit {' '.join(task)} failed:\n{done.output[-3000:]}")
    poller.wait_success_after(ended + 1.0)
    for talker in talkers:
        talker.stop_event.set()
    for talker in talkers:
        talker.join(10)
    return {"gap": poller.gap(started, ended), "wall": ended - started,
            "failed": len(poller.failures) - failed_before,
            "kept": sum(t.error is None and t.missed == 0 for t in talkers),
            "missed": sum(t.missed for t in talkers)}


def _drain_time(config: Path, settings, base: str) -> float:
    """Close the draining slot's sessions; seconds from the last one's end to the slot being gone."""
    import requests

    from pvwtasks import processes, slots

    draining = slots.state(settings).draining
    if draining is None:
        raise RuntimeError("no launcher slot drains after the upgrade")
    old = settings.for_slot(draining)
    deadline = time.monotonic() + 30
    while (live := slots.live_sessions(old)) and time.monotonic() < deadline:
        for session in live:  # through Apache, which sends a session's DELETE to the slot holding it
            requests.delete(f"{base}/paraview/{session['id']}", timeout=30)
        ports = [s["port"] for s in live]
        while processes.listeners(ports) and time.monotonic() < deadline:
            time.sleep(0.02)
    closed = time.monotonic()
    drained = common.doit(config, "drain")
    if processes.find_launcher(old) is not None:
        raise RuntimeError(f"slot {draining} still runs after `doit drain`:\n{drained.output[-2000:]}")
    return time.monotonic() - closed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=common.WORK / "upgrade")
    parser.add_argument("--results", type=Path, default=None, help="write here instead of bench/RESULTS.md")
    args = parser.parse_args(argv)
    common.print_machine()
    served = common.fresh_served_folder(args.work)
    rounds = []
    env_display = os.environ.pop("DISPLAY", None)  # the stand-in's headless build wants none
    with common.LoopbackServer(served) as server:
        from pvwtasks import config as pvwconfig

        name = common.release_name()
        root = args.work / "root"
        web = (f"[web]\nserver_name = \"127.0.0.1\"\nhttp_port = {common.free_port()}\nproxy_timeout = 600\n"
               "manage_apache = false  # a private Apache, started by this script\n")
        config = common.write_config(args.work / "pvw.toml", server.url(name), root, keep=2, port_count=40,
                                     extra=web)
        (served / name).write_bytes(common.build_release(args.work / "releases" / "5.13.0", "5.13.0").read_bytes())
        common.doit(config, "update")
        settings = pvwconfig.load(config)
        apache = _apache(args.work, settings)
        poller = Poller(f"http://127.0.0.1:{settings.web.http_port}")
        try:
            poller.start()
            time.sleep(4)
            steady = poller.gap()
            for number in range(args.rounds):
                release = common.build_release(args.work / "releases" / f"5.13.{number + 1}", f"5.13.{number + 1}")
                tmp = served / f".{name}.tmp"
                tmp.write_bytes(release.read_bytes())
                os.replace(tmp, served / name)
                upgrade = _step(config, settings, poller, "update")
                upgrade["gone"] = _drain_time(config, settings, poller.base)
                restart = _step(config, settings, poller, "restart_launcher")
                rounds.append((upgrade, restart))
                common.progress(f"  round {number + 1}/{args.rounds}: upgrade gap {upgrade['gap']:.2f} s "
                                f"({upgrade['failed']} failed, {upgrade['kept']}/{SESSIONS} kept, old slot gone "
                                f"{upgrade['gone']:.2f} s after its last session), stop-and-start gap "
                                f"{restart['gap']:.2f} s ({restart['failed']} failed)")
        finally:
            poller.stop_event.set()
            poller.join(60)
            apache.terminate()
            apache.wait(30)
            common.doit(config, "stop_launcher", check=False)
            if env_display is not None:
                os.environ["DISPLAY"] = env_display
    lines = [f"Stand-in releases 5.13.0 -> 5.13.{args.rounds}; {SESSIONS} sessions opened before each step "
             "call `test.echo` every 100 ms; the poller POSTs and DELETEs through Apache without pause.", "",
             "| round | step | doit s | largest POST gap s | failed POSTs | open sessions kept | missed replies |",
             "|---|---|---|---|---|---|---|",
             f"| — | no step (steady POST + DELETE cycle) | — | {steady:.2f} | 0 | — | — |"]
    for number, (upgrade, restart) in enumerate(rounds, 1):
        lines.append(f"| {number} | `doit update`, new release beside the old one | {upgrade['wall']:.2f} | "
                     f"**{upgrade['gap']:.2f}** | **{upgrade['failed']}** | **{upgrade['kept']}/{SESSIONS}** | "
                     f"{upgrade['missed']} |")
        lines.append(f"| {number} | `doit restart_launcher` (stop-and-start) | {restart['wall']:.2f} | "
                     f"{restart['gap']:.2f} | {restart['failed']} | {restart['kept']}/{SESSIONS} | — |")
    ups, rss = [u for u, _ in rounds], [r for _, r in rounds]
    up_gap, rs_gap = common.median([u["gap"] for u in ups]), common.median([r["gap"] for r in rss])
    kept = sum(u["kept"] for u in ups) / (SESSIONS * len(ups)) * 100
    rs_kept = sum(r["kept"] for r in rss) / (SESSIONS * len(rss)) * 100
    lines += ["",
              f"- largest POST gap, median over {len(rounds)} round(s): upgrade **{up_gap:.2f} s** vs "
              f"stop-and-start {rs_gap:.2f} s (upgrade / stop-and-start: **{up_gap / max(rs_gap, 1e-9):.2f}x**; "
              f"steady cycle {steady:.2f} s)",
              f"- failed POSTs: upgrade **{sum(u['failed'] for u in ups)}** (target 0), stop-and-start "
              f"{sum(r['failed'] for r in rss)}",
              f"- open sessions kept across an upgrade: **{kept:.0f}%** (target 100%); stop-and-start {rs_kept:.0f}%",
              f"- old slot gone after its last session closed (one `doit drain`): median "
              f"**{common.median([u['gone'] for u in ups]):.2f} s**; unattended the cron watchdog runs it every "
              "`[cron] watchdog` period (5 min), which bounds it"]
    common.report("upgrade", "6. Upgrade beside the running launcher vs stop-and-start (issue 14)", lines,
                  args.results)
    common.rmtree(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
