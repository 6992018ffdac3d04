"""Benchmark 1: a no-op ``doit update`` (nothing new upstream) against ``doit list`` on the same dodo.

A stand-in release is served by a loopback HTTP server and deployed once
with ``doit update`` (which also starts the launcher, when pvwtasks manages
it).  Then the two commands alternate; ``doit list`` is doit's own start-up
cost (Python, doit, the dodo and its imports), so the ratio is what the
update adds: the lock, the conditional request upstream, the up-to-date
checks, the launcher health check, the compare and notify steps.  At the
end the launcher is stopped with ``doit stop_launcher`` (and any process
left under the deploy root is stopped by PID).

A third side is ``doit list`` of a one-task dodo (no pvwtasks import at
all): doit's bare start-up.  Against it the ratio shows what loading this
project's dodo and the no-op's own work cost.

Targets: median ``doit update`` <= 1.5x median ``doit list`` (issue 6), and
<= 1.5x a one-task dodo's ``doit list`` (issue 9).  Timings on a shared
2-core machine move by several percent from run to run; when valgrind is
installed the three commands' instructions are also counted once each
(callgrind), a ratio that does not move with the load.

    .venv/bin/python bench/bench_noop.py             # 15 runs per side
    .venv/bin/python bench/bench_noop.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import common
from common import Side


def launcher_pids(root: Path) -> list[int]:
    """PIDs of processes whose command line or cwd points into ``root`` (the launcher and its sessions)."""
    import psutil

    found = []
    needle = str(root)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == os.getpid():
            continue
        cmd = " ".join(proc.info["cmdline"] or [])
        if needle in cmd:
            found.append(proc.info["pid"])
    return found


def stop_deployment(config: Path, root: Path) -> list[int]:
    """``doit stop_launcher``, then terminate (by PID) anything still running from ``root``."""
    import psutil

    common.doit(config, "stop_launcher", check=False)
    left = []
    for pid in launcher_pids(root):
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            left.append(pid)
        except psutil.NoSuchProcess:
            continue
    if left:
        _gone, alive = psutil.wait_procs([psutil.Process(p) for p in left if psutil.pid_exists(p)], timeout=5)
        for proc in alive:
            proc.kill()
    return left


def launcher_running(root: Path) -> bool:
    return bool(launcher_pids(root))


def deploy_versions(work: Path, server: common.LoopbackServer, count: int, keep: int) -> tuple[Path, Path]:
    """Deploy ``count`` successive stand-in releases (keep=``keep``); return (config, root)."""
    served = server.root
    name = common.release_name()
    root = work / "root"
    common.rmtree(root)
    config = common.write_config(work / "pvw.toml", server.url(name), root, keep=keep)
    for number in range(count):
        release = common.build_release(work / "releases" / f"v{number}", f"5.13.{number}")
        target = served / name
        tmp = served / f".{name}.tmp"
        tmp.write_bytes(release.read_bytes())
        os.utime(tmp, (1_700_000_000 + number, 1_700_000_000 + number))
        os.replace(tmp, target)
        sample = common.doit(config, "update", check=False)
        if sample.returncode != 0:
            raise RuntimeError(f"doit update of version {number} failed:\n{sample.output[-3000:]}")
    return config, root


ONE_TASK_DODO = '''"""The smallest dodo: doit's own start-up, the baseline of a no-op update."""


def task_hello():
    """Say hello."""
    return {"actions": ["true"]}
