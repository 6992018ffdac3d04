"""The static trame client and the app pages, built with trame.tools.www / trame.tools.app from a real venv."""

from __future__ import annotations

import pytest

from pvwtasks import demo_apps, webclient
from pvwtasks.errors import WebClientError
from support.venvs import demo, pip_cache, subprocess_audit  # noqa: F401

pytestmark = pytest.mark.timeout(900)


def test_client_is_built_once_and_pages_never_replace_index_html(demo):
    layout, python = demo.layout, demo.python
    client = demo.client
    assert client.path == layout.client_dir(client.record.key)
    assert client.record.key.startswith("vue3-")
    assert client.record.modules == ["www", "vtk", "vuetify3"]
    assert "trame==4.0.0" in client.record.packages
    assert all(p.startswith("trame") for p in client.record.packages)
    for served in ("index.html", "vue.global.js", "loading.tpl", "assets"):
        assert (client.path / served).exists(), served
    assert list(client.path.glob("__trame_vtk*")) and list(client.path.glob("__trame_vuetify3*"))
    page = layout.app_page(demo_apps.CONE_VIEWER_APP)
    html = page.read_text()
    assert 'data-app-name="cone_viewer"' in html
    assert 'data-session-manager-url="/paraview/"' in html
    assert f'<base href="trame/{client.record.key}/" />' in html

    sentinel = "<p>pvwtasks landing page</p>"
    layout.index_page.write_text(sentinel)
    audit = subprocess_audit()
    with audit:
        again = webclient.ensure_client(layout, python, "vue3", demo_apps.CONE_VIEWER_WWW_MODULES,
                                        demo.venv.record.packages)
        unchanged = webclient.write_app_page(layout, again, demo_apps.CONE_VIEWER_APP, python)
    assert again.action == "reused" and again.path == client.path
    assert unchanged is False
    assert audit.started == []  # neither trame.tools.www nor trame.tools.app ran
    assert webclient.write_app_page(layout, again, "second_app", python) is True
    assert 'data-app-name="second_app"' in layout.app_page("second_app").read_text()
    assert layout.index_page.read_text() == sentinel


def test_vue2_client_is_a_second_folder_beside(demo):
    layout = demo.layout
    vue2 = webclient.ensure_client(layout, demo.python, "vue2", ["vtk", "vuetify"], demo.venv.record.packages)
    assert vue2.action == "built"
    assert vue2.record.key.startswith("vue2-") and vue2.path != demo.client.path
    assert (vue2.path / "js").is_dir()  # the vue2 client's layout
    assert set(webclient.built_clients(layout)) >= {vue2.record.key, demo.client.record.key}
    assert webclient.prune_clients(layout, [demo.client.record.key]) == [vue2.record.key]
    assert demo.client.path.is_dir() and not vue2.path.exists()


def test_unknown_trame_module_fails_naming_it_and_leaves_nothing(demo):
    layout = demo.layout
    before = sorted(p.name for p in layout.trame_clients.iterdir())
    with pytest.raises(WebClientError, match="pvwtasks_no_such_module") as caught:
        webclient.ensure_client(layout, demo.python, "vue3", ["pvwtasks_no_such_module"], demo.venv.record.packages)
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in layout.trame_clients.iterdir()) == before


def test_page_points_the_client_at_its_folder_and_the_session_manager():
    template = '<!doctype html><html lang="en" data-app-name="app1"><head><base href="." /><meta></head></html>'
    html = webclient.page_html(template, "trame/vue3-abc/", "/paraview/")
    assert '<base href="trame/vue3-abc/" />' in html and '<base href="." />' not in html
    assert '<html lang="en" data-app-name="app1" data-session-manager-url="/paraview/">' in html
    again = webclient.page_html(html, "trame/vue3-def/", "/pv/")
    assert again.count("data-session-manager-url") == 1 and 'data-session-manager-url="/pv/"' in again
    assert '<base href="trame/vue3-def/" />' in again


def test_client_key_follows_trame_versions_only():
    packages = ["trame==4.0.0", "trame-vtk==2.11.17", "numpy==2.4.6"]
    key = webclient.client_key("vue3", ["www", "vtk"], packages)
    assert key == webclient.client_key("vue3", ["www", "vtk"], ["trame==4.0.0", "trame-vtk==2.11.17", "numpy==1"])
    assert key != webclient.client_key("vue3", ["www", "vtk"], ["trame==4.0.1", "trame-vtk==2.11.17"])
    assert key != webclient.client_key("vue2", ["www", "vtk"], packages)
    assert webclient.trame_packages(["trame-client==4 sha256:ab", "trimesh==1", "trame==4"]) == \
        ["trame-client==4", "trame==4"]


@pytest.mark.parametrize("name", ["index", "cone-viewer", "../x", "", "9lives"])
def test_bad_app_names_are_refused(name):
    with pytest.raises(WebClientError):
        webclient.check_app_name(name)


def test_client_of_a_cross_minor_venv_is_built_by_the_host_python(tmp_path, pip_cache):
    from pvwtasks import appvenv
    from pvwtasks.layout import Layout
    from support.venvs import HOST_MINOR

    other = "3.12" if HOST_MINOR != "3.12" else "3.11"
    layout = Layout(tmp_path / "root")
    venv = appvenv.ensure_venv(layout, appvenv.VenvSpec(other, ("trame==4.0.0", "trame-vtk==2.11.17")),
                               interpreter=None, cache_dir=pip_cache)
    assert venv.record.mode == "target"
    python, env = appvenv.tool_python(venv.record, venv.path)
    client = webclient.ensure_client(layout, python, "vue3", ["vtk"], venv.record.packages, env=env)
    assert client.action == "built"
    assert (client.path / "index.html").is_file() and list(client.path.glob("__trame_vtk*"))
    assert webclient.write_app_page(layout, client, "viewer", python, env=env)
    assert 'data-app-name="viewer"' in layout.app_page("viewer").read_text()


def test_pages_of_removed_apps_go_and_other_pages_stay(tmp_path):
    from pvwtasks.layout import Layout

    layout = Layout(tmp_path / "root")
    layout.www.mkdir(parents=True)
    made = webclient.page_html('<html data-app-name="x"><head><base href="." /></head></html>', "trame/vue3-1/",
                               "/paraview/")
    for name in ("kept", "gone"):
        layout.app_page(name).write_text(made.replace('"x"', f'"{name}"'))
    layout.index_page.write_text("<html><head><base href=\"trame/\"></head></html>")
    (layout.www / "notes.html").write_text("<html>a page of the lab</html>")
    assert webclient.remove_stale_pages(layout, ["kept"]) == ["gone"]
    assert sorted(p.name for p in layout.www.iterdir()) == ["index.html", "kept.html", "notes.html"]
