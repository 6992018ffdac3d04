"""The trame apps of a release: its companion venv, the static clients and one page per app.

Ties the config (``[apps]``, ``[apps.NAME]``) to :mod:`pvwtasks.appvenv` and
:mod:`pvwtasks.webclient` for one installed release:

* :func:`ensure_release_venv` builds (or reuses, with no pip run) the venv
  for the release's Python minor and records its key in the release's
  record.  The install step calls it *before* the live link switches, so a
  failed pip run leaves the live release and its venv untouched.
* :func:`ensure_live_venv` (the ``venv`` task) does the same for the live
  release after a change of ``[apps]``, then prunes the venvs no kept
  release uses.
* :func:`build_web_clients` (the ``web_client`` task) builds one static
  client per client type and writes ``www/<app>.html`` per app.

Layer: beside render and launcher (imports config, layout, apps-level modules).
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from . import families, releases, webclient  # appvenv: imported where used (not by a no-op without trame apps)
from .config import Settings, TrameApp
from .errors import InstallError, VenvError
from .layout import ReleaseRecord

log = logging.getLogger(__name__)

TRAME_MODULE = "paraview.apps.trame"
VENV_FAMILIES = (families.FAMILY_5_13, families.FAMILY_6)  # pvpython --venv exists from 5.13 on


def configured(settings: Settings) -> dict[str, TrameApp]:
    """The ``[apps.NAME]`` trame apps, by name (empty: none)."""
    return dict(settings.apps.apps)


def requirements(settings: Settings) -> tuple[str, ...]:
    """The venv's requirements: ``[apps] requirements`` then each app's, without repeats, in order."""
    seen: dict[str, None] = {}
    for req in [*settings.apps.requirements, *(r for app in settings.apps.apps.values() for r in app.requirements)]:
        seen.setdefault(req, None)
    return tuple(seen)


def check_family(info: families.ReleaseInfo) -> None:
    """Raise InstallError unless the release's pvpython has ``--venv`` (5.13 on)."""
    if info.family not in VENV_FAMILIES:
        raise InstallError(f"trame apps ([apps.NAME]) need pvpython --venv, which ParaView 5.13 and later have; "
                           f"{info.label} has not: remove [apps.*] or deploy 5.13+")


def venv_spec(settings: Settings, info: families.ReleaseInfo) -> appvenv.VenvSpec:
    """What the release's companion venv holds: the requirements, for the release's Python minor."""
    from . import appvenv

    cfg = settings.apps
    if not info.python_version:
        raise InstallError(f"{info.label}: its Python version is unknown; cannot build the trame apps' venv")
    return appvenv.VenvSpec(python_version=info.python_version, requirements=requirements(settings),
                            index_url=cfg.index_url or None,
                            find_links=(cfg.find_links,) if cfg.find_links else (), allow_vtk=cfg.allow_vtk)


def _info(settings: Settings, release: ReleaseRecord) -> families.ReleaseInfo:
    from . import apps  # the same family lookup as the launcher's apps

    return apps.release_info(release, settings.layout.release_dir(release.name))


def ensure_release_venv(settings: Settings, release: ReleaseRecord) -> ReleaseRecord:
    """The release with its companion venv built (or reused) and its key recorded; unchanged without trame apps.

    Raises VenvError (one line naming the requirement pip failed on) or
    InstallError (a family without ``--venv``).  Writes only under
    ``autodeploy/venvs`` and the release's own record (``versions/<name>.json``).
    """
    from . import appvenv

    if not configured(settings):
        if release.venv is not None:
            release = release.replace(venv=None)
            release.save(settings.layout.release_record(release.name))
        return release
    info = _info(settings, release)
    check_family(info)
    result = appvenv.ensure_venv(settings.layout, venv_spec(settings, info))
    log.info("trame apps' venv for %s: %s (%s)", release.name, result.record.key, result.action)
    if release.venv != result.record.key:
        release = release.replace(venv=result.record.key)
        release.save(settings.layout.release_record(release.name))
    return release


def kept_venvs(settings: Settings) -> list[str]:
    """The venv keys the installed releases use (so a venv goes with its release)."""
    return [r.venv for r in releases.all_releases(settings.layout) if r.venv]


def ensure_live_venv(settings: Settings) -> dict:
    """The ``venv`` task: the live release's venv as configured, then prune venvs of releases gone.

    A no-op when already built with these requirements (no pip run).  On a
    new venv key the live release's record and ``installed.json`` are
    rewritten, so launch.json and start.sh follow; a failure leaves both as
    they were.  Raises VenvError or InstallError.
    """
    from . import appvenv

    layout = settings.layout
    live = releases.live_release(layout)
    if live is None:
        raise InstallError("no live release yet; run the install step first")
    updated = ensure_release_venv(settings, live)
    if updated != live:
        releases.switch_live(layout, updated)  # rewrites installed.json only: the link stays
    pruned = appvenv.prune(layout, kept_venvs(settings))
    return {"venv": updated.venv, "pruned": pruned}


def venv_current(settings: Settings) -> bool:
    """True when the live release's venv is built from the configured requirements (never raises)."""
    try:
        live = releases.live_release(settings.layout)
        if live is None:
            return False
        if not configured(settings):
            return live.venv is None
        if live.venv is None:
            return False
        from . import appvenv

        record = appvenv.built_venvs(settings.layout).get(live.venv)
        spec = venv_spec(settings, _info(settings, live))
        return record is not None and appvenv.request_hash(spec) in record.requests
    except Exception as err:  # an uptodate check never raises: run the task, which reports it
        log.warning("venv check: %s", err)
        return False


