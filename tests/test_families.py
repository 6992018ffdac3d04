"""Release families: detection on each family's stand-in, its pvpython and apps for real, default apps."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import aiohttp
import msgpack
import psutil
import pytest
import requests
from wslink.chunking import UnChunker, generate_chunks

from conftest import build_release, free_port
from pvwtasks import demo, families
from pvwtasks.errors import ConfigError, InstallError
from pvwtasks.families import AppSpec, ReleaseInfo

pytestmark = pytest.mark.timeout(120)

# stand-in family -> (file name, family, python, server apps, static apps, bundles wslink)
EXPECTED = {
    "5.9": ("ParaView-5.9.1-MPI-Linux-Python3.8-64bit.tar.gz", families.FAMILY_5_6, "3.8",
            ("visualizer", "lite", "divvy"), ("divvy", "glance", "lite", "visualizer"), True),
    "5.12": ("ParaView-5.12.1-MPI-Linux-Python3.10-x86_64.tar.gz", families.FAMILY_5_10, "3.10",
             ("visualizer", "lite", "divvy"), ("divvy", "glance", "lite", "visualizer"), True),
    "5.13": ("ParaView-5.13.3-MPI-Linux-Python3.10-x86_64.tar.gz", families.FAMILY_5_13, "3.10", (), ("glance",),
             False),
    "6.1": ("ParaView-6.1.0-MPI-Linux-Python3.12-x86_64.tar.gz", families.FAMILY_6, "3.12", (), ("glance",), False),
}


def standin(folder: Path, family: str, variant: str = "", **kwargs) -> tuple[Path, Path]:
    """Build the family's stand-in under its real file name and extract it: (tarball, tree)."""
    version = demo.DEFAULT_VERSION[family]
    tarball = demo.build_release(folder / demo.release_file_name(version, family, variant), version, family=family,
                                 variant=variant, **kwargs)
    with tarfile.open(tarball) as tar:
        tar.extractall(folder / "x", filter="data")
    return tarball, folder / "x" / tarball.name.removesuffix(".tar.gz")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    return {family: standin(tmp_path_factory.mktemp(family.replace(".", "_")), family)[1] for family in EXPECTED}


def pvpython(tree: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the stand-in's pvpython from a neutral folder (``-c`` puts the working folder on the path)."""
    kwargs.setdefault("cwd", tree.parent)
    return subprocess.run([str(tree / "bin" / "pvpython"), *args], capture_output=True, text=True, timeout=60,
                          **kwargs)


# --------------------------------------------------------------------------
# detection on the stand-ins
# --------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(EXPECTED))
def test_each_family_standin_is_detected_with_its_versions(trees, family):
    name, expected_family, python, server_apps, static_apps, bundles = EXPECTED[family]
    tree = trees[family]
    assert tree.name + ".tar.gz" == name
    info = families.detect(tree, tree.name)
    assert info.family == expected_family
    assert info.paraview_version == demo.DEFAULT_VERSION[family]
    assert info.python_version == python
    assert info.site_packages == f"lib/python{python}/site-packages"
    assert info.variant == ""
    assert info.bundles_wslink is bundles
    assert info.pvpython == "bin/pvpython" and info.pvpython_real == "bin/pvpython-real"
    assert info.server_apps == server_apps
    assert info.static_apps == static_apps
    assert info.share_web == f"share/paraview-{'.'.join(info.paraview_version.split('.')[:2])}/web"
    assert ReleaseInfo.from_json(info.to_json()) == info


@pytest.mark.parametrize("family,variant", [("5.9", "egl"), ("5.12", "osmesa"), ("5.13", "egl")])
def test_variant_comes_from_the_file_name(tmp_path, family, variant):
    tarball, tree = standin(tmp_path, family, variant)
    assert f"-{variant}-MPI-Linux-" in tarball.name
    info = families.detect(tree, tree.name)
    assert info.variant == variant
    assert info.family == EXPECTED[family][1]


def test_six_has_no_variant_and_the_generator_refuses_one(tmp_path):
    with pytest.raises(ValueError, match="universal"):
        demo.build_release(tmp_path / "r.tar.gz", "6.1.0", family="6.1", variant="egl")
    tree = tmp_path / "ParaView-6.0.0-egl-MPI-Linux-Python3.12-x86_64"  # a made-up name: 6.x ignores it
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "pvpython").write_text("")
    (tree / "lib/python3.12/site-packages/paraview/apps").mkdir(parents=True)
    (tree / "lib/python3.12/site-packages/paraview/apps/packages.py").write_text("")
    info = families.detect(tree, tree.name)
    assert (info.family, info.variant, info.paraview_version) == (families.FAMILY_6, "", "6.0.0")


