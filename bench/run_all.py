"""Run every benchmark (1-4) one after the other, then put a summary of all verdicts at the top of RESULTS.md.

    .venv/bin/python bench/run_all.py              # the full set, about 15 minutes on 2 cores
    .venv/bin/python bench/run_all.py --summary    # only rebuild the summary from RESULTS.md
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import common

SCRIPTS = ["bench_noop.py", "bench_fetch.py", "bench_restart.py", "bench_scaling.py", "bench_trame.py",
           "bench_upgrade.py", "bench_fleet.py"]
ORDER = ["noop", "fetch", "restart", "scaling", "trame", "upgrade", "fleet"]


def summary(results=common.RESULTS) -> list[str]:
    text = results.read_text()
    lines = ["## Summary", "", "Every verdict below comes from the sections that follow (same file, each with "
             "its command and machine).", ""]
    for key in ORDER:
        match = re.search(rf"<!-- bench:{key} -->\n(.*?)<!-- /bench:{key} -->", text, re.DOTALL)
        if not match:
            lines.append(f"- {key}: not run yet")
            continue
        section = match.group(1)
        title = re.search(r"^## (.*)$", section, re.MULTILINE).group(1)
        when = re.search(r"date \(UTC\): (.*)$", section, re.MULTILINE)
        lines.append(f"**{title}** ({when.group(1) if when else '?'} UTC)")
        lines.append("")
        heading = ""
        for line in section.splitlines():
            if line.startswith("### "):
                heading = line[4:]
            elif line.startswith("- ") and ("target" in line or "flat" in line or "linear" in line):
                lines.append(f"{line} {'(' + heading + ')' if heading and 'target' in line else ''}".rstrip())
        lines.append("")
    return lines


def write_summary(results=common.RESULTS) -> None:
    block = "\n".join(["<!-- bench:summary -->", *summary(results), "<!-- /bench:summary -->"])
    text = results.read_text()
    start, end = "<!-- bench:summary -->", "<!-- /bench:summary -->"
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        head, sep, rest = text.partition("\n<!-- bench:")
        text = head.rstrip("\n") + "\n\n" + block + "\n" + (sep.lstrip("\n") and "\n<!-- bench:" + rest)
    results.write_text(text)
    print("\n".join(summary(results)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true", help="only rebuild the summary")
    args = parser.parse_args(argv)
    failed = []
    if not args.summary:
        for script in SCRIPTS:
            common.progress(f"== {script}")
            proc = subprocess.run([sys.executable, str(common.BENCH / script)])
            if proc.returncode != 0:
                failed.append(script)
    write_summary()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
