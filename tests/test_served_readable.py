"""Everything Apache serves is readable by the web user: fetched through a real Apache running as www-data.

Root starts the private Apache with ``User www-data`` / ``Group www-data``, so its children read the
deployment as that user, as on a Debian server; pvwtasks manages it (see apache_support), so the
update's own health check already goes through it and its proxy.txt RewriteMap.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from apache_support import ManagedApache, post_session, websocket_status
from conftest import build_release, stop_deployment_processes
from support.doit import run_doit
from support.ports import free_port
from support.tarbuild import build_tar
from pvwtasks import config
from render_support import render_config

pytestmark = pytest.mark.timeout(400)
WEB_USER = "www-data"


@pytest.fixture
def open_folder():
    """A folder every user can traverse (pytest's own tmp folders are private to root), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="pvw-served-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _served_files(www: Path) -> list[str]:
    """Every file under www/ (following the links to the bundled clients and the docs), relative."""
    found = []
    for folder, _dirs, files in os.walk(www, followlinks=True):
        found += [str(Path(folder, name).relative_to(www)) for name in files]
    return sorted(found)


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_every_served_file_is_readable_by_apache_running_as_the_web_user(open_folder, http_server, umask):
    if os.geteuid() != 0:
        pytest.skip("needs root: Apache must start as root to switch to the web user")
    try:
        pwd.getpwnam(WEB_USER)
    except KeyError:
        pytest.skip(f"no {WEB_USER} user on this machine")
    first = build_release(http_server.root, "5.12.0", family="5.12")
    second = build_release(http_server.root, "5.12.1", family="5.12")
    build_tar(http_server.root / "docs.tar.gz", [("ParaViewWeb-docs/index.html", "file", b"<h1>docs</h1>"),
                                                 ("ParaViewWeb-docs/css/site.css", "file", b"h1 {}")])
    port = free_port()
    managed = ManagedApache(open_folder / "apache", [port], user=WEB_USER, group=WEB_USER)
    cfg = render_config(open_folder, http_server.url(first.name), http_port=port, web=managed.web_toml(),
                        extra=f'[launcher.apps.visualizer]\nmodule = "paraview.apps.visualizer"\n')
    cfg.write_text(cfg.read_text().replace("[source]\n", f'[source]\ndocs_url = "{http_server.url("docs.tar.gz")}"\n'))
    base = f"http://127.0.0.1:{port}"
    old_umask = os.umask(umask)  # the update runs as a hardened cron would
    try:
        done = run_doit(cfg, "update")
        assert done.returncode == 0, done.output
        cfg.write_text(cfg.read_text().replace(first.name, second.name))
        done = run_doit(cfg, "update")  # a second release: hash.json.previous too
        assert done.returncode == 0, done.output
        os.umask(old_umask)
        assert "health check ok through the front" in done.output
        settings = config.load(cfg)
        www = settings.layout.www
        served = _served_files(www)
        for name in ("index.html", "hash.json", "hash.json.previous", "docs/ParaViewWeb-docs/index.html",
                     "docs/ParaViewWeb-docs/css/site.css"):
            assert name in served, served
        assert any(name.startswith(("visualizer/", "lite/")) for name in served), served
        refused = {}
        for name in served:
            answer = requests.get(f"{base}/{name}", timeout=10)
            if answer.status_code != 200:
                refused[name] = answer.status_code
        assert refused == {}, (refused, managed.error_log.read_text()[-2000:])
        assert requests.get(f"{base}/", timeout=10).status_code == 200
        # The websocket map (proxy.txt, via its group) is readable by Apache's children too.
        session = post_session(base, "visualizer")
        assert websocket_status(session["sessionURL"]) == 101
        # And Apache's children really are the web user.
        import psutil
        children = psutil.Process(managed.pid()).children()
        assert children and {c.username() for c in children} == {WEB_USER}
    finally:
        os.umask(old_umask)
        stop_deployment_processes(open_folder / "root")
        managed.stop()
