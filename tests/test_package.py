"""`pip install .` without -e: the wheel carries the templates and the documented config, and renders from them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(300)

RENDER = """
import sys
from pathlib import Path
import pvwtasks
from pvwtasks import config, render
settings = config.load(Path(sys.argv[1]))
for name in ("logrotate", "cron"):
    render.render_file(settings, name)
print(pvwtasks.__file__)
print(render.template_file("logrotate"))
"""


def _run(words: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(w) for w in words], capture_output=True, text=True, timeout=240, **kwargs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_an_installed_wheel_prints_the_documented_config_and_renders_from_its_own_templates(tmp_path):
    # Build from a copy, so the build leaves no build/ or egg-info in the project.
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, src / name)
    for folder in ("pvwtasks", "config"):
        shutil.copytree(PROJECT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", src, "-w", tmp_path / "wheels"])
    wheel, = (tmp_path / "wheels").glob("pvwtasks-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # The dependencies come from this test's environment: a path in a .pth file is appended after the
    # venv's own site-packages, and .pth files inside it (an editable pvwtasks) are not run.
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "deps-from-tests.pth").write_text("\n".join(sorted(ours)) + "\n")

    etc = tmp_path / "etc"
    etc.mkdir()
    example = _run([python, "-I", "-m", "pvwtasks.config", "--example"], cwd=tmp_path).stdout
    assert example == (PROJECT / "config" / "pvw.toml").read_text()
    (etc / "pvw.toml").write_text(example)  # its relative root is ../_demo/root: tmp_path/_demo/root

    shown = _run([python, "-I", "-c", RENDER, etc / "pvw.toml"], cwd=tmp_path).stdout.splitlines()
    assert Path(shown[0]).is_relative_to(site) and Path(shown[1]).is_relative_to(site)
    root = tmp_path / "_demo" / "root"
    assert f"-s {root}/.pvwtasks/logrotate.state" in (root / "conf" / "logrotate.conf").read_text()
    assert f"update config={etc / 'pvw.toml'}" in (root / "conf" / "crontab").read_text()
