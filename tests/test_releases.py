"""The previous good release (the rollback target, shown by status) from real release records on disk."""

from __future__ import annotations

import os

import psutil

from pvwtasks import releases
from pvwtasks.layout import Layout, ReleaseRecord


def _installed(layout: Layout, name: str, at: float, healthy: bool = False, failed: bool = False) -> None:
    layout.release_dir(name).mkdir(parents=True)
    ReleaseRecord(name=name, top_folder=name, version=name, sha256=name * 8, url="http://x/" + name, size=1,
                  installed_at=at, pvpython="bin/pvpython", site_packages="lib", python_version="3.11",
                  failed={"at": at, "reason": "broken"} if failed else None,
                  healthy_at=at + 1 if healthy else None).save(layout.release_record(name))


def _make_live(layout: Layout, name: str) -> None:
    os.symlink(os.path.join("versions", name), layout.live_link)


def test_previous_good_is_the_newest_health_checked_release_that_is_neither_live_nor_failed(tmp_path):
    layout = Layout(tmp_path)
    _installed(layout, "a", 1, healthy=True)
    _installed(layout, "b", 2, healthy=True)
    _installed(layout, "c", 3, healthy=True, failed=True)  # passed once, failed later
    _installed(layout, "d", 4)  # installed, never health-checked
    _installed(layout, "e", 5)
    assert releases.previous_good(layout) is None  # no live release: nothing to roll back from
    _make_live(layout, "e")
    assert releases.previous_good(layout).name == "b"
    releases.mark_healthy(layout, "d", 9.0)
    assert releases.previous_good(layout).name == "d"
    releases.mark_failed(layout, "d", "health check failed")
    assert releases.previous_good(layout).name == "b"


def test_prune_keeps_the_rollback_target_even_when_newer_releases_were_never_checked(tmp_path):
    layout = Layout(tmp_path)
    _installed(layout, "a", 1, healthy=True)
    _installed(layout, "b", 2)
    _installed(layout, "c", 3)
    _installed(layout, "d", 4)
    _make_live(layout, "d")
    removed = releases.prune(layout, keep=2)
    assert removed == ["b"]
    assert {r.name for r in releases.all_releases(layout)} == {"a", "c", "d"}
    assert releases.previous_good(layout).name == "a"


def test_switch_live_writes_installed_json_without_the_health_and_failure_marks(tmp_path):
    layout = Layout(tmp_path)
    _installed(layout, "a", 1, healthy=True)
    assert releases.switch_live(layout, releases.all_releases(layout)[0]) is True
    installed = ReleaseRecord.load(layout.installed_record)
    assert installed.name == "a" and installed.healthy_at is None and installed.failed is None
    assert releases.live_release(layout).healthy_at == 2


def test_prune_never_removes_a_release_a_launcher_slot_still_serves(tmp_path):
    from pvwtasks.layout import LauncherRecord

    layout = Layout(tmp_path)
    for n, name in enumerate("abcd"):
        _installed(layout, name, n + 1, healthy=True)
    _make_live(layout, "d")
    layout.state.mkdir(parents=True)
    # Slot b drains release a (its "launcher" is this very process, which runs); slot a ran b but
    # was stopped (pid None); a record naming a process that is gone (c) serves nothing either.
    me = psutil.Process()
    LauncherRecord(pid=me.pid, create_time=me.create_time(), release="a", launch_json=None, start_sh=None,
                   port=1, started_at=1.0).save(layout.for_slot("b").launcher_record)
    LauncherRecord(pid=None, create_time=1.0, release="b", launch_json=None, start_sh=None, port=1,
                   started_at=1.0).save(layout.for_slot("a").launcher_record)
    assert releases.in_use(layout) == {"a"}
    LauncherRecord(pid=me.pid, create_time=me.create_time() - 100, release="c", launch_json=None, start_sh=None,
                   port=1, started_at=1.0).save(layout.for_slot("a").launcher_record)
    assert releases.in_use(layout) == {"a"}
    removed = releases.prune(layout, keep=2)
    assert removed == ["b"]
    assert {r.name for r in releases.all_releases(layout)} == {"a", "c", "d"}
