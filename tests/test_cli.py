"""What a person or a monitoring script sees from doit itself: list, status --json."""

from __future__ import annotations

import json

from support.doit import run_doit


def test_doit_list_reads_like_a_table_of_contents(deployment):
    result = run_doit(deployment["config"], "list")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    names = [line.split()[0] for line in lines]
    pipeline = ["lock", "download", "verify", "install", "venv", "web_client", "extras", "publish_hash", "proxy_file",
                "render_vhost", "render_launcher", "render_start", "render_logrotate", "render_cron", "render_index",
                "apache_site", "web_access", "compare_hash", "drain", "launcher", "prune_logs", "notify", "update"]
    assert names[:len(pipeline)] == pipeline
    for task in ("status", "restart_launcher", "start_launcher", "stop_launcher", "notify_test",
                 "install_cron", "uninstall_cron", "install_vhost", "uninstall_vhost", "render_front", "install_front"):
        assert task in names
    assert all(len(line.split(None, 1)) == 2 and len(line.split(None, 1)[1]) > 20 for line in lines), lines


def test_status_json_is_pure_json_for_monitoring(deployment):
    result = run_doit(deployment["config"], "status", "--json")
    assert result.returncode != 0  # nothing deployed yet, launcher down
    data = json.loads(result.stdout)
    assert data["live"] is None
    assert "launcher" in data and "last_update" in data


def test_doit_info_says_why_a_task_would_run_in_words(deployment):
    result = run_doit(deployment["config"], "info", "download")
    assert "upstream unchanged (a HEAD of the release URL matches the verified download)" in result.stdout
    assert "config unchanged since the last run: [source]" in result.stdout
    assert "<function" not in result.output and " object at 0x" not in result.output
    launcher = run_doit(deployment["config"], "info", "launcher")
    assert "the launcher runs, healthy, with the live release" in launcher.stdout


def test_list_info_and_status_leave_a_new_root_untouched(deployment):
    for args in (("list",), ("info", "launcher"), ("status",), ("status", "--json")):
        result = run_doit(deployment["config"], *args)
        assert result.returncode in (0, 1), result.output  # status: nothing deployed is a failure, not a crash
    assert not deployment["root"].exists()
