"""7. A rolling upgrade of 3 hosts behind one front with Ansible: its time, and POST failures during it.

The fleet of tests/fleet_support.py (three deployments on this machine, each with its own private
Apache, a front Apache, the real ``ansible-playbook`` with ``ansible_connection=local``).  After a
first rollout, each round upgrades the fleet to a new release three ways, in turn, while a poller
POSTs sessions through the front (and ends each one):

- ``ansible``: ansible/site.yml as shipped (each host out of the front's balancer while it updates);
- ``ansible, no drain``: the same with ``-e pvwtasks_drain=false`` (the front finds a restarting host
  only by its health checks);
- ``doit update x3``: the baseline, `doit update` on the three hosts one after the other, by hand.

    .venv/bin/python bench/bench_fleet.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.PROJECT / "tests"))

from conftest import FileServer, build_release  # noqa: E402
from fleet_support import Fleet, Poller  # noqa: E402

SIDES = ["ansible", "ansible, no drain", "doit update x3"]


def _by_hand(fleet: Fleet, url: str) -> tuple[int, float]:
    """The baseline: point each host's config at ``url`` and `doit update` them one after the other."""
    started = time.monotonic()
    for host in fleet.hosts.values():
        text = host.config.read_text()
        host.config.write_text(re.sub(r'^url = ".*"$', f'url = "{url}"', text, count=1, flags=re.M))
        done = common.doit(host.config, "update", check=False)
        if done.returncode != 0:
            return done.returncode, time.monotonic() - started
    return 0, time.monotonic() - started


def one_upgrade(fleet: Fleet, side: str, url: str) -> dict:
    with Poller(fleet.front_url) as poller:
        if side == "doit update x3":
            code, seconds = _by_hand(fleet, url)
        else:
            done = fleet.rollout(url, extra_vars={"pvwtasks_drain": False} if "no drain" in side else None)
            code, seconds = done.returncode, done.seconds
            if code != 0:
                common.progress(done.output[-3000:])
        time.sleep(1)
    return {"side": side, "ok": code == 0, "seconds": seconds, "posts": len(poller.polls),
            "failed": len(poller.failures), "nodes": len({p.node for p in poller.polls if p.node})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="upgrades per side")
    parser.add_argument("--work", type=Path, default=common.WORK / "fleet")
    parser.add_argument("--results", type=Path, default=None, help="write here instead of bench/RESULTS.md")
    args = parser.parse_args(argv)
    common.print_machine()
    served = common.fresh_served_folder(args.work)
    server = FileServer(served)
    server.thread.start()
    fleet = Fleet(args.work)
    runs = []
    try:
        first = fleet.rollout(server.url(build_release(served, "5.13.0").name))
        if first.returncode != 0:
            raise SystemExit(f"the first rollout failed:\n{first.output[-3000:]}")
        common.progress(f"  first rollout (venv, front, 3 hosts): {first.seconds:.1f} s")
        patch = 0
        for number in range(args.rounds):
            for side in SIDES:
                patch += 1
                url = server.url(build_release(served, f"5.13.{patch}").name)
                result = one_upgrade(fleet, side, url)
                runs.append(result)
                common.progress(f"  round {number + 1}, {side}: {result['seconds']:.1f} s, {result['posts']} POSTs, "
                                f"{result['failed']} failed ({'ok' if result['ok'] else 'FAILED'})")
    finally:
        fleet.stop()
        server.httpd.shutdown()
        server.httpd.server_close()
    lines = ["| round | side | rollout s | POSTs through the front | failed POSTs | hosts answering | ok |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {n // len(SIDES) + 1} | {r['side']} | {r['seconds']:.1f} | {r['posts']} | {r['failed']} | "
              f"{r['nodes']} | {'yes' if r['ok'] else 'NO'} |" for n, r in enumerate(runs)]
    med = {side: common.median([r["seconds"] for r in runs if r["side"] == side]) for side in SIDES}
    failed = {side: sum(r["failed"] for r in runs if r["side"] == side) for side in SIDES}
    posts = {side: sum(r["posts"] for r in runs if r["side"] == side) for side in SIDES}
    lines += ["", f"- first rollout (the hosts' venv, the front, 3 hosts from nothing): {first.seconds:.1f} s",
              f"- median rolling upgrade of 3 hosts with Ansible: {med['ansible']:.1f} s; "
              f"by hand (`doit update` x3): {med['doit update x3']:.1f} s",
              f"- rolling upgrade, Ansible / `doit update` x3: {med['ansible'] / med['doit update x3']:.2f}x "
              "(what the rollout adds: the front's drain and gate, the config check, Ansible's own steps)",
              common.verdict(f"failed POSTs during the Ansible upgrades ({posts['ansible']} POSTs)",
                             failed["ansible"], 0, "POSTs"),
              f"- failed POSTs without the drain: {failed['ansible, no drain']} of {posts['ansible, no drain']}; "
              f"by hand: {failed['doit update x3']} of {posts['doit update x3']}"]
    common.report("fleet", "7. Rolling upgrade of 3 hosts behind one front (Ansible)", lines, args.results)
    common.rmtree(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
