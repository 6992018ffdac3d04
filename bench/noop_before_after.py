"""No-op ``doit update`` and ``doit list`` of an older commit against this tree, and a one-task dodo's ``doit list``.

The older tree is exported with ``git archive`` into the work folder and run
with ``PYTHONPATH`` pointing at it (same venv, same doit); each tree gets
its own deployment of the same stand-in release, served by one loopback
server, with its own launcher.  All five sides alternate run by run, every
tree is byte-compiled first (see ``bench_noop.byte_compile``).  Prints a
Markdown table; it does not write RESULTS.md.

    .venv/bin/python bench/noop_before_after.py --before 3293411 --runs 15
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import bench_noop
import common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the older commit")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--work", type=Path, default=common.WORK / "noop-before-after")
    args = parser.parse_args(argv)
    common.print_machine()
    served = common.fresh_served_folder(args.work)
    old_tree = args.work / "before-tree"
    old_tree.mkdir()
    archive = subprocess.run(["git", "-C", str(common.PROJECT), "archive", args.before], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
    trees = {"before": old_tree, "after": common.PROJECT}
    envs = {"before": {"PYTHONPATH": str(old_tree)}, "after": {}}

    def doit_command(tree: str, config: Path, *what: str) -> list[str]:
        return [common.PYTHON, "-m", "doit", "-f", str(trees[tree] / "dodo.py"), *what, f"config={config}"]

    def doit(tree: str, config: Path, *what: str, check: bool = True) -> common.Sample:
        return common.run(doit_command(tree, config, *what), cwd=args.work, env=envs[tree], check=check)

    def instructions(key: str) -> int | None:
        if key == "one-task":
            return common.instructions(bench_noop.one_task_list(dodo), cwd=dodo.parent)
        what, tree = key.split()
        return common.instructions(doit_command(tree, configs[tree], what), cwd=args.work, env=envs[tree])

    configs: dict[str, Path] = {}
    with common.LoopbackServer(served) as server:
        name = common.release_name()
        release = common.build_release(args.work / "release", "5.13.0")
        (served / name).write_bytes(release.read_bytes())
        os.utime(served / name, (1_700_000_000, 1_700_000_000))
        dodo = bench_noop.one_task_dodo(args.work)
        bench_noop.byte_compile(*(p for t in trees.values() for p in (t / "pvwtasks", t / "dodo.py")), dodo)
        sides: dict[str, common.Side] = {}
        try:
            for tree in trees:
                configs[tree] = common.write_config(args.work / f"pvw-{tree}.toml", server.url(name),
                                                    args.work / f"root-{tree}", keep=2)
                for _ in range(3):  # deploy, then settle
                    sample = doit(tree, configs[tree], "update")
                bench_noop.check_noop(sample.output)
                sides[f"update {tree}"] = common.Side(f"no-op `doit update`, {tree}")
                sides[f"list {tree}"] = common.Side(f"`doit list` of this dodo, {tree}")
            sides["one-task"] = common.Side("one-task dodo's `doit list`")
            for _ in range(args.runs):
                for key, side in sides.items():
                    if key == "one-task":
                        side.samples.append(bench_noop.list_one_task(dodo))
                        continue
                    what, tree = key.split()
                    sample = doit(tree, configs[tree], what)
                    if what == "update":
                        bench_noop.check_noop(sample.output)
                    side.samples.append(sample)
            counted = {key: instructions(key) for key in sides}  # once each: the count does not move with load
        finally:
            for tree, config in configs.items():
                doit(tree, config, "stop_launcher", check=False)
    bare = sides["one-task"]
    print(f"\nbefore = {args.before}, after = this tree; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| side | runs | median wall s | median user s | wall / one-task list | user / one-task list "
          "| instructions | instructions / one-task list |")
    print("|---|---|---|---|---|---|---|---|")
    for key, side in sides.items():
        count = counted[key]
        shown = (f"{count / 1e6:.1f} M | {count / counted['one-task']:.2f}x" if count is not None
                 else "not counted (no valgrind) | -")
        print(f"| {side.name} | {len(side.samples)} | {side.med('wall'):.3f} | {side.med('user'):.3f} | "
              f"{side.med('wall') / bare.med('wall'):.2f}x | {side.med('user') / bare.med('user'):.2f}x | {shown} |")
    common.rmtree(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