'''


def one_task_dodo(work: Path) -> Path:
    """Write the one-task dodo into ``work``; return its path."""
    work.mkdir(parents=True, exist_ok=True)
    dodo = work / "one_task_dodo.py"
    dodo.write_text(ONE_TASK_DODO)
    return dodo


def byte_compile(*paths: Path) -> None:
    """Write the ``.pyc`` of pvwtasks, dodo.py and the one-task dodo, as a pip install does.

    ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) stops Python from
    writing them, so an editable install would otherwise compile every module
    from source at each start: both sides must start from ``.pyc`` alike.
    """
    import compileall

    for path in paths:
        ok = compileall.compile_dir(path, quiet=1) if path.is_dir() else compileall.compile_file(path, quiet=1)
        if not ok:
            raise RuntimeError(f"cannot byte-compile {path}")


def one_task_list(dodo: Path) -> list[str]:
    """``doit list`` of the one-task dodo: the baseline command."""
    return [*common.DOIT[:-2], "-f", str(dodo), "list"]


def list_one_task(dodo: Path) -> common.Sample:
    return common.run(one_task_list(dodo), cwd=dodo.parent)


def measure_noop(config: Path, runs: int, server: common.LoopbackServer | None = None,
                 baseline: tuple[Side, Path] | None = None) -> tuple[Side, Side, str]:
    """Alternate no-op ``doit update`` and ``doit list``; return both sides and the last update's output.

    With ``server``, ``update.requests`` is set to the requests it got per update run.  With
    ``baseline`` (a side and a one-task dodo), that dodo's ``doit list`` is sampled in the same rounds.
    """
    update, listing = Side("`doit update` (no-op)"), Side("`doit list`")
    common.doit(config, "update")  # settle: the first rerun may still finish work (e.g. a render)
    common.doit(config, "list")
    seen = len(server.requests) if server else 0
    last = ""
    sides = [update, listing] + ([baseline[0]] if baseline else [])
    for number in range(runs):
        for side in sides[number % len(sides):] + sides[:number % len(sides)]:
            if baseline and side is baseline[0]:
                side.samples.append(list_one_task(baseline[1]))
                continue
            sample = common.doit(config, "update" if side is update else "list")
            side.samples.append(sample)
            if side is update:
                last = sample.output
    if server:
        asked = server.requests[seen:]
        update.requests = sorted({f"{method} {path.split('?')[0].rsplit('/', 1)[-1]}" for method, path in asked})
        update.requests_per_run = len(asked) / runs
    return update, listing, last


def count_instructions(config: Path, dodo: Path) -> dict[str, int] | None:
    """Instructions of one no-op update, one ``doit list`` and the one-task dodo's ``doit list`` (valgrind)."""
    update = common.instructions([*common.DOIT, "update", f"config={config}"], cwd=config.parent)
    if update is None:
        return None
    return {"update": update,
            "list": common.instructions([*common.DOIT, "list", f"config={config}"], cwd=config.parent),
            "bare": common.instructions(one_task_list(dodo), cwd=dodo.parent)}


def instruction_lines(counted: dict[str, int] | None) -> list[str]:
    if counted is None:
        return ["- instructions: not counted (valgrind is not installed)"]
    return [common.verdict("instructions, no-op update / one-task dodo's doit list",
                           counted["update"] / counted["bare"], 1.5),
            f"- instructions (valgrind callgrind, one run each; they do not move with the machine's load): "
            f"no-op update {counted['update'] / 1e6:.1f} M, `doit list` {counted['list'] / 1e6:.1f} M, "
            f"one-task dodo's `doit list` {counted['bare'] / 1e6:.1f} M"]


def check_noop(output: str) -> None:
    for task in ("download", "verify", "install"):
        if f"-- {task}\n" not in output:
            raise RuntimeError(f"the rerun was not a no-op ({task} ran):\n{output}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--work", type=Path, default=common.WORK / "noop")
    parser.add_argument("--results", type=Path, default=None, help="write here instead of bench/RESULTS.md")
    args = parser.parse_args(argv)
    common.print_machine()
    served = common.fresh_served_folder(args.work)
    with common.LoopbackServer(served) as server:
        config, root = deploy_versions(args.work, server, 1, keep=2)
        try:
            running_before = launcher_running(root)
            bare, dodo = Side("one-task dodo's `doit list`"), one_task_dodo(args.work)
            byte_compile(common.PROJECT / "pvwtasks", common.DODO, dodo)
            update, listing, last = measure_noop(config, args.runs, server, (bare, dodo))
            counted = count_instructions(config, dodo)
            running_after = launcher_running(root)
            check_noop(last)
        finally:
            stopped = stop_deployment(config, root)
    ratio = update.med("wall") / listing.med("wall")
    lines = [*common.summary_table([update, listing, bare]), "",
             common.verdict("wall time, no-op update / doit list", ratio, 1.5),
             common.verdict("wall time, no-op update / one-task dodo's doit list",
                            update.med("wall") / bare.med("wall"), 1.5),
             common.verdict("user CPU, no-op update / one-task dodo's doit list",
                            update.med("user") / bare.med("user"), 1.5),
             *instruction_lines(counted),
             "- all three start from `.pyc` files: the bench byte-compiles pvwtasks, dodo.py and the one-task dodo "
             "first (`PYTHONDONTWRITEBYTECODE=1` would otherwise make every run compile pvwtasks from source)",
             f"- launcher running during the runs: {'yes' if running_before and running_after else 'no'}"
             f"{' (stopped by PID afterwards: ' + ', '.join(map(str, stopped)) + ')' if stopped else ''}",
             f"- requests to the loopback release server per no-op update: {update.requests_per_run:.1f} "
             f"({', '.join(update.requests)})",
             "", "Tasks of the last no-op update (`--` = up to date, `.` = ran):", "", "```",
             *[line for line in last.splitlines() if line.startswith(("-- ", ".  "))], "```"]
    common.report("noop", "1. No-op rerun: `doit update` vs `doit list`", lines, args.results)
    common.rmtree(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
