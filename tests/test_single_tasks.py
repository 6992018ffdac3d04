"""Single tasks work on the live release as it is: only `update` and `install` download, switch or prune."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from conftest import build_release, stop_deployment_processes, write_config
from pvwtasks import config
from pvwtasks.layout import Layout
from support.doit import run_doit

pytestmark = pytest.mark.timeout(240)


@dataclass
class Deployed:
    config: Path
    layout: Layout
    release: Path


@pytest.fixture
def deployed(tmp_path, http_server):
    """The 5.13.0 stand-in deployed by `doit update` (keep = 1); its processes end at teardown."""
    release = build_release(http_server.root, "5.13.0")
    cfg = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root", keep=1)
    layout = config.load(cfg).layout
    try:
        assert run_doit(cfg, "update").returncode == 0
        yield Deployed(cfg, layout, release)
    finally:
        stop_deployment_processes(layout.root)


@pytest.mark.parametrize("task", ["render_start", "render_launcher", "publish_hash", "render_index", "launcher"])
def test_a_single_task_never_downloads_switches_or_prunes(deployed, http_server, task):
    cfg, layout, first = deployed.config, deployed.layout, deployed.release
    live = layout.live_link.resolve()
    versions = sorted(p.name for p in layout.versions.iterdir())
    downloaded = layout.download_record.read_text()
    # A new release upstream: only `update` (or `install`) may take it.
    newer = build_release(http_server.root, "5.13.1")
    cfg.write_text(cfg.read_text().replace(first.name, newer.name))

    result = run_doit(cfg, task)

    assert result.returncode == 0, result.output
    for step in ("download", "verify", "install"):
        assert f"-- {step}" not in result.stdout and f".  {step}\n" not in result.stdout, result.stdout
    assert layout.live_link.resolve() == live
    assert sorted(p.name for p in layout.versions.iterdir()) == versions  # nothing pruned, nothing added
    assert layout.download_record.read_text() == downloaded
    if task == "render_launcher":
        assert str(live) in json.dumps(json.loads(layout.launch_json.read_text()))
    # `update` still takes the new release.
    assert run_doit(cfg, "update").returncode == 0
    assert "5.13.1" in layout.live_link.resolve().name


def test_landing_page_shows_each_runs_own_result(deployed):
    cfg, layout, release = deployed.config, deployed.layout, deployed.release
    meta = '<meta name="pvwtasks-last-result" content="{}">'
    assert meta.format("ok") in layout.index_page.read_text()
    cfg.write_text(cfg.read_text().replace(release.name, "gone.tar.gz"))  # upstream now answers 404
    for _ in range(2):
        assert run_doit(cfg, "update").returncode == 1
        page = layout.index_page.read_text()
        assert meta.format("failed") in page and "download" in page
    cfg.write_text(cfg.read_text().replace("gone.tar.gz", release.name))
    assert run_doit(cfg, "update").returncode == 0
    assert meta.format("ok") in layout.index_page.read_text()


def test_a_config_error_still_lets_status_and_stop_launcher_run(deployed):
    cfg, layout = deployed.config, deployed.layout
    pid = int(layout.pid_file.read_text())
    cfg.write_text(cfg.read_text().replace("stop_grace = 5", "stop_grace = -5"))  # a range error

    status = run_doit(cfg, "status", "--json")
    assert status.returncode != 0
    data = json.loads(status.stdout)
    assert "[launcher] stop_grace" in data["config_error"] and data["launcher"]["running"] is True
    assert "WARNING:" in status.stderr and "[launcher] stop_grace" in status.stderr

    stopped = run_doit(cfg, "stop_launcher")
    assert stopped.returncode == 0, stopped.output
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    update = run_doit(cfg, "update")  # everything else still stops with the one line
    assert update.returncode == 3 and "[launcher] stop_grace" in update.stderr


def test_doit_clean_keeps_what_serves_and_drops_leftovers(deployed):
    cfg, layout = deployed.config, deployed.layout
    serving = [layout.launch_json, layout.start_script, layout.index_page, layout.vhost_file, layout.hash_file]
    before = {path: path.read_bytes() for path in serving}
    leftover = layout.part_file("next.tar.gz")
    leftover.write_bytes(b"half")
    stale = layout.incoming_dir("abc-1")
    stale.mkdir(parents=True)

    result = run_doit(cfg, "clean")

    assert result.returncode == 0, result.output
    assert {path: path.read_bytes() for path in serving} == before
    assert not leftover.exists() and not stale.exists()
    assert layout.live_link.resolve().is_dir()
