"""Each release family deploys with no apps named, and a session through the rendered vhost answers.

The stand-ins follow RELEASES.md's layouts (pvwtasks.demo --family); the
front is a real Apache running the rendered vhost, the launcher is wslink's.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import msgpack
import pytest
import requests
from wslink.chunking import UnChunker, generate_chunks

from conftest import build_release, stop_deployment_processes
from pvwtasks import config, families
from pvwtasks.layout import HashRecord
from render_support import Apache, env_without_display, httpd_conf, render_config
from support.doit import run_doit

pytestmark = pytest.mark.timeout(300)


async def _echo(url: str, secret: str) -> dict:
    """Open the session's websocket, say hello with its secret, call the stand-in's echo RPC."""
    hello = {"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello", "args": [{"secret": secret}],
             "kwargs": {}}
    call = {"wslink": "1.0", "id": "rpc:c0:1", "method": "test.echo", "args": ["ping"], "kwargs": {}}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40)) as session:
        async with session.ws_connect(url) as ws:
            assert ws._response.status == 101
            unchunker = UnChunker()
            unchunker.set_max_message_size(1 << 20)
            replies = {}
            for message in (hello, call):
                for chunk in generate_chunks(msgpack.packb(message), 0):
                    await ws.send_bytes(chunk)
                while message["id"] not in replies:
                    received = await ws.receive(timeout=20)
                    assert received.type == aiohttp.WSMsgType.BINARY, received
                    reply = unchunker.process_chunk(received.data)
                    if reply is not None and "id" in reply:
                        replies[reply["id"]] = reply
            return replies


FAMILY_CASES = [
    # (demo --family, version, the family pvwtasks must tell, apps launch.json must hold)
    ("legacy", "5.13.0", families.LEGACY, {"pipeline", "visualizer", "loader", "data_prober"}),
    ("5.9", "5.9.1", families.FAMILY_5_6, {"visualizer", "lite", "divvy"}),
    ("5.12", "5.12.1", families.FAMILY_5_10, {"visualizer", "lite", "divvy"}),
]


@pytest.mark.parametrize("demo_family, version, family, expected_apps", FAMILY_CASES,
                         ids=[case[0] for case in FAMILY_CASES])
def test_family_deploys_its_bundled_apps_and_serves_a_session_through_apache(
        tmp_path, http_server, demo_family, version, family, expected_apps):
    variant = "egl" if demo_family == "5.12" else ""
    release = build_release(http_server.root, version, family=demo_family, variant=variant)
    cfg = render_config(tmp_path, http_server.url(release.name))
    settings = config.load(cfg)
    assert settings.launcher.apps == {}  # no apps named: the family's own
    layout = settings.layout
    apache = None
    try:
        result = run_doit(cfg, "update", env=env_without_display())
        assert result.returncode == 0, result.output

        launch = json.loads(layout.launch_json.read_text())
        assert set(launch["apps"]) == expected_apps
        visualizer = launch["apps"]["visualizer"]["cmd"]
        if family == families.FAMILY_5_10:  # strict apps: exactly these flags, never -f
            assert visualizer[1:] == ["-m", "paraview.apps.visualizer", "--host", "${host}", "--port", "${port}",
                                      "--authKey", "${secret}", "--data", str(layout.extra_link("data"))]
        elif family == families.FAMILY_5_6:
            assert visualizer[1].endswith("share/paraview-5.9/web/visualizer/server/pvw-visualizer.py")
            assert visualizer[-2:] == ["--content", visualizer[1].replace("/server/pvw-visualizer.py", "/www")]

        published = HashRecord.load(layout.hash_file)
        assert published.family == family and published.paraview_version.startswith(version[:4])
        assert published.variant == variant
        status = run_doit(cfg, "status", "--json")
        live = json.loads(status.stdout)["live"]
        assert live["family"] == family and (variant in live["label"])

        ports = [settings.web.http_port]
        apache = Apache(httpd_conf(tmp_path / "httpd", ports, layout.vhost_file), ports[0]).start()
        base = f"http://127.0.0.1:{ports[0]}"
        page = requests.get(f"{base}/", timeout=10).text
        assert family in page  # the landing page names the family
        if family != families.LEGACY:  # the bundled web client is served, and linked from the landing page
            assert 'href="visualizer/"' in page
            client = requests.get(f"{base}/visualizer/", timeout=10)
            assert client.status_code == 200 and '"application": "visualizer"' in client.text

        reply = requests.post(f"{base}/paraview/", json={"application": "visualizer"}, timeout=60)
        assert reply.status_code == 200, reply.text
        session = reply.json()
        answers = asyncio.run(_echo(session["sessionURL"], session["secret"]))
        assert "clientID" in answers["system:c0:0"]["result"], answers
        assert answers["rpc:c0:1"]["result"] == {"echo": "ping"}, answers
    finally:
        if apache is not None:
            apache.stop()
        stop_deployment_processes(layout.root)


@pytest.mark.parametrize("demo_family, version", [("5.13", "5.13.3"), ("6.1", "6.1.0")])
def test_release_without_web_apps_fails_before_the_switch(tmp_path, http_server, demo_family, version):
    first = build_release(http_server.root, "5.12.1", family="5.12")
    cfg = render_config(tmp_path, http_server.url(first.name))
    settings = config.load(cfg)
    try:
        assert run_doit(cfg, "update", env=env_without_display()).returncode == 0
        live_before = settings.layout.live_link.resolve()
        newer = build_release(http_server.root, version, family=demo_family)
        cfg.write_text(cfg.read_text().replace(first.name, newer.name))

        result = run_doit(cfg, "update", env=env_without_display())

        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        assert errors == ["ERROR: install: ParaView 5.13+ ships no web apps: configure a trame app, see README"], \
            result.stderr
        assert settings.layout.live_link.resolve() == live_before  # never switched: nothing to roll back
        assert "rolled back" not in result.output
    finally:
        stop_deployment_processes(settings.layout.root)


def test_apps_of_another_family_are_caught_before_the_switch(tmp_path, http_server):
    """5.12's module apps named in the config, against a 5.9 tree that has no paraview.apps.lite."""
    first = build_release(http_server.root, "5.12.1", family="5.12")
    apps = ('[launcher.apps.lite]\nmodule = "paraview.apps.lite"\n'
            '[launcher.apps.visualizer]\nmodule = "paraview.apps.visualizer"\n')
    cfg = render_config(tmp_path, http_server.url(first.name), extra=apps)
    settings = config.load(cfg)
    try:
        assert run_doit(cfg, "update", env=env_without_display()).returncode == 0
        launch = json.loads(settings.layout.launch_json.read_text())
        assert launch["apps"]["lite"]["cmd"][-8:] == ["--host", "${host}", "--port", "${port}", "--authKey",
                                                      "${secret}", "--data", "${data}"]
        live_before = settings.layout.live_link.resolve()
        other = build_release(http_server.root, "5.8.0", family="5.9")  # 5.6-5.8: no paraview/apps at all
        cfg.write_text(cfg.read_text().replace(first.name, other.name))

        result = run_doit(cfg, "update", env=env_without_display())

        assert result.returncode == 1
        assert "app lite needs module paraview.apps.lite, which ParaView 5.8" in result.stderr, result.stderr
        assert settings.layout.live_link.resolve() == live_before
    finally:
        stop_deployment_processes(settings.layout.root)


