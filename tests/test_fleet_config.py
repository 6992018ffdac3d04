"""The fleet's pieces one at a time: the keys, a host's sessionURL, the front's site, the crontab without update."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
from crontab import CronTab

from conftest import build_release
from render_support import render_config
from support.doit import run_doit
from pvwtasks import config, health, render
from pvwtasks.errors import ConfigError

FRONT = textwrap.dedent("""
    [deploy]
    root = "{root}"

    [web]
    server_name = "127.0.0.1"
    http_port = 8090

    [fleet]
    health_interval = 3

    [fleet.hosts.gpu1]
    url = "http://10.0.0.11:80"

    [fleet.hosts.gpu-2]
    url = "http://10.0.0.12:8080"
    """)


def _front(tmp_path, text: str = FRONT):
    path = tmp_path / "front.toml"
    path.write_text(text.format(root=tmp_path / "root"))
    return path


def test_a_front_config_lists_its_hosts_and_needs_no_source(tmp_path):
    settings = config.load(_front(tmp_path))
    assert settings.fleet.front and settings.fleet.health_interval == 3
    assert {name: host.url for name, host in settings.fleet.hosts.items()} == {
        "gpu1": "http://10.0.0.11:80", "gpu-2": "http://10.0.0.12:8080"}


@pytest.mark.parametrize("change, complaint", [
    (("[fleet.hosts.gpu1]", "[fleet.hosts.'gpu.1']"), "[fleet.hosts.gpu.1]: a host's name is letters"),
    (('url = "http://10.0.0.11:80"', 'url = "10.0.0.11"'), "[fleet.hosts.gpu1] url: expected the host's Apache"),
    (('url = "http://10.0.0.11:80"', 'uri = "http://10.0.0.11:80"'), "[fleet.hosts.gpu1] uri: unknown key"),
])
def test_a_bad_fleet_entry_is_one_line_naming_it(tmp_path, change, complaint):
    with pytest.raises(ConfigError) as err:
        config.load(_front(tmp_path, FRONT.replace(*change)))
    assert complaint in str(err.value)


def test_a_host_config_still_needs_a_source_and_node_name_needs_public_url(tmp_path):
    host = tmp_path / "host.toml"
    host.write_text(f'[deploy]\nroot = "{tmp_path}/root"\n')
    with pytest.raises(ConfigError, match=r"\[source\] url: set either url"):
        config.load(host)
    host.write_text(f'[deploy]\nroot = "{tmp_path}/root"\n[source]\nurl = "http://x/a.tar.gz"\n'
                    '[web]\nnode_name = "gpu1"\n')
    with pytest.raises(ConfigError, match=r"\[web\] public_url: needed with node_name"):
        config.load(host)


def test_update_on_a_front_config_stops_with_one_line_and_touches_nothing(tmp_path):
    done = run_doit(_front(tmp_path), "update")
    assert done.returncode == 3, done.output
    assert "a fleet front ([fleet] hosts, no [source]) serves no release" in done.output
    assert not (tmp_path / "root").exists()


def test_the_front_site_balances_the_hosts_and_routes_each_node_to_its_host(tmp_path):
    settings = config.load(_front(tmp_path))
    render.render_file(settings, "front")  # checked by apache2 -t with the balancer modules
    text = settings.layout.front_file.read_text()
    for name, url in (("gpu1", "http://10.0.0.11:80"), ("gpu-2", "http://10.0.0.12:8080")):
        assert f"BalancerMember {url} route={name} " in text
        assert f"ProxyPass /node/{name}/ {url}/ upgrade=websocket" in text
    assert "hcuri=/paraview/pvwtasks-health hcexpr=pvw_answers hcinterval=3 " in text
    assert "ProxyPass /paraview/ balancer://pvwfleet/paraview/" in text
    # The balancer-manager answers only on the front itself, and is not proxied to a host.
    assert text.index("ProxyPass /balancer-manager !") < text.index("ProxyPass / balancer://pvwfleet/")
    assert "Require local" in text


def test_render_front_on_a_host_config_says_it_is_not_a_front(tmp_path, http_server):
    cfg = render_config(tmp_path, http_server.url("a.tar.gz"))
    done = run_doit(cfg, "render_front")
    assert done.returncode != 0
    assert "[fleet] hosts: none listed; only a fleet front renders pvw-front.conf" in done.output


@pytest.mark.parametrize("trame, expected", [
    (False, "ws://pvw.lab.org:8443/node/gpu1/proxy?sessionId=${id}&path=ws"),
    (True, "ws://USE_HOST/node/gpu1/proxy?sessionId=${id}&path=ws"),
])
def test_a_fleet_host_hands_out_session_urls_through_the_front(trame, expected):
    assert render.fleet_session_url("http://pvw.lab.org:8443", "gpu1", trame) == expected
    assert render.fleet_session_url("https://pvw.lab.org/", "gpu1").startswith("wss://pvw.lab.org/node/gpu1/")


@pytest.fixture
def host(tmp_path, http_server):
    """An installed stand-in release whose config says it is the fleet host gpu1 behind a front."""
    release = build_release(http_server.root)
    cfg = render_config(tmp_path, http_server.url(release.name),
                        web='node_name = "gpu1"\npublic_url = "http://front.lab:8090"',
                        extra="[cron]\nauto_update = false\n")
    assert run_doit(cfg, "install").returncode == 0
    return config.load(cfg)


def test_a_fleet_host_launch_json_names_the_front_and_its_node(host):
    render.render_file(host, "launcher")
    launch = json.loads(host.layout.launch_json.read_text())
    assert launch["configuration"]["sessionURL"] == "ws://front.lab:8090/node/gpu1/proxy?sessionId=${id}&path=ws"


def test_a_fleet_host_health_checks_its_sessions_on_its_own_apache(host):
    own = health.own_session_url(host, "ws://front.lab:8090/node/gpu1/proxy?sessionId=abc&path=ws")
    assert own == f"ws://127.0.0.1:{host.web.http_port}/proxy?sessionId=abc&path=ws"
    other = dataclasses.replace(host, web=dataclasses.replace(host.web, node_name=""))
    assert health.own_session_url(other, "ws://x/proxy?sessionId=a") == "ws://x/proxy?sessionId=a"


def test_a_host_driven_by_ansible_keeps_the_watchdog_but_has_no_update_line(host):
    render.render_file(host, "cron", dodo="/abs/dodo.py")
    text = render.output_path(host.layout, "cron").read_text()
    jobs = list(CronTab(tab=text))
    assert [str(job.slices) for job in jobs] == ["@reboot", "*/5 * * * *", "55 3 * * 1"]
    assert not any(" update config=" in job.command for job in jobs)
    assert "auto_update = false: no update line" in text


def test_the_role_turns_off_the_update_timer_pvwtasks_installs(tmp_path):
    """The role derives the update timer from the launcher unit `doit status --json` names: the real one."""
    import jinja2
    import yaml
    from ansible.plugins.filter.core import regex_replace

    from pvwtasks import systemd

    tasks = yaml.safe_load((Path(__file__).parent.parent / "ansible/roles/pvwtasks/tasks/main.yml").read_text())
    task = next(t for t in tasks if t.get("name", "").startswith("Keep the systemd update timer off"))
    env = jinja2.Environment()
    env.filters["regex_replace"] = regex_replace
    instance = systemd.instance_name(tmp_path / "root")
    for slot in ("a", "b"):
        name = env.from_string(task["ansible.builtin.systemd_service"]["name"]).render(
            pvwtasks_unit=systemd.slot_unit(instance, slot))
        assert name == systemd.unit_names(instance)["timer"]
