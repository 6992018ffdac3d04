"""What a person or a monitoring script sees from doit itself: list, status --json."""

from __future__ import annotations

import json

from support.doit import run_doit


def test_doit_list_reads_like_a_table_of_contents(deployment):
    result = run_doit(deployment["config"], "list")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    names = [line.split()[0] for line in lines]
    pipeline = ["lock", "download", "verify", "install", "extras", "publish_hash", "proxy_file", "render_vhost",
                "render_launcher", "render_start", "render_logrotate", "render_cron", "render_index",
                "compare_hash", "launcher", "notify", "update"]
    assert names[:len(pipeline)] == pipeline
    for task in ("status", "restart_launcher", "start_launcher", "stop_launcher", "notify_test",
                 "install_cron", "uninstall_cron", "install_vhost"):
        assert task in names
    assert all(len(line.split(None, 1)) == 2 and len(line.split(None, 1)[1]) > 20 for line in lines), lines


def test_status_json_is_pure_json_for_monitoring(deployment):
    result = run_doit(deployment["config"], "status", "--json")
    assert result.returncode != 0  # nothing deployed yet, launcher down
    data = json.loads(result.stdout)
    assert data["live"] is None
    assert "launcher" in data and "last_update" in data
