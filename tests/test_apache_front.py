"""Apache as the true front: `update` reinstalls a changed vhost and health-checks through Apache.

A real private Apache daemon stands in for the system one (see apache_support): pvwtasks drives it
through ``[web] apachectl`` exactly as it drives apache2ctl, and installs into sites folders of the test.
"""

from __future__ import annotations

import pytest
import requests

from apache_support import ManagedApache, post_session, websocket_status
from conftest import build_release, stop_deployment_processes
from support.doit import run_doit
from support.ports import free_port
from pvwtasks import apache, config
from render_support import render_config

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def front(tmp_path, http_server):
    """A deployment whose Apache (a private daemon, not yet running) is managed by pvwtasks."""
    release = build_release(http_server.root)
    port = free_port()
    managed = ManagedApache(tmp_path / "apache", [port])
    cfg = render_config(tmp_path, http_server.url(release.name), http_port=port, web=managed.web_toml())
    yield {"config": cfg, "apache": managed, "port": port, "base": f"http://127.0.0.1:{port}"}
    stop_deployment_processes(tmp_path / "root")
    managed.stop()


def _set(cfg, old: str, new: str) -> None:
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new, 1))


def test_update_installs_the_vhost_starts_apache_and_checks_health_through_it(front):
    done = run_doit(front["config"], "update")
    assert done.returncode == 0, done.output
    managed, base = front["apache"], front["base"]
    settings = config.load(front["config"])
    installed = managed.sites / "pvw-vhost.conf"
    assert installed.read_bytes() == settings.layout.vhost_file.read_bytes()
    assert (managed.enabled / "pvw-vhost.conf").resolve() == installed.resolve()
    # Apache was not running: the graceful started it, and pvwtasks says so.
    assert managed.calls_made() == ["configtest", "graceful"]
    assert "started Apache (it was not running)" in done.output
    assert managed.pid() is not None
    # The health check went through Apache's front URL.
    assert f"health check ok through the front {base}/paraview/" in done.output
    session = post_session(base, "loader")
    assert session["sessionURL"].startswith(f"ws://127.0.0.1:{front['port']}/proxy?sessionId=")
    assert websocket_status(session["sessionURL"]) == 101

    # Nothing changed: the site is not reinstalled, Apache not reloaded.
    again = run_doit(front["config"], "update")
    assert again.returncode == 0, again.output
    assert managed.calls_made() == ["configtest", "graceful"]


def test_a_changed_launcher_port_reinstalls_the_vhost_and_reloads_apache(front):
    assert run_doit(front["config"], "update").returncode == 0
    managed, base = front["apache"], front["base"]
    pid = managed.pid()
    settings = config.load(front["config"])
    new_port = free_port()
    _set(front["config"], f"port = {settings.launcher.port}\n", f"port = {new_port}\n")

    done = run_doit(front["config"], "update")
    assert done.returncode == 0, done.output
    installed = (managed.sites / "pvw-vhost.conf").read_text()
    assert f"http://127.0.0.1:{new_port}/paraview/" in installed
    assert f":{settings.launcher.port}/" not in installed
    assert managed.calls_made() == ["configtest", "graceful", "configtest", "graceful"]
    assert "reloaded Apache gracefully" in done.output
    assert managed.pid() == pid  # a graceful reload, not a restart
    assert f"health check ok through the front {base}/paraview/" in done.output
    session = post_session(base, "loader")
    assert websocket_status(session["sessionURL"]) == 101


def test_a_hand_edited_installed_vhost_is_put_back_by_update(front):
    assert run_doit(front["config"], "update").returncode == 0
    managed, base = front["apache"], front["base"]
    settings = config.load(front["config"])
    installed = managed.sites / "pvw-vhost.conf"
    # Someone points the installed site at a dead port by hand and reloads Apache: the front is broken.
    dead = free_port()
    dead_map = front["apache"].folder / "dead-active.txt"  # new sessions go where the active-slot map says
    dead_map.write_text(f"launcher 127.0.0.1:{dead}\n")
    installed.write_text(installed.read_text().replace(str(settings.layout.active_map), str(dead_map)))
    assert apache.site_current(settings) is False
    managed.graceful()
    assert requests.post(f"{base}/paraview/", json={"application": "loader"}, timeout=30).status_code == 503

    done = run_doit(front["config"], "update")
    assert done.returncode == 0, done.output
    assert installed.read_bytes() == settings.layout.vhost_file.read_bytes()
    assert "reloaded Apache gracefully" in done.output
    assert websocket_status(post_session(base, "loader")["sessionURL"]) == 101


def test_a_broken_front_fails_the_update_through_its_health_check(front):
    assert run_doit(front["config"], "update").returncode == 0
    managed = front["apache"]
    # The vhost moves to a port Apache does not listen on: configtest and graceful pass, the front is dead.
    dead = free_port()
    _set(front["config"], f"http_port = {front['port']}\n", f"http_port = {dead}\n")
    done = run_doit(front["config"], "update")
    assert done.returncode != 0, done.output
    assert f"health check through the front (Apache): POST http://127.0.0.1:{dead}/paraview/ failed" in done.output
    assert managed.calls_made()[-2:] == ["configtest", "graceful"]


