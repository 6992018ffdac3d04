"""Render tasks are incremental under real `doit` runs: only what a config change touches re-renders."""

from __future__ import annotations

import re

import pytest

from conftest import build_release, stop_deployment_processes
from support.doit import run_doit
from support.ports import free_port
from pvwtasks import config
from support import tomlfile
from render_support import render_config

pytestmark = pytest.mark.timeout(240)

RENDER = ["render_vhost", "render_launcher", "render_start", "render_logrotate", "render_cron", "render_index"]


def _rendered(output: str) -> set[str]:
    """Render tasks doit ran (".  name"); "-- name" means up to date."""
    ran = set(re.findall(r"^\.  (render_\w+)", output, re.M))
    skipped = set(re.findall(r"^-- (render_\w+)", output, re.M))
    assert ran | skipped == set(RENDER), output
    return ran


@pytest.fixture
def deployed(tmp_path, http_server):
    release = build_release(http_server.root)
    cfg = render_config(tmp_path, http_server.url(release.name))
    yield cfg
    stop_deployment_processes(tmp_path / "root")


def test_only_what_a_config_change_touches_is_rendered_again(deployed):
    cfg = deployed
    assert run_doit(cfg, "install").returncode == 0
    first = run_doit(cfg, *RENDER)
    assert first.returncode == 0, first.output
    assert _rendered(first.output) == set(RENDER)
    again = run_doit(cfg, *RENDER)
    assert _rendered(again.output) == set()
    tomlfile.update(cfg, {"web": {"server_name": "pvw.example.org"}})
    renamed = run_doit(cfg, *RENDER)
    assert renamed.returncode == 0, renamed.output
    assert _rendered(renamed.output) == {"render_vhost", "render_launcher", "render_index"}
    root = config.load(cfg).layout
    assert "ServerName pvw.example.org" in (root.conf / "pvw-vhost.conf").read_text()
    assert "ws://pvw.example.org:" in (root.conf / "launch.json").read_text()
    tomlfile.update(cfg, {"web": {"proxy_timeout": 7200}})
    assert _rendered(run_doit(cfg, *RENDER).output) == {"render_vhost"}
    tomlfile.update(cfg, {"logrotate": {"size": "20M"}})
    assert _rendered(run_doit(cfg, *RENDER).output) == {"render_logrotate"}
    tomlfile.update(cfg, {"cron": {"update": "15 1 * * *"}})
    assert _rendered(run_doit(cfg, *RENDER).output) == {"render_cron"}
    second = free_port()  # the upgrade slot's port: Apache's routes to slot b live in the vhost
    tomlfile.update(cfg, {"launcher": {"second_port": second}})
    assert _rendered(run_doit(cfg, *RENDER).output) == {"render_vhost"}
    assert f":{second}/" in (root.conf / "pvw-vhost.conf").read_text()
    assert _rendered(run_doit(cfg, *RENDER).output) == set()


def test_an_update_rerun_with_nothing_changed_renders_nothing(deployed):
    cfg = deployed
    first = run_doit(cfg, "update")
    assert first.returncode == 0, first.output
    assert _rendered(first.output) == set(RENDER)
    # The landing page shows the last update's result: the first result ("ok") is news to it once.
    second = run_doit(cfg, "update")
    assert second.returncode == 0, second.output
    assert _rendered(second.output) <= {"render_index"}
    third = run_doit(cfg, "update")
    assert third.returncode == 0, third.output
    assert _rendered(third.output) == set()
    tomlfile.update(cfg, {"web": {"server_name": "pvw.example.org"}})
    renamed = run_doit(cfg, "update")
    assert renamed.returncode == 0, renamed.output
    assert _rendered(renamed.output) == {"render_vhost", "render_launcher", "render_index"}