def live_venv(settings: Settings, release: ReleaseRecord) -> tuple[Path, object]:
    """(venv folder, VenvRecord) of ``release``; VenvError when it has none built."""
    from . import appvenv

    layout = settings.layout
    record = appvenv.built_venvs(layout).get(release.venv or "")
    if record is None:
        raise VenvError(f"{release.name} has no built companion venv for its trame apps; run `doit venv`")
    return layout.venv_dir(record.key), record


def launcher_python(settings: Settings, release: ReleaseRecord) -> Path | None:
    """The Python with wslink >= 2.5 that runs the launcher for trame apps (the venv's or pvwtasks' own).

    None without trame apps (the family decides then).
    """
    from . import appvenv

    if not configured(settings) or not release.venv:
        return None
    record = appvenv.built_venvs(settings.layout).get(release.venv)
    return Path(record.launcher_python) if record is not None else Path(sys.executable)


def app_specs(settings: Settings, release: ReleaseRecord, tree: Path) -> dict[str, families.AppSpec]:
    """The launcher's trame apps for ``release`` at ``tree``: Kitware's command, ready line ``App running at``.

    ``pvpython --venv V (-m MODULE | -m paraview.apps.trame --trame-app MODULE | SCRIPT)
    --host ${host} --port ${port} --authKey ${secret} --server ARGS``.  Raises
    InstallError for a family without ``--venv`` or a release without its venv.
    """
    trame = configured(settings)
    if not trame:
        return {}
    info = _info(settings, release)
    check_family(info)
    if not release.venv:
        raise InstallError(f"{release.name} has no companion venv for its trame apps; run `doit venv`")
    venv = settings.layout.venv_dir(release.venv)
    pvpython = str(tree / info.pvpython)
    specs = {}
    for name, app in trame.items():
        if app.module:
            target = ["-m", app.module]
        elif app.trame_app:
            target = ["-m", TRAME_MODULE, "--trame-app", app.trame_app]
        else:
            script = Path(app.script)
            target = [str(script if script.is_absolute() else tree / script)]
        cmd = [pvpython, "--venv", str(venv), *target, "--host", "${host}", "--port", "${port}",
               "--authKey", "${secret}", "--server", *app.args]
        specs[name] = families.AppSpec(tuple(cmd), app.ready_line)
    return specs


def _client_groups(settings: Settings) -> dict[str, list[str]]:
    """Client type -> the trame modules its apps use (sorted, without repeats)."""
    groups: dict[str, set[str]] = {}
    for app in settings.apps.apps.values():
        groups.setdefault(app.client, set()).update(app.client_modules)
    return {client: sorted(mods) for client, mods in sorted(groups.items())}


def build_web_clients(settings: Settings) -> dict:
    """The ``web_client`` task: one static client per client type, ``www/<app>.html`` per trame app.

    Reuses a built client (no Python run) and an unchanged page; removes
    pages of apps no longer configured and clients no page uses.  Raises
    WebClientError or VenvError.
    """
    from . import appvenv

    layout = settings.layout
    trame = configured(settings)
    if not trame:
        removed = webclient.remove_stale_pages(layout, [])
        webclient.prune_clients(layout, [])
        return {"clients": [], "pages": [], "removed": removed}
    live = releases.live_release(layout)
    if live is None:
        raise InstallError("no live release yet; run the install step first")
    venv, record = live_venv(settings, live)
    python, env = appvenv.tool_python(record, venv)
    endpoint = settings.launcher.endpoint_path + "/"
    clients, pages = {}, []
    for client_type, modules in _client_groups(settings).items():
        clients[client_type] = webclient.ensure_client(layout, python, client_type, modules, record.packages, env)
    for name, app in trame.items():
        if webclient.write_app_page(layout, clients[app.client], name, python, endpoint, env):
            pages.append(name)
    removed = webclient.remove_stale_pages(layout, list(trame))
    webclient.prune_clients(layout, [c.record.key for c in clients.values()])
    return {"clients": [c.record.key for c in clients.values()], "pages": pages, "removed": removed}


def clients_current(settings: Settings) -> bool:
    """True when each trame app's page exists and points at a built client of the live venv (never raises)."""
    try:
        layout = settings.layout
        trame = configured(settings)
        if not trame:
            return not any(webclient.built_clients(layout))
        live = releases.live_release(layout)
        if live is None or not live.venv:
            return False
        _venv, record = live_venv(settings, live)
        built = webclient.built_clients(layout)
        groups = _client_groups(settings)
        keys = {client: webclient.client_key(client, ["www", *(m for m in mods if m != "www")], record.packages)
                for client, mods in groups.items()}
        if not all(key in built for key in keys.values()):
            return False
        for name, app in trame.items():
            page = layout.app_page(name)
            text = page.read_text(encoding="utf-8") if page.is_file() else ""
            if not re.search(rf'<base href="trame/{re.escape(keys[app.client])}/"', text):
                return False
        return True
    except Exception as err:  # an uptodate check never raises
        log.warning("web client check: %s", err)
        return False
