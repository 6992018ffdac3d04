"""Benchmark 2: fetch + verify + install of a big release, pvwtasks vs curl && sha256sum && tar.

For each size, a stand-in release (about SIZE unpacked, FILES files, half
random and half text-like bytes) is served by a loopback HTTP server.  The
two sides alternate, each from a clean folder:

- pvwtasks: ``doit install config=...`` from an empty deploy root (lock,
  download, verify against a pinned sha256, install = extract + switch);
- baseline: ``curl -sS -o f URL``, ``sha256sum f``, ``tar xzf f -C dir``, run
  one after the other as separate processes (wall, CPU summed; RSS = max).

Targets (issue 6): median wall <= 1.0x baseline, median user CPU <= 0.6x,
pvwtasks peak RSS <= 150 MiB at every size.

    .venv/bin/python bench/bench_fetch.py                       # 1 GiB/30,000 files and 256 MiB/7,500, 5 runs
    .venv/bin/python bench/bench_fetch.py --sizes 64M --runs 5  # quick
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import common
from common import Sample, Side

FILES_PER_GIB = 30_000


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _count_files(tree: Path) -> int:
    return sum(len(files) + len(dirs) for _root, dirs, files in os.walk(tree))


def bench_size(size: int, files: int, runs: int, work: Path, baseline: bool = True) -> dict:
    served = work / "served"
    release = common.build_release(served, size=size, files=files, name=f"bench-{size}-{files}.tar.gz")
    compressed = release.stat().st_size
    sha = _sha256(release)
    common.progress(f"release {release.name}: {common.human(size)} unpacked, {files} files, "
                    f"{common.human(compressed)} compressed")
    pvw, base = Side("pvwtasks `doit install`"), Side("curl && sha256sum && tar xzf")
    with common.LoopbackServer(served) as server:
        url = server.url(release.name)
        root = work / "root"
        config = common.write_config(work / "pvw.toml", url, root, extra="")
        text = config.read_text().replace(f'url = "{url}"', f'url = "{url}"\nsha256 = "{sha}"')
        config.write_text(text)
        base_dir, base_file = work / "base", work / "base.tar.gz"
        for number in range(runs):
            for side in ((base, pvw) if number % 2 else (pvw, base)) if baseline else (pvw,):
                common.rmtree(root)
                common.rmtree(base_dir)
                base_file.unlink(missing_ok=True)
                os.sync()
                if side is pvw:
                    sample = common.doit(config, "install")
                    live = root / "autodeploy" / "paraview"
                    if not (live / "bin" / "pvpython").is_file():
                        raise RuntimeError(f"pvwtasks did not install the release:\n{sample.output}")
                    if not pvw.samples:
                        installed = _count_files(live / ".")
                else:
                    base_dir.mkdir(parents=True)
                    sample = common.run(["curl", "-sS", "-o", str(base_file), url])
                    hashed = common.run(["sha256sum", str(base_file)])
                    if not hashed.output.startswith(sha):
                        raise RuntimeError(f"baseline sha256 differs: {hashed.output}")
                    sample = sample + hashed + common.run(["tar", "xzf", str(base_file), "-C", str(base_dir)])
                    if not base.samples:
                        unpacked = _count_files(base_dir) - 1  # base_dir also holds the top folder itself
                side.samples.append(Sample(sample.wall, sample.user, sample.sys, sample.maxrss_mb,
                                           sample.returncode))
                common.progress(f"  run {number + 1}/{runs} {side.name}: wall {sample.wall:.2f} s, "
                                f"user {sample.user:.2f} s, sys {sample.sys:.2f} s, RSS {sample.maxrss_mb:.0f} MiB")
        if baseline and installed != unpacked:
            raise RuntimeError(f"pvwtasks installed {installed} entries, tar unpacked {unpacked}")
    common.rmtree(root)
    common.rmtree(base_dir)
    base_file.unlink(missing_ok=True)
    return {"size": size, "files": files, "compressed": compressed, "pvw": pvw, "base": base}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1G,256M", help="unpacked sizes, comma-separated (first one is the main)")
    parser.add_argument("--files-per-gib", type=int, default=FILES_PER_GIB)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=common.WORK / "fetch")
    parser.add_argument("--results", type=Path, default=None, help="write here instead of bench/RESULTS.md")
    parser.add_argument("--keep-release", action="store_true", help="keep the generated tarballs")
    args = parser.parse_args(argv)
    common.print_machine()
    sizes = [common.parse_size(s) for s in args.sizes.split(",")]
    results = []
    for size in sizes:
        files = max(10, round(size / (1 << 30) * args.files_per_gib))
        results.append(bench_size(size, files, args.runs, args.work))
    lines = []
    for number, res in enumerate(results):
        pvw, base = res["pvw"], res["base"]
        lines += [f"### {common.human(res['size'])} unpacked, {res['files']} files, "
                  f"{common.human(res['compressed'])} .tar.gz", ""]
        lines += common.summary_table([pvw, base])
        wall = pvw.med("wall") / base.med("wall")
        user = pvw.med("user") / base.med("user")
        lines += ["", common.verdict("wall time, pvwtasks / baseline", wall, 1.0),
                  common.verdict("user CPU, pvwtasks / baseline", user, 0.6),
                  common.verdict("pvwtasks peak RSS", pvw.peak_rss(), 150, "MiB"), ""]
    if len(results) > 1:
        rss = ", ".join(f"{common.human(r['size'])}: {r['pvw'].peak_rss():.0f} MiB" for r in results)
        lines.append(f"Peak RSS by size (flat = independent of the tarball): {rss}")
    common.report("fetch", "2. Fetch + verify + install of a big release", lines, args.results)
    if not args.keep_release:
        common.rmtree(args.work / "served")
    return 0


if __name__ == "__main__":
    sys.exit(main())