def test_upgrade_across_families_and_back_on_rollback(tmp_path, http_server):
    """5.9 -> 5.12: launch.json follows the family; a 5.12 that crashes rolls back and launch.json follows."""
    old = build_release(http_server.root, "5.9.1", family="5.9")
    cfg = render_config(tmp_path, http_server.url(old.name))
    settings = config.load(cfg)
    layout = settings.layout

    def visualizer_cmd() -> list[str]:
        return json.loads(layout.launch_json.read_text())["apps"]["visualizer"]["cmd"]

    try:
        assert run_doit(cfg, "update", env=env_without_display()).returncode == 0
        assert any(arg.endswith("pvw-visualizer.py") for arg in visualizer_cmd())

        new = build_release(http_server.root, "5.12.1", family="5.12")
        cfg.write_text(cfg.read_text().replace(old.name, new.name))
        assert run_doit(cfg, "update", env=env_without_display()).returncode == 0
        assert "paraview.apps.visualizer" in visualizer_cmd()
        assert HashRecord.load(layout.hash_file).family == families.FAMILY_5_10

        broken = build_release(http_server.root, "5.12.2", family="5.12", broken="crash")
        cfg.write_text(cfg.read_text().replace(new.name, broken.name))
        result = run_doit(cfg, "update", env=env_without_display())
        assert result.returncode == 1 and "rolled back" in result.output, result.output
        assert "5.12.1" in layout.live_link.resolve().name
        assert "paraview.apps.visualizer" in visualizer_cmd()
        assert str(layout.live_link.resolve()) in visualizer_cmd()[0] or \
            layout.live_link.resolve().name in visualizer_cmd()[0]
    finally:
        stop_deployment_processes(layout.root)
