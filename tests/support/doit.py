"""Running this project's ``doit`` as a real subprocess, the way cron does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent.parent
DODO = PROJECT / "dodo.py"
DOIT = [sys.executable, "-m", "doit"]


@dataclass
class DoitRun:
    """How one ``doit`` process ended."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("ERROR")]


def doit_env(env: dict | None = None) -> dict:
    """The test's environment plus ``env``, without a ``PVW_CONFIG`` that would override ``config=``."""
    full = {**os.environ, **(env or {})}
    full.pop("PVW_CONFIG", None)
    return full


def doit_cmd(config: Path, *args: str) -> list[str]:
    """``python -m doit -f dodo.py ARGS config=CONFIG``."""
    return [*DOIT, "-f", str(DODO), *args, f"config={config}"]


def run_doit(config: Path, *args: str, env: dict | None = None, timeout: float = 180) -> DoitRun:
    """Run ``doit ARGS config=CONFIG`` in a real subprocess (cwd: the config's folder) and wait for it."""
    started = time.monotonic()
    proc = subprocess.run(doit_cmd(config, *args), capture_output=True, text=True, env=doit_env(env),
                          timeout=timeout, cwd=config.parent)
    return DoitRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def start_doit(config: Path, *args: str, env: dict | None = None, log_dir: Path | None = None) -> subprocess.Popen:
    """Start ``doit ARGS config=CONFIG`` without waiting; output goes to a file in ``log_dir`` (see output_of)."""
    log_dir = log_dir or config.parent
    out = open(log_dir / f"doit-{time.monotonic_ns()}.out", "w+")
    proc = subprocess.Popen(doit_cmd(config, *args), stdout=out, stderr=subprocess.STDOUT, text=True,
                            env=doit_env(env), cwd=config.parent)
    proc.output_file = out
    return proc


def output_of(proc: subprocess.Popen) -> str:
    """Everything a process started by start_doit printed so far (stdout and stderr together)."""
    proc.output_file.seek(0)
    return proc.output_file.read()