def test_a_vhost_apache_rejects_leaves_the_previous_site_and_fails_the_update(front, tmp_path):
    assert run_doit(front["config"], "update").returncode == 0
    managed = front["apache"]
    installed = managed.sites / "pvw-vhost.conf"
    good = installed.read_bytes()
    # Apache's own config now refuses the vhost's proxy directives: mod_proxy is no longer loaded.
    managed.conf.write_text("\n".join(line for line in managed.conf.read_text().splitlines()
                                      if "mod_proxy" not in line) + "\n")
    _set(front["config"], "proxy_timeout = 600\n", "proxy_timeout = 700\n")
    done = run_doit(front["config"], "update")
    assert done.returncode != 0
    assert "configtest` rejects pvw-vhost.conf, previous state restored" in done.output
    assert installed.read_bytes() == good


def test_uninstall_vhost_removes_the_site_and_reloads(front):
    assert run_doit(front["config"], "update").returncode == 0
    managed = front["apache"]
    done = run_doit(front["config"], "uninstall_vhost")
    assert done.returncode == 0, done.output
    assert not (managed.sites / "pvw-vhost.conf").exists()
    assert not (managed.enabled / "pvw-vhost.conf").is_symlink()
    assert "reloaded Apache gracefully" in done.output and "removed " in done.output
    assert managed.calls_made()[-1] == "graceful"
    assert requests.post(f"{front['base']}/paraview/", json={"application": "loader"}, timeout=30).status_code == 404
    # Nothing left: says so, and leaves Apache alone.
    calls = managed.calls_made()
    again = run_doit(front["config"], "uninstall_vhost")
    assert again.returncode == 0 and "not installed; nothing to remove" in again.output
    assert managed.calls_made() == calls


def test_uninstall_vhost_leaves_a_stopped_apache_stopped(front):
    assert run_doit(front["config"], "update").returncode == 0
    managed = front["apache"]
    managed.stop()
    calls = managed.calls_made()
    done = run_doit(front["config"], "uninstall_vhost")
    assert done.returncode == 0, done.output
    assert "Apache is not running; not reloaded" in done.output
    assert managed.calls_made() == calls and managed.pid() is None
    assert not (managed.sites / "pvw-vhost.conf").exists()


def test_a_failed_graceful_puts_the_previous_site_back(front):
    assert run_doit(front["config"], "update").returncode == 0
    managed = front["apache"]
    installed = managed.sites / "pvw-vhost.conf"
    good = installed.read_bytes()
    text = managed.ctl.read_text()
    assert "  graceful|start" in text
    managed.ctl.write_text(text.replace("  graceful|start", '  graceful) echo "httpd could not be restarted" >&2; '
                                                        "exit 7 ;;\n  start"))
    _set(front["config"], "proxy_timeout = 600\n", "proxy_timeout = 700\n")
    done = run_doit(front["config"], "update")
    assert done.returncode != 0
    assert "graceful` failed: httpd could not be restarted" in done.output
    assert installed.read_bytes() == good


def test_a_new_release_behind_a_broken_front_is_rolled_back(front, http_server):
    from pvwtasks import releases

    assert run_doit(front["config"], "update").returncode == 0
    settings = config.load(front["config"])
    good = releases.live_release(settings.layout)
    serving = int(settings.layout.pid_file.read_text())
    newer = build_release(http_server.root, "5.13.1")
    text = front["config"].read_text()
    old_url = next(line for line in text.splitlines() if line.startswith("url = "))
    _set(front["config"], old_url, f'url = "{http_server.url(newer.name)}"')
    dead = free_port()  # and the front moves to a port Apache does not listen on
    _set(front["config"], f"http_port = {front['port']}\n", f"http_port = {dead}\n")
    done = run_doit(front["config"], "update")
    assert done.returncode != 0
    assert "through the front (Apache)" in done.output
    assert f"rolling back to {good.name}" in done.output
    live = releases.live_release(settings.layout)
    assert live.name == good.name
    bad = [r for r in releases.all_releases(settings.layout) if r.name != good.name]
    assert len(bad) == 1 and bad[0].version == "5.13.1" and bad[0].failed
    # The new release passed on its own port (slot b), failed through the front, and was stopped;
    # slot a, which served throughout, takes new sessions again.
    from pvwtasks import processes, slots

    assert "fails through the front; new sessions go back to slot a" in done.output
    assert slots.state(settings).active == "a" and settings.layout.active_map.read_text() == \
        slots.active_map_text(settings, "a")
    assert processes.find_launcher(settings.for_slot("a")).pid == serving
    assert processes.find_launcher(settings.for_slot("b")) is None
