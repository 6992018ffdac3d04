"""Which apps the launcher serves for a release: the configured ones, or the family's bundled apps.

One place decides, for render (launch.json), the install step (the check
before any switch) and the landing page, so they never disagree.
"""

from __future__ import annotations

from pathlib import Path

from . import families, trame
from .config import App, Settings
from .errors import InstallError
from .layout import ReleaseRecord


def release_info(release: ReleaseRecord, tree: Path) -> families.ReleaseInfo:
    """The family and contents recorded at install time (detected now for an older record)."""
    if release.info:
        try:
            return families.ReleaseInfo.from_json(release.info)
        except (KeyError, TypeError):
            pass
    return families.detect(tree, release.top_folder)


def launcher_apps(settings: Settings, release: ReleaseRecord, tree: Path) -> dict[str, families.AppSpec]:
    """The launcher's apps for ``release`` extracted at ``tree``, checked against the tree.

    Trame apps (``[apps.NAME]``) join them, run from the release's companion
    venv (:func:`pvwtasks.trame.app_specs`); a 5.13+ release with trame apps
    needs nothing else.  Raises NoWebApps (5.13+ with nothing configured),
    FamilyMismatch (a configured app needs what this release lacks) or
    InstallError (the health app is not among them; trame apps on a release
    without ``--venv``, or without its venv): all before any switch.
    """
    info = release_info(release, tree)
    data = settings.layout.extra_link("data")
    configured = settings.launcher.apps
    trame_apps = trame.app_specs(settings, release, tree)
    if configured:
        apps = {name: _configured(app, info, tree, settings.launcher.python_flags)
                for name, app in configured.items()}
        families.check_apps(info, tree, apps)
    elif trame_apps and not info.serves_web_apps:
        apps = {}
    else:
        apps = families.default_apps(info, tree, data)
    apps.update(trame_apps)
    health = settings.launcher.health_app
    if health and health not in apps:
        raise InstallError(f"[launcher] health_app: '{health}' is not among the apps of {info.label} "
                           f"({', '.join(apps)})")
    return apps


def _configured(app: App, info: families.ReleaseInfo, tree: Path, flags: list[str]) -> families.AppSpec:
    """A ``[launcher.apps.NAME]`` entry as a launcher command for this release."""
    pvpython = str(tree / info.pvpython)
    if app.module:
        target = ["-m", app.module]
    else:
        script = Path(app.script)
        if not script.is_absolute():
            in_site = tree / info.site_packages / script
            script = in_site if in_site.is_file() else tree / script
        target = [str(script)]
    args = app.args if app.args is not None else families.default_args(info)
    return families.AppSpec((pvpython, *flags, *target, *args), app.ready_line)
