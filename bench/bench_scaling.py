"""Benchmark 4: scaling. Fetch + verify + install time at 3 sizes (linear), no-op time with 1, 3, 10 kept versions (flat).

Part 1 runs pvwtasks' ``doit install`` from a clean root (as in
bench_fetch.py, loopback server, pinned sha256) at three tarball sizes
and reports the median wall time, the seconds per GiB and the peak RSS;
linear growth means a flat s/GiB column.

Part 2 deploys 1, then 3, then 10 successive releases with ``keep = 10``
(launcher running) and measures the no-op ``doit update`` next to
``doit list`` at each count; it should not grow with the number of kept
versions.

    .venv/bin/python bench/bench_scaling.py                              # 256M, 512M, 1G; 5 runs each
    .venv/bin/python bench/bench_scaling.py --sizes 32M,64M,128M --runs 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench_fetch
import bench_noop
import common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256M,512M,1G", help="three unpacked sizes, comma-separated")
    parser.add_argument("--files-per-gib", type=int, default=bench_fetch.FILES_PER_GIB)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--noop-runs", type=int, default=9)
    parser.add_argument("--versions", default="1,3,10", help="kept-version counts for the no-op part")
    parser.add_argument("--work", type=Path, default=common.WORK / "scaling")
    parser.add_argument("--results", type=Path, default=None, help="write here instead of bench/RESULTS.md")
    args = parser.parse_args(argv)
    common.print_machine()
    common.rmtree(args.work)

    sizes = [common.parse_size(s) for s in args.sizes.split(",")]
    fetched = []
    for size in sizes:
        files = max(10, round(size / (1 << 30) * args.files_per_gib))
        fetched.append(bench_fetch.bench_size(size, files, args.runs, args.work / "fetch", baseline=False))
    common.rmtree(args.work / "fetch" / "served")
    lines = ["### Fetch + verify + install (pvwtasks `doit install`, clean root)", "",
             "| unpacked | files | .tar.gz | runs | median wall s | s per GiB | median user s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    per_gib = []
    for res in fetched:
        pvw = res["pvw"]
        rate = pvw.med("wall") / (res["size"] / (1 << 30))
        per_gib.append(rate)
        lines.append(f"| {common.human(res['size'])} | {res['files']} | {common.human(res['compressed'])} | "
                     f"{len(pvw.samples)} | {pvw.med('wall'):.2f} | {rate:.2f} | {pvw.med('user'):.2f} | "
                     f"{pvw.peak_rss():.0f} |")
    growth = fetched[-1]["pvw"].med("wall") / fetched[0]["pvw"].med("wall")
    size_growth = fetched[-1]["size"] / fetched[0]["size"]
    lines += ["", f"- size x{size_growth:.1f} -> wall time x{growth:.2f} (linear = x{size_growth:.1f}); "
              f"s/GiB from {min(per_gib):.2f} to {max(per_gib):.2f} "
              f"({'linear or better' if growth <= size_growth * 1.15 else 'NOT linear'})",
              f"- peak RSS from {min(r['pvw'].peak_rss() for r in fetched):.0f} to "
              f"{max(r['pvw'].peak_rss() for r in fetched):.0f} MiB across sizes", ""]

    counts = [int(n) for n in args.versions.split(",")]
    work = args.work / "noop"
    served = work / "served"
    served.mkdir(parents=True)
    rows = []
    with common.LoopbackServer(served) as server:
        config = root = None
        deployed = 0
        try:
            for count in counts:
                config, root = _deploy_more(work, server, deployed, count, keep=max(counts))
                deployed = count
                kept = len([p for p in (root / "autodeploy" / "versions").iterdir() if p.is_dir()])
                update, listing, last = bench_noop.measure_noop(config, args.noop_runs)
                bench_noop.check_noop(last)
                rows.append((count, kept, update, listing))
                common.progress(f"  {kept} kept: update {update.med('wall'):.3f} s, list {listing.med('wall'):.3f} s")
        finally:
            if config is not None:
                bench_noop.stop_deployment(config, root)
    lines += ["### No-op `doit update` by number of kept versions (launcher running)", "",
              "| versions kept | runs | no-op update s | doit list s | ratio |", "|---|---|---|---|---|"]
    for count, kept, update, listing in rows:
        lines.append(f"| {kept} | {len(update.samples)} | {update.med('wall'):.3f} | {listing.med('wall'):.3f} | "
                     f"{update.med('wall') / listing.med('wall'):.2f} |")
    spread = rows[-1][2].med("wall") / rows[0][2].med("wall")
    lines += ["", f"- no-op time with {rows[-1][1]} kept / with {rows[0][1]} kept: x{spread:.2f} "
              f"({'flat' if spread <= 1.15 else 'grows'})"]
    common.report("scaling", "4. Scaling", lines, args.results)
    common.rmtree(args.work)
    return 0


def _deploy_more(work: Path, server: common.LoopbackServer, have: int, want: int, keep: int) -> tuple[Path, Path]:
    """Deploy releases number ``have`` .. ``want - 1`` on top of what is there."""
    import os

    name = common.release_name()
    root = work / "root"
    config = work / "pvw.toml"
    if not config.exists():
        common.write_config(config, server.url(name), root, keep=keep)
    for number in range(have, want):
        release = common.build_release(work / "releases" / f"v{number}", f"5.13.{number}")
        tmp = server.root / f".{name}.tmp"
        tmp.write_bytes(release.read_bytes())
        os.utime(tmp, (1_700_000_000 + number, 1_700_000_000 + number))
        os.replace(tmp, server.root / name)
        sample = common.doit(config, "update", check=False)
        if sample.returncode != 0:
            raise RuntimeError(f"doit update of version {number} failed:\n{sample.output[-3000:]}")
    return config, root


if __name__ == "__main__":
    sys.exit(main())
