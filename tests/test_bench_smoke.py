"""Tiny runs of each benchmark in bench/, so the scripts keep working (the real runs are not tests)."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench_modules(*names: str) -> list:
    """Import bench/ modules by name (bench/ is scripts, not a package)."""
    sys.path.insert(0, str(BENCH))
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(BENCH))


def run_bench(script: str, tmp_path: Path, *args: str, timeout: float = 120) -> tuple[str, str]:
    results = tmp_path / "RESULTS.md"
    cmd = [sys.executable, str(BENCH / script), "--work", str(tmp_path / "work"), "--results", str(results), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = results.read_text()
    assert f"Command: `.venv/bin/python bench/{script}" in text
    assert re.search(r"cores: \d+", text) and "python: 3." in text and "tar (GNU tar)" in text
    assert not (tmp_path / "work").exists() or script == "bench_fetch.py"
    return proc.stdout, text


def _ratio(text: str, label: str) -> float:
    match = re.search(re.escape(label) + r": \*\*([\d.]+)", text)
    assert match, text
    return float(match.group(1))


def test_fetch_benchmark_compares_pvwtasks_with_curl_sha256sum_tar(tmp_path):
    _out, text = run_bench("bench_fetch.py", tmp_path, "--sizes", "2M,1M", "--runs", "1")
    assert text.count("| pvwtasks `doit install` | 1 |") == 2
    assert text.count("| curl && sha256sum && tar xzf | 1 |") == 2
    assert _ratio(text, "wall time, pvwtasks / baseline") > 0
    assert 10 < _ratio(text, "pvwtasks peak RSS") < 500
    assert "Peak RSS by size" in text


def test_noop_benchmark_compares_update_with_list(tmp_path):
    _out, text = run_bench("bench_noop.py", tmp_path, "--runs", "1")
    assert _ratio(text, "wall time, no-op update / doit list") > 0.5
    if shutil.which("valgrind"):  # the instruction counts: more than a bare doit, and the update above its list
        counts = re.search(r"no-op update ([\d.]+) M, `doit list` ([\d.]+) M, one-task dodo's `doit list` ([\d.]+) M",
                           text)
        assert counts and float(counts[1]) > float(counts[2]) > float(counts[3]) > 100, text
        assert 1 < _ratio(text, "instructions, no-op update / one-task dodo's doit list") < 3
    else:
        assert "- instructions: not counted (valgrind is not installed)" in text
    assert "-- download" in text and "-- install" in text


def test_noop_before_after_compares_a_commit_with_this_tree(tmp_path):
    cmd = [sys.executable, str(BENCH / "noop_before_after.py"), "--before", "HEAD", "--runs", "1",
           "--work", str(tmp_path / "work")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = re.findall(r"^\| (.+?) \| 1 \| [\d.]+ \| [\d.]+ \| ([\d.]+)x \| ([\d.]+)x \| (.+) \| (.+) \|$",
                      proc.stdout, re.MULTILINE)
    assert [name for name, *_ratios in rows] == [
        "no-op `doit update`, before", "`doit list` of this dodo, before", "no-op `doit update`, after",
        "`doit list` of this dodo, after", "one-task dodo's `doit list`"], proc.stdout
    assert rows[-1][1:3] == ("1.00", "1.00")
    counted = shutil.which("valgrind") is not None  # instructions are counted only with valgrind
    assert rows[-1][4] == ("1.00x" if counted else "-"), proc.stdout
    assert all(re.fullmatch(r"[\d.]+ M", row[3]) if counted else row[3].startswith("not counted") for row in rows)
    assert not (tmp_path / "work").exists()


def test_scaling_benchmark_reports_three_sizes_and_kept_versions(tmp_path):
    _out, text = run_bench("bench_scaling.py", tmp_path, "--sizes", "1M,2M,3M", "--runs", "1",
                           "--noop-runs", "1", "--versions", "1,2", timeout=180)
    assert len(re.findall(r"^\| [\d.]+ MiB \| \d+ \|", text, re.MULTILINE)) == 3
    assert re.search(r"^\| 1 \| 1 \|", text, re.MULTILINE) and re.search(r"^\| 2 \| 1 \|", text, re.MULTILINE)


def test_restart_benchmark_measures_downtime(tmp_path):
    _out, text = run_bench("bench_restart.py", tmp_path, "--runs", "1", "--clients", "2", timeout=180)
    downtime = _ratio(text, "median restart downtime (1 restarts, 2 clients)")
    assert 0 < downtime < 30
    assert "processes left after `doit stop_launcher`: none" in text


def test_upgrade_benchmark_compares_the_upgrade_with_the_stop_and_start(tmp_path):
    _out, text = run_bench("bench_upgrade.py", tmp_path, "--rounds", "1", timeout=300)
    assert "| 1 | `doit update`, new release beside the old one |" in text
    assert "| 1 | `doit restart_launcher` (stop-and-start) |" in text
    assert _ratio(text, "upgrade / stop-and-start") > 0
    assert re.search(r"old slot gone after its last session closed \(one `doit drain`\): median \*\*[\d.]+ s", text)


def test_results_file_keeps_one_section_per_benchmark(tmp_path):
    (common,) = _bench_modules("common")
    results = tmp_path / "R.md"
    common.report("x", "X", ["first"], results)
    common.report("y", "Y", ["other"], results)
    common.report("x", "X", ["second"], results)
    text = results.read_text()
    assert text.count("## X") == 1 and "second" in text and "first" not in text and "other" in text


@pytest.mark.parametrize("text, size", [("512M", 512 << 20), ("1G", 1 << 30), ("300000", 300000), ("1.5GiB", 3 << 29)])
def test_sizes_parse(text, size):
    (common,) = _bench_modules("common")
    assert common.parse_size(text) == size


def test_summary_collects_every_verdict_at_the_top(tmp_path):
    common, run_all = _bench_modules("common", "run_all")
    results = tmp_path / "R.md"
    common.report("fetch", "2. Fetch", ["### 1 GiB", "", common.verdict("wall", 0.8, 1.0),
                                        common.verdict("user CPU", 0.7, 0.6)], results)
    common.report("noop", "1. No-op", [common.verdict("ratio", 1.1, 1.5)], results)
    run_all.write_summary(results)
    run_all.write_summary(results)  # idempotent
    text = results.read_text()
    assert text.count("## Summary") == 1
    assert text.index("## Summary") < text.index("<!-- bench:fetch -->")
    summary = text[text.index("## Summary"):text.index("<!-- /bench:summary -->")]
    assert "**0.80x** (target <= 1.00x): met (1 GiB)" in summary
    assert "**0.70x** (target <= 0.60x): NOT met" in summary
    assert "restart: not run yet" in summary