def test_legacy_standin_of_the_suite_is_the_legacy_family(tmp_path):
    tarball = build_release(tmp_path, "6.0.0")  # the suite's stand-in: 4.x layout whatever the version
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    tree = next((tmp_path / "x").iterdir())
    info = families.detect(tree, tree.name)
    assert info.family == families.LEGACY
    assert info.server_apps == ("pipeline", "visualizer", "loader", "data_prober")
    assert (info.bundles_wslink, info.static_apps, info.pvpython_real) == (False, (), "")
    assert info.python_version == demo.PYTHON_TAG


def test_paraview_4_layout_is_legacy(tmp_path):
    tree = tmp_path / "ParaView-4.1.0-Linux-64bit"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "pvpython").write_text("")
    (tree / "lib/paraview-4.1/site-packages/paraview/web").mkdir(parents=True)
    (tree / "lib/paraview-4.1/site-packages/paraview/web/pv_web_visualizer.py").write_text("")
    info = families.detect(tree, tree.name)
    assert (info.family, info.paraview_version, info.python_version) == (families.LEGACY, "4.1.0", "")
    assert info.site_packages == "lib/paraview-4.1/site-packages"
    assert info.server_apps == ("pipeline", "visualizer")


def test_a_tree_without_pvpython_or_site_packages_is_refused(tmp_path):
    tree = tmp_path / "ParaView-5.12.1-MPI-Linux-Python3.10-x86_64"
    tree.mkdir()
    with pytest.raises(InstallError, match="no bin/pvpython"):
        families.detect(tree, tree.name)
    (tree / "bin").mkdir()
    (tree / "bin" / "pvpython").write_text("")
    with pytest.raises(InstallError, match="site-packages"):
        families.detect(tree, tree.name)


# --------------------------------------------------------------------------
# the stand-in's pvpython: isolation, -m/-c/scripts, --venv
# --------------------------------------------------------------------------


@pytest.mark.parametrize("family,has_wslink", [("5.9", True), ("5.12", True), ("5.13", False), ("6.1", False)])
def test_wslink_is_importable_only_where_the_release_bundles_it(trees, family, has_wslink):
    done = pvpython(trees[family], "-c", "import wslink.server, aiohttp; print('ok')")
    assert (done.returncode == 0) is has_wslink, done.stderr
    if has_wslink:
        assert done.stdout.strip() == "ok"
    else:
        assert "No module named 'wslink'" in done.stderr


@pytest.mark.parametrize("family", list(EXPECTED))
def test_nothing_leaks_from_the_generating_python(trees, family):
    for module in ("pvwtasks", "doit", "requests", "pytest"):
        done = pvpython(trees[family], "-c", f"import {module}")
        assert done.returncode != 0 and f"No module named '{module}'" in done.stderr, (module, done.stderr)
    done = pvpython(trees[family], "-c", "import paraview, sys; print(paraview.__file__)",
                    env={**os.environ, "PYTHONPATH": str(Path(demo.__file__).parent.parent)})
    assert done.stdout.startswith(str(trees[family])), done.stdout


