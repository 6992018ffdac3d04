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
    fetched = _install_times(sizes, args.files_per_gib, args.runs, args.work / "fetch")
    common.rmtree(args.work / "fetch")
    lines = ["### Fetch + verify + install (pvwtasks `doit install`, clean root; sizes interleaved run by run)", "",
             "| unpacked | files | .tar.gz | runs | median wall s | s per GiB | median user s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for res in fetched:
        pvw = res["pvw"]
        lines.append(f"| {common.human(res['size'])} | {res['files']} | {common.human(res['compressed'])} | "
                     f"{len(pvw.samples)} | {pvw.med('wall'):.2f} | {pvw.med('wall') / (res['size'] / (1 << 30)):.2f} | "
                     f"{pvw.med('user'):.2f} | {pvw.peak_rss():.0f} |")
    xs = [r["size"] / (1 << 30) for r in fetched]
    ys = [r["pvw"].med("wall") for r in fetched]
    slope, intercept, r2 = _fit(xs, ys)
    worst = max(abs(y - (intercept + slope * x)) / y for x, y in zip(xs, ys))
    lines += ["", f"- least-squares fit: wall = {intercept:.2f} s + {slope:.2f} s/GiB x size; R^2 = {r2:.3f}, "
              f"largest deviation from the fit {worst * 100:.0f}% "
              f"({'linear' if r2 >= 0.98 else 'NOT clearly linear: see the noise note in README'})",
              f"- size x{xs[-1] / xs[0]:.1f} -> wall time x{ys[-1] / ys[0]:.2f}",
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
                update, listing, last = bench_noop.measure_noop(config, args.noop_runs, server)
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


def _install_times(sizes: list[int], files_per_gib: int, runs: int, work: Path) -> list[dict]:
    """Median ``doit install`` (clean root) per size; sizes take turns, so load drift hits all alike."""
    import hashlib
    import os

    from common import Side

    served = work / "served"
    cases = []
    for size in sizes:
        files = max(10, round(size / (1 << 30) * files_per_gib))
        release = common.build_release(served, size=size, files=files, name=f"bench-{size}-{files}.tar.gz")
        digest = hashlib.sha256()
        with release.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        cases.append({"size": size, "files": files, "release": release, "sha": digest.hexdigest(),
                      "compressed": release.stat().st_size, "pvw": Side(f"pvwtasks {common.human(size)}")})
    root = work / "root"
    with common.LoopbackServer(served) as server:
        for case in cases:
            url = server.url(case["release"].name)
            case["config"] = common.write_config(work / f"pvw-{case['size']}.toml", url, root)
            text = case["config"].read_text().replace(f'url = "{url}"', f'url = "{url}"\nsha256 = "{case["sha"]}"')
            case["config"].write_text(text)
        for number in range(runs):
            order = cases[number % len(cases):] + cases[:number % len(cases)]
            for case in order:
                common.rmtree(root)
                os.sync()
                sample = common.doit(case["config"], "install")
                if not (root / "autodeploy" / "paraview" / "bin" / "pvpython").is_file():
                    raise RuntimeError(f"pvwtasks did not install the release:\n{sample.output}")
                case["pvw"].samples.append(sample)
                common.progress(f"  run {number + 1}/{runs} {common.human(case['size'])}: wall {sample.wall:.2f} s, "
                                f"user {sample.user:.2f} s, sys {sample.sys:.2f} s, RSS {sample.maxrss_mb:.0f} MiB")
    common.rmtree(root)
    return cases


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (b, a, R^2)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1e-12
    return slope, intercept, 1 - ss_res / ss_tot


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
