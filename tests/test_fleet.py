"""Several hosts behind one front, rolled forward by the real Ansible (README "Several hosts").

One machine plays the fleet (tests/fleet_support.py): three deployments as hosts, each with its own
root, ports and private Apache, and a front Apache that pvwtasks renders and the role installs.  The
tests share one fleet and run in order: a first rollout, sessions through the front, a host that goes
down and comes back, a rolling upgrade under a poller, and a broken release that stops the rollout.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from apache_support import post_session, websocket_status
from conftest import FileServer, build_release
from fleet_support import Fleet, Poller, end_session, node_of
from support.doit import run_doit
from support.waiting import wait_until
from pvwtasks import config, releases

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Three hosts and a front, with release 5.13.0 rolled out by ansible-playbook."""
    folder = tmp_path_factory.mktemp("fleet")
    (folder / "served").mkdir()
    server = FileServer(folder / "served")
    server.thread.start()
    made = Fleet(folder)
    made.server = server
    try:
        first = build_release(server.root, "5.13.0")
        made.first_rollout = made.rollout(server.url(first.name))
        yield made
    finally:
        made.stop()
        server.httpd.shutdown()
        server.httpd.server_close()


def _live(fleet, name):
    return releases.live_release(config.load(fleet.hosts[name].config).layout)


def _post(fleet) -> dict:
    return post_session(fleet.front_url, "loader")


def test_the_rollout_deploys_every_host_and_the_front_reports_them(fleet):
    done = fleet.first_rollout
    assert done.returncode == 0, done.output[-6000:]
    for name, host in fleet.hosts.items():
        assert _live(fleet, name).version == "5.13.0"
        text = host.config.read_text()
        assert f'node_name = "{name}"' in text and f'public_url = "{fleet.front_url}"' in text
        assert "auto_update = false" in text
        # Supervised by cron with no update line of its own: the watchdog, @reboot and logrotate stay.
        crontab = host.crontab_store.read_text()
        assert "pvwtasks.watchdog" in crontab and "@reboot" in crontab and "logrotate" in crontab
        assert " update config=" not in crontab
    code, status = fleet.front_status()
    assert code == 0, status
    assert sorted(status["hosts"]) == ["h1", "h2", "h3"]
    for name, host in status["hosts"].items():
        assert (host["version"], host["healthy"], host["in_balancer"]) == ("5.13.0", True, True), (name, host)
    assert status["versions"] == ["5.13.0"]


def test_thirty_sessions_through_the_front_spread_over_hosts_and_reach_their_websockets(fleet):
    with ThreadPoolExecutor(3) as pool:
        sessions = list(pool.map(lambda _: _post(fleet), range(30)))
    try:
        assert all(s["sessionURL"].startswith(f"ws://127.0.0.1:{fleet.front_port}/node/") for s in sessions)
        nodes = {node_of(session) for session in sessions}
        assert len(nodes) >= 2 and nodes <= set(fleet.hosts), nodes
        # One at a time once all have started: wslink rewrites proxy.txt in place (truncate, then write), and an
        # Apache lookup between the two, within one mtime tick, keeps a partial map (a 400) until the next change.
        assert [websocket_status(session["sessionURL"]) for session in sessions] == [101] * 30
    finally:
        for session in sessions:
            end_session(fleet.front_url, session)


def _in_balancer(fleet, name):
    return fleet.front_status()[1]["hosts"][name]["in_balancer"]


