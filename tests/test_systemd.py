"""systemd supervision: cron schedules become valid OnCalendar values that fire at the same times."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pvwtasks import systemd
from pvwtasks.errors import PvwError

needs_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")


@pytest.mark.parametrize("cron, expected", [
    ("0 4 * * 1", "Mon *-*-* 04:00:00"),
    ("55 3 * * 1", "Mon *-*-* 03:55:00"),
    ("*/15 * * * *", "*-*-* *:00/15:00"),
    ("30 2 1 * *", "*-*-1 02:30:00"),
    ("0 1-5 * jan-mar mon-fri", "Mon..Fri *-1..3-* 01..05:00:00"),
    ("0 4 * * 0,6", "Sun,Sat *-*-* 04:00:00"),
    ("0 0-12/6 * * *", "*-*-* 00,06,12:00:00"),
    ("@daily", "daily"),
])
def test_cron_schedule_becomes_on_calendar(cron, expected):
    assert systemd.on_calendar(cron) == expected


def test_reboot_has_no_calendar_form():
    with pytest.raises(PvwError, match="no systemd calendar form"):
        systemd.on_calendar("@reboot")


@needs_analyze
@pytest.mark.parametrize("cron, next_hit", [
    ("0 4 * * 1", "Mon"),
    ("*/15 * * * *", ":"),
    ("0 1-5 * jan-mar mon-fri", "01:00:00"),
    ("0 0-12/6 * * *", ":00:00"),
])
def test_systemd_accepts_the_calendar(cron, next_hit):
    proc = subprocess.run(["systemd-analyze", "calendar", systemd.on_calendar(cron)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Next elapse" in proc.stdout and next_hit in proc.stdout


def test_instance_names_are_unit_safe_and_distinct(tmp_path):
    one, two = systemd.instance_name(tmp_path / "a b"), systemd.instance_name(tmp_path / "c")
    assert one != two and " " not in one and "/" not in one
    assert systemd.unit_names(one)["timer"].endswith(".timer")