@pytest.mark.parametrize("family", ["5.13", "6.1"])
def test_venv_adds_its_site_packages_on_5_13_and_later(trees, tmp_path, family):
    tree = trees[family]
    python = EXPECTED[family][2]
    venv_site = tmp_path / "venv" / "lib" / f"python{python}" / "site-packages"
    venv_site.mkdir(parents=True)
    (venv_site / "trame_standin_app.py").write_text("def main():\n    import sys; print('main', sys.argv[1:])\n")
    assert pvpython(tree, "-c", "import trame_standin_app").returncode != 0
    done = pvpython(tree, "--venv", str(tmp_path / "venv"), "-c", "import trame_standin_app; print('found')")
    assert done.stdout.strip() == "found", done.stderr
    done = pvpython(tree, "--venv", str(tmp_path / "venv"), "-m", "paraview.apps.trame", "--trame-app",
                    "trame_standin_app", "--port", "1234")
    assert done.stdout.strip() == "main ['--port', '1234']", done.stderr


def test_venv_is_unknown_before_5_13(trees, tmp_path):
    done = pvpython(trees["5.12"], "--venv", str(tmp_path), "-c", "print(1)")
    assert done.returncode != 0 and "unknown option '--venv'" in done.stderr


def test_six_takes_the_opengl_backend_option(trees):
    done = pvpython(trees["6.1"], "--opengl-window-backend", "OSMesa", "-c",
                    "import os; print(os.environ['VTK_DEFAULT_OPENGL_WINDOW'])")
    assert done.stdout.strip() == "vtkOSOpenGLRenderWindow", done.stderr
    assert pvpython(trees["5.13"], "--opengl-window-backend", "EGL", "-c", "1").returncode != 0


def test_pvpython_runs_scripts_with_their_arguments(trees, tmp_path):
    script = tmp_path / "show.py"
    script.write_text("import sys\nprint(sys.argv)\n")
    done = pvpython(trees["5.12"], "-dr", str(script), "-f", "--x")
    assert done.stdout.strip() == repr([str(script), "-f", "--x"]), done.stderr


# --------------------------------------------------------------------------
# the apps for real: strict arguments, a wslink hello
# --------------------------------------------------------------------------


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