def test_a_host_that_goes_down_leaves_the_balancer_and_comes_back_by_itself(fleet):
    h3 = fleet.hosts["h3"]
    assert run_doit(h3.config, "stop_launcher").returncode == 0
    wait_until(lambda: _in_balancer(fleet, "h3") is False, timeout=30, interval=0.5, what="h3 out of the balancer")
    nodes = [node_of(_post(fleet)) for _ in range(8)]
    assert "h3" not in nodes and len(nodes) == 8
    code, status = fleet.front_status()
    assert code != 0 and not status["hosts"]["h3"]["healthy"]  # the front's status says which host is sick
    shown = run_doit(fleet.front_config, "status")
    h3_line = next(line for line in shown.stdout.splitlines() if line.strip().startswith("h3 "))
    assert "UNHEALTHY (launcher not answering" in h3_line and "OUT of balancer" in h3_line, shown.stdout
    assert "ERROR: status: fleet hosts not healthy: h3" in shown.output

    assert run_doit(h3.config, "start_launcher").returncode == 0
    wait_until(lambda: _in_balancer(fleet, "h3") is True, timeout=30, interval=0.5, what="h3 back in the balancer")
    nodes = [node_of(_post(fleet)) for _ in range(6)]
    assert "h3" in nodes


def test_a_bad_inventory_value_stops_at_the_first_host_and_changes_no_config(fleet):
    configs = {name: host.config.read_bytes() for name, host in fleet.hosts.items()}
    newer = build_release(fleet.server.root, "5.13.1")
    settings = Fleet.shared_settings(fleet.server.url(newer.name))
    settings["launcher"]["timeout"] = "soon"
    done = fleet.rollout(fleet.server.url(newer.name), extra_vars={"pvwtasks_settings": settings})
    assert done.returncode != 0
    assert "[launcher] timeout: expected int, got str 'soon'" in done.output  # pvwtasks' own one line
    assert {name: host.config.read_bytes() for name, host in fleet.hosts.items()} == configs
    assert [_live(fleet, name).version for name in fleet.hosts] == ["5.13.0"] * 3
    assert "h2" not in re.findall(r"^(?:changed|ok|fatal): \[(\w+)\]", done.output, re.M)


def test_a_poller_through_the_front_sees_no_failed_post_across_a_rolling_upgrade(fleet):
    newer = build_release(fleet.server.root, "5.13.1")
    with Poller(fleet.front_url) as poller, Poller(fleet.front_url, pause=0.1) as second:
        done = fleet.rollout(fleet.server.url(newer.name))
        time.sleep(1)
    assert done.returncode == 0, done.output[-6000:]
    assert [_live(fleet, name).version for name in fleet.hosts] == ["5.13.1"] * 3
    polls = poller.polls + second.polls
    assert len(polls) >= 40, polls
    assert poller.failures + second.failures == [], poller.failures + second.failures
    assert len({p.node for p in polls}) >= 2
    # Each host was out of the balancer while it updated: its sessions stop and resume, the others' never do.
    assert "Take this host out of the front's balancer" in done.output


def test_a_broken_release_stops_the_rollout_after_the_first_host(fleet):
    broken = build_release(fleet.server.root, "5.13.2", broken="hang")
    with Poller(fleet.front_url) as poller:
        done = fleet.rollout(fleet.server.url(broken.name))
        time.sleep(1)
    assert done.returncode != 0, done.output[-6000:]
    h1 = config.load(fleet.hosts["h1"].config).layout
    tried = [r for r in releases.all_releases(h1) if r.version == "5.13.2"]
    assert len(tried) == 1 and tried[0].failed  # h1 tried it, failed its health check and rolled back
    assert releases.live_release(h1).version == "5.13.1"
    for name in ("h2", "h3"):  # never reached: the old release, nothing downloaded
        layout = config.load(fleet.hosts[name].config).layout
        assert releases.live_release(layout).version == "5.13.1"
        assert [r.version for r in releases.all_releases(layout) if r.version == "5.13.2"] == []
        assert "5.13.2" not in fleet.hosts[name].config.read_text()
    # The front never handed a user to h1 once it started on the broken release, and still does not.
    assert poller.failures == [], poller.failures
    assert all(p.node != "h1" for p in poller.polls if p.finished >= tried[0].installed_at), poller.polls
    assert {node_of(_post(fleet)) for _ in range(8)} <= {"h2", "h3"}
    status = fleet.front_status()[1]
    assert status["hosts"]["h1"]["in_balancer"] is False and status["hosts"]["h1"]["balancer"].find("Dis") >= 0
    assert status["versions"] == ["5.13.1"]