async def _call(url: str, secret: str) -> tuple[dict, dict]:
    """wslink.hello with ``secret``, then demo.version: both replies."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.ws_connect(url) as ws:
            replies = []
            for rpc_id, method, args in (("system:c0:0", "wslink.hello", [{"secret": secret}]),
                                         ("rpc:c0:1", "demo.version", [])):
                message = {"wslink": "1.0", "id": rpc_id, "method": method, "args": args, "kwargs": {}}
                for chunk in generate_chunks(msgpack.packb(message), 0):
                    await ws.send_bytes(chunk)
                unchunker = UnChunker()
                while True:
                    got = await ws.receive(timeout=20)
                    assert got.type == aiohttp.WSMsgType.BINARY, got
                    reply = unchunker.process_chunk(got.data)
                    if reply is not None and reply.get("id") == rpc_id:
                        replies.append(reply)
                        break
            return replies[0], replies[1]


def _run_app(spec: AppSpec, port: int, secret: str, log: Path) -> subprocess.Popen:
    cmd = [arg.replace("${host}", "127.0.0.1").replace("${port}", str(port)).replace("${secret}", secret)
           for arg in spec.cmd]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("family", ["5.9", "5.12"])
def test_default_app_of_the_family_answers_a_wslink_hello(trees, tmp_path, family):
    tree = trees[family]
    info = families.detect(tree, tree.name)
    data = tmp_path / "data"
    data.mkdir()
    spec = families.default_apps(info, tree, data)["visualizer"]
    port, log = free_port(), tmp_path / "app.log"
    proc = _run_app(spec, port, "s3cret-key", log)
    try:
        _wait_port(port, proc)
        hello, version = asyncio.run(_call(f"ws://127.0.0.1:{port}/ws", "s3cret-key"))
        assert "result" in hello, hello
        assert version["result"] == {"version": info.paraview_version, "family": family, "app": "visualizer",
                                     "data": str(data)}
        bad, _ = asyncio.run(_call(f"ws://127.0.0.1:{port}/ws", "wrong"))
        assert bad["error"]["code"] == -32000
        page = requests.get(f"http://127.0.0.1:{port}/index.html", timeout=10)
        assert page.status_code == 200 and '{"application": "visualizer"}' in page.text
        assert 'fetch("/paraview/"' in page.text
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Starting factory" in log.read_text()


def test_5_12_app_exits_on_an_unknown_flag(trees, tmp_path):
    done = pvpython(trees["5.12"], "-m", "paraview.apps.visualizer", "--host", "127.0.0.1", "--port",
                    str(free_port()), "--authKey", "k", "--data", str(tmp_path), "-f")
    assert done.returncode == 2
    assert "unrecognized arguments: -f" in done.stderr


def test_5_9_server_script_also_parses_strictly(trees, tmp_path):
    script = trees["5.9"] / "share/paraview-5.9/web/lite/server/pvw-lite.py"
    done = pvpython(trees["5.9"], str(script), "--port", str(free_port()), "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "unrecognized arguments: --data-dir" in done.stderr


def test_broken_standin_app_crashes(tmp_path):
    _, tree = standin(tmp_path, "5.12", broken="crash")
    done = pvpython(tree, "-m", "paraview.apps.lite", "--port", "1")
    assert done.returncode == 1 and "crashing at start" in done.stderr


def test_release_pvpython_can_run_the_wslink_launcher_where_bundled(trees):
    for family in ("5.9", "5.12"):
        info = families.detect(trees[family], trees[family].name)
        python = families.launcher_python(info, trees[family])
        assert python == trees[family] / "bin" / "pvpython"
        done = subprocess.run([str(python), "-m", "wslink.launcher", "--help"], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0 and "launcher" in done.stdout.lower(), done.stderr
    info = families.detect(trees["5.13"], trees["5.13"].name)
    assert families.launcher_python(info, trees["5.13"]) is None


@pytest.mark.parametrize("family", ["5.9", "5.12"])
def test_launcher_from_the_release_starts_a_default_app_session(trees, tmp_path, family):
    """The release's own pvpython runs the wslink launcher; a POST starts the family's app; it says hello."""
    tree = trees[family]
    info = families.detect(tree, tree.name)
    python = families.launcher_python(info, tree)
    apps = families.default_apps(info, tree, tmp_path)
    port, first = free_port(), free_port()
    (tmp_path / "logs").mkdir()
    config = {
        "configuration": {"host": "127.0.0.1", "port": port, "endpoint": "paraview", "timeout": 25,
                          "sessionURL": "ws://127.0.0.1:${port}/ws", "log_dir": str(tmp_path / "logs"),
                          "proxy_file": str(tmp_path / "proxy.txt"), "fields": ["host", "port"]},
        "resources": [{"host": "127.0.0.1", "port_range": [first, first]}],
        "properties": {},
        "apps": {name: spec.to_launcher() for name, spec in apps.items()},
    }
    (tmp_path / "launch.json").write_text(json.dumps(config))
    launcher = subprocess.Popen([str(python), "-m", "wslink.launcher", str(tmp_path / "launch.json")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        _wait_port(port, launcher)
        reply = requests.post(f"http://127.0.0.1:{port}/paraview/", json={"application": "divvy"}, timeout=40)
        assert reply.status_code == 200, reply.text
        session = reply.json()
        assert session["sessionURL"] == f"ws://127.0.0.1:{first}/ws"
        hello, version = asyncio.run(_call(session["sessionURL"], session["secret"]))
        assert "result" in hello, hello
        assert version["result"]["app"] == "divvy" and version["result"]["family"] == family
    finally:
        children = psutil.Process(launcher.pid).children(recursive=True)
        launcher.terminate()
        launcher.wait(10)
        _, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            child.kill()


# --------------------------------------------------------------------------
# default apps, exact argv (pure logic)
# --------------------------------------------------------------------------


def _info(family: str, **changes) -> ReleaseInfo:
    base = dict(family=family, paraview_version="5.12.1", python_version="3.10", variant="", bundles_wslink=True,
                pvpython="bin/pvpython", pvpython_real="bin/pvpython-real",
                site_packages="lib/python3.10/site-packages", share_web="share/paraview-5.12/web",
                server_apps=("visualizer", "lite", "divvy"), static_apps=("divvy", "glance", "lite", "visualizer"))
    base.update(changes)
    return ReleaseInfo(**base)


def test_default_apps_5_10_to_5_12_exact_argv():
    apps = families.default_apps(_info(families.FAMILY_5_10), Path("/r"), Path("/d"))
    assert list(apps) == ["visualizer", "lite", "divvy"]
    assert apps["lite"] == AppSpec(("/r/bin/pvpython", "-m", "paraview.apps.lite", "--host", "${host}", "--port",
                                    "${port}", "--authKey", "${secret}", "--data", "/d"), "Starting factory")
    assert apps["visualizer"].to_launcher()["cmd"][2] == "paraview.apps.visualizer"


def test_default_apps_5_6_to_5_9_exact_argv():
    info = _info(families.FAMILY_5_6, paraview_version="5.9.1", share_web="share/paraview-5.9/web",
                 static_apps=("glance", "visualizer"))
    apps = families.default_apps(info, Path("/r"), Path("/d"))
    web = "/r/share/paraview-5.9/web"
    assert apps["visualizer"].cmd == ("/r/bin/pvpython", f"{web}/visualizer/server/pvw-visualizer.py", "--port",
                                      "${port}", "--data", "/d", "--authKey", "${secret}", "--content",
                                      f"{web}/visualizer/www")
    assert apps["divvy"].cmd[-2:] == ("--authKey", "${secret}")  # no www, no --content
    assert apps["divvy"].ready_line == "Starting factory"


def test_default_apps_legacy_keep_todays_commands():
    info = _info(families.LEGACY, bundles_wslink=False, pvpython_real="", share_web="",
                 server_apps=("visualizer", "loader"), static_apps=(), site_packages="lib/python3.11/site-packages")
    apps = families.default_apps(info, Path("/r"), Path("/d"))
    site = "/r/lib/python3.11/site-packages"
    assert apps == {
        "visualizer": AppSpec(("/r/bin/pvpython", "-dr", f"{site}/paraview/web/pv_web_visualizer.py", "--port",
                               "${port}", "--data-dir", "/d", "-f", "--authKey", "${secret}")),
        "loader": AppSpec(("/r/bin/pvpython", "-dr", f"{site}/paraview/web/pv_web_file_loader.py", "--port",
                           "${port}", "--data-dir", "/d", "-f", "--authKey", "${secret}")),
    }


@pytest.mark.parametrize("family", [families.FAMILY_5_13, families.FAMILY_6])
def test_5_13_and_6_have_no_default_apps_and_say_so(family):
    info = _info(family, bundles_wslink=False, server_apps=(), static_apps=("glance",))
    with pytest.raises(families.NoWebApps) as caught:
        families.default_apps(info, Path("/r"), Path("/d"))
    assert str(caught.value) == "ParaView 5.13+ ships no web apps: configure a trame app, see README"
    assert isinstance(caught.value, InstallError)
    with pytest.raises(families.NoWebApps):
        families.require_web_apps(info, [])
    families.require_web_apps(info, ["trame"])  # a configured (trame) app is enough
    families.require_web_apps(_info(families.FAMILY_5_10), [])


def test_apps_of_5_12_are_caught_against_a_5_13_tree(trees, tmp_path):
    info_12 = families.detect(trees["5.12"], trees["5.12"].name)
    info_13 = families.detect(trees["5.13"], trees["5.13"].name)
    apps = families.default_apps(info_12, trees["5.13"], tmp_path)
    with pytest.raises(families.FamilyMismatch, match=r"app visualizer needs module paraview.apps.visualizer.*5\.13"):
        families.check_apps(info_13, trees["5.13"], apps)
    families.check_apps(info_12, trees["5.12"], families.default_apps(info_12, trees["5.12"], tmp_path))
    info_9 = families.detect(trees["5.9"], trees["5.9"].name)
    apps_9 = families.default_apps(info_9, trees["5.12"], tmp_path)
    assert families.missing_parts(info_12, trees["5.12"], apps_9["lite"].cmd) == [
        "share/paraview-5.9/web/lite/server/pvw-lite.py"]


def test_static_clients_are_the_bundled_www_folders(trees):
    info = families.detect(trees["5.12"], trees["5.12"].name)
    clients = families.static_clients(info, trees["5.12"])
    assert sorted(clients) == ["divvy", "glance", "lite", "visualizer"]
    assert all((path / "index.html").is_file() for path in clients.values())
    assert '{"application": "divvy"}' in (clients["divvy"] / "index.html").read_text()
    legacy = _info(families.LEGACY, share_web="", static_apps=())
    assert families.static_clients(legacy, Path("/r")) == {}


def test_rendering_backend_of_6_is_chosen_at_run_time():
    six, five = _info(families.FAMILY_6), _info(families.FAMILY_5_10, variant="egl")
    assert families.render_env(six) == {"VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow"}
    assert families.render_env(six, display=":0") == {"DISPLAY": ":0",
                                                      "VTK_DEFAULT_OPENGL_WINDOW": "vtkXOpenGLRenderWindow"}
    assert families.render_env(six, "osmesa") == {"VTK_DEFAULT_OPENGL_WINDOW": "vtkOSOpenGLRenderWindow"}
    assert families.pvpython_backend_args(six, "OSMESA") == ["--opengl-window-backend", "OSMesa"]
    assert families.render_env(five, "osmesa") == {} and families.pvpython_backend_args(five) == []
    with pytest.raises(ConfigError, match="egl, osmesa or glx"):
        families.render_env(six, "vulkan")


# --------------------------------------------------------------------------
# the generator's command line
# --------------------------------------------------------------------------


def test_cli_version_implies_family_and_real_name(tmp_path):
    out = tmp_path / "rel"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "pvwtasks.demo", f"{out}/", "--version", "5.10.1", "--variant",
                           "egl"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["ParaView-5.10.1-egl-MPI-Linux-Python3.9-x86_64.tar.gz"]
    with tarfile.open(next(out.iterdir())) as tar:
        names = tar.getnames()
    top = "ParaView-5.10.1-egl-MPI-Linux-Python3.9-x86_64"
    assert f"{top}/lib/python3.9/site-packages/paraview/apps/trame.py" in names
    assert f"{top}/lib/python3.9/site-packages/paraview/web/venv.py" in names
    bad = subprocess.run([sys.executable, "-m", "pvwtasks.demo", str(tmp_path / "x.tar.gz"), "--family", "6.1",
                          "--variant", "osmesa"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "universal" in bad.stderr


def test_cli_without_family_or_version_builds_the_legacy_standin(tmp_path):
    out = tmp_path / "demo.tar.gz"
    done = subprocess.run([sys.executable, "-m", "pvwtasks.demo", str(out)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
    top = demo.top_folder("5.13.0")
    assert f"{top}/lib/python{demo.PYTHON_TAG}/site-packages/paraview/web/pv_web_visualizer.py" in names


def test_5_6_to_5_8_have_no_pvpython_real_and_no_apps_modules(tmp_path):
    tarball = demo.build_release(tmp_path / demo.release_file_name("5.7.0"), "5.7.0", family=demo.family_of("5.7.0"))
    assert tarball.name == "ParaView-5.7.0-MPI-Linux-Python3.7-64bit.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    tree = tmp_path / "x" / tarball.name.removesuffix(".tar.gz")
    info = families.detect(tree, tree.name)
    assert (info.family, info.pvpython_real, info.python_version) == (families.FAMILY_5_6, "", "3.7")
    assert info.server_apps == ("visualizer", "lite", "divvy")
    assert not (tree / info.site_packages / "paraview" / "apps").exists()
    done = pvpython(tree, "-c", "import wslink; print('bundled')")
    assert done.stdout.strip() == "bundled", done.stderr
