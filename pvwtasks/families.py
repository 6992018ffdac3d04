"""Tell the family of an extracted ParaView release, and what each family serves and how.

The families and their markers come from RELEASES.md ("Telling the families
apart"), plus the 4.x layout this project started with:

==========  =====================================================================
legacy      4.x - 5.5: ``SP/paraview/web/pv_web_*.py`` (maybe ``lib/paraview-X.Y/site-packages``)
5.6-5.9     wslink 0.1.x bundled; apps in ``share/paraview-X.Y/web/<app>/server/pvw-<app>.py``
5.10-5.12   wslink 1.x (aiohttp) bundled; apps are ``paraview.apps.<app>`` modules
5.13        no wslink, no web apps (trame apps from a venv; ``--venv``)
6.x         as 5.13, one universal build (OpenGL backend picked at run time)
==========  =====================================================================

(SP is the release's ``lib/python<A.B>/site-packages``.)  Everything here is
a pure function of the tree and its top folder's name: nothing is written.
Paths in :class:`ReleaseInfo` are relative to the tree, so the record stays
valid when the tree is reached through the ``paraview`` symlink.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from .errors import ConfigError, FamilyMismatch, InstallError, NoWebApps
from .frozen import Frozen

LEGACY = "legacy"
FAMILY_5_6 = "5.6-5.9"
FAMILY_5_10 = "5.10-5.12"
FAMILY_5_13 = "5.13"
FAMILY_6 = "6.x"
FAMILIES = (LEGACY, FAMILY_5_6, FAMILY_5_10, FAMILY_5_13, FAMILY_6)

WSLINK_APPS = ("visualizer", "lite", "divvy")  # the wslink apps 5.6 - 5.12 bundle (glance is static)
LEGACY_APPS = {  # config._seed_apps: app name -> script under SP
    "pipeline": "paraview/web/pv_web_visualizer.py",
    "visualizer": "paraview/web/pv_web_visualizer.py",
    "loader": "paraview/web/pv_web_file_loader.py",
    "data_prober": "paraview/web/pv_web_data_prober.py",
}
READY_LINE = "Starting factory"
NO_WEB_APPS = "ParaView 5.13+ ships no web apps: configure a trame app, see README"
OPENGL_WINDOWS = {"egl": "vtkEGLRenderWindow", "osmesa": "vtkOSOpenGLRenderWindow", "glx": "vtkXOpenGLRenderWindow"}
_OPTION_NAMES = {"egl": "EGL", "osmesa": "OSMesa", "glx": "GLX"}


class ReleaseInfo(Frozen):
    """What an installed release is and holds (paths relative to its tree)."""

    family: str  # one of FAMILIES
    paraview_version: str  # X.Y.Z from the top folder when it agrees with the tree, else X.Y
    python_version: str  # A.B from lib/python<A.B>; "" when unknown (4.x)
    variant: str  # "egl", "osmesa" or "" (from the file name; always "" for 6.x)
    bundles_wslink: bool  # SP/wslink/ exists
    pvpython: str  # "bin/pvpython"
    pvpython_real: str  # "bin/pvpython-real" from 5.9 on, else ""
    site_packages: str  # e.g. "lib/python3.10/site-packages"
    share_web: str  # e.g. "share/paraview-5.12/web", "" when absent
    server_apps: tuple[str, ...]  # apps with a wslink server in the release
    static_apps: tuple[str, ...]  # apps with a share_web/<app>/www client

    @property
    def label(self) -> str:
        """One line for status pages: ``ParaView 5.12.1 (5.10-5.12, Python 3.10, egl)``."""
        details = [self.family, *([f"Python {self.python_version}"] if self.python_version else []),
                   *([self.variant] if self.variant else [])]
        return f"ParaView {self.paraview_version or '?'} ({', '.join(details)})"

    @property
    def serves_web_apps(self) -> bool:
        """Whether the release has wslink apps of its own (5.13 and 6.x have none)."""
        return bool(self.server_apps)

    def to_json(self) -> dict:
        data = asdict(self)
        data["server_apps"], data["static_apps"] = list(self.server_apps), list(self.static_apps)
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> ReleaseInfo:
        """The record back from :meth:`to_json`; raises KeyError/TypeError on a malformed one."""
        values = {name: data[name] for name in cls.__dataclass_fields__}
        values["server_apps"], values["static_apps"] = tuple(values["server_apps"]), tuple(values["static_apps"])
        return cls(**values)


class AppSpec(Frozen):
    """One app of the wslink launcher: its command (with ``${host}``, ``${port}``, ``${secret}``) and ready line."""

    cmd: tuple[str, ...]
    ready_line: str = READY_LINE

    def to_launcher(self) -> dict:
        """The entry of launch.json's ``apps``."""
        return {"cmd": list(self.cmd), "ready_line": self.ready_line}


# --------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------


def detect(tree: Path, top_folder: str) -> ReleaseInfo:
    """Tell the family, versions and contents of the release extracted at ``tree``.

    ``top_folder`` is the archive's top folder (the file name without
    ``.tar.gz``): only it shows the egl/osmesa variant and the patch version.
    Raises InstallError when the tree is not a ParaView binary release or
    its family cannot be told.
    """
    pvpython = tree / "bin" / "pvpython"
    if not pvpython.is_file():
        raise InstallError(f"{tree.name}: no bin/pvpython; not a ParaView binary release")
    site, python_version = _site_packages(tree, top_folder)
    sp = tree / site
    major_minor = _major_minor(tree)
    paraview_version = _paraview_version(top_folder, major_minor)
    share_web = f"share/paraview-{major_minor}/web" if major_minor and (tree / "share" / f"paraview-{major_minor}"
                                                                         / "web").is_dir() else ""
    web = tree / share_web if share_web else None
    family = _family(tree, sp, web, site, paraview_version, top_folder)
    variant = "" if family == FAMILY_6 else _variant(top_folder)
    if family == LEGACY:
        server_apps = tuple(name for name, script in LEGACY_APPS.items() if (sp / script).is_file())
    elif family == FAMILY_5_6:
        server_apps = tuple(name for name in WSLINK_APPS
                            if web and (web / name / "server" / f"pvw-{name}.py").is_file())
    elif family == FAMILY_5_10:
        server_apps = tuple(name for name in WSLINK_APPS if (sp / "paraview" / "apps" / f"{name}.py").is_file())
    else:
        server_apps = ()
    static_apps = () if family == LEGACY or web is None else tuple(
        sorted(entry.name for entry in web.iterdir() if (entry / "www").is_dir()))
    return ReleaseInfo(
        family=family,
        paraview_version=paraview_version,
        python_version=python_version,
        variant=variant,
        bundles_wslink=(sp / "wslink").is_dir(),
        pvpython="bin/pvpython",
        pvpython_real="bin/pvpython-real" if (tree / "bin" / "pvpython-real").is_file() else "",
        site_packages=site,
        share_web=share_web,
        server_apps=server_apps,
        static_apps=static_apps,
    )


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _site_packages(tree: Path, top_folder: str) -> tuple[str, str]:
    """(SP relative to tree, Python A.B): the newest lib/python*/site-packages, else 4.x's lib/paraview-X.Y/."""
    modern = sorted((tree / "lib").glob("python*/site-packages"), key=lambda p: _version_key(p.parent.name))
    if modern:
        site = modern[-1]
        return str(site.relative_to(tree)), site.parent.name.removeprefix("python")
    legacy = sorted((tree / "lib").glob("paraview-*/site-packages"), key=lambda p: _version_key(p.parent.name))
    if legacy:  # ParaView 4.x kept its modules in lib/paraview-X.Y/site-packages
        named = re.search(r"Python(\d+\.\d+)", top_folder, re.IGNORECASE)
        return str(legacy[-1].relative_to(tree)), named.group(1) if named else ""
    raise InstallError(f"{tree.name}: no lib/python*/site-packages; not a ParaView binary release")


def _major_minor(tree: Path) -> str:
    """X.Y from share/paraview-X.Y/, else lib/paraview-X.Y/ ("" when neither)."""
    for parent in (tree / "share", tree / "lib"):
        found = sorted((p.name.removeprefix("paraview-") for p in parent.glob("paraview-*")
                        if p.is_dir() and re.fullmatch(r"paraview-\d+\.\d+", p.name)), key=_version_key)
        if found:
            return found[-1]
    return ""


def _paraview_version(top_folder: str, major_minor: str) -> str:
    named = re.search(r"ParaView-v?(\d+\.\d+(?:\.\d+)?(?:-RC\d+)?)", top_folder, re.IGNORECASE)
    if named and (not major_minor or _version_key(named.group(1))[:2] == _version_key(major_minor)):
        return named.group(1)
    return major_minor


def _variant(top_folder: str) -> str:
    tokens = {token.lower() for token in top_folder.split("-")}
    return next((variant for variant in ("egl", "osmesa") if variant in tokens), "")


def _family(tree: Path, sp: Path, web: Path | None, site: str, version: str, top_folder: str) -> str:
    """The family by RELEASES.md's markers, in its order, with the 4.x layout first among the wslink-less."""
    key = _version_key(version)[:2] if version else ()
    if (sp / "paraview" / "simple" / "__init__.py").is_file() or (sp / "paraview" / "simple").is_dir() \
            or (sp / "paraview" / "apps" / "packages.py").is_file():
        return FAMILY_6
    has_wslink = (sp / "wslink").is_dir()
    if any((sp / "paraview" / "web").glob("pv_web_*.py")) or site.startswith("lib/paraview-") \
            or (key and key < (5, 6) and not has_wslink):
        return LEGACY
    has_visualizer = web is not None and (web / "visualizer").is_dir()
    if not has_wslink and not has_visualizer:
        return FAMILY_5_13
    if (sp / "wslink" / "backends" / "aiohttp").is_dir() or (sp / "paraview" / "web" / "venv.py").is_file():
        return FAMILY_5_10
    if has_wslink:
        return FAMILY_5_6
    if key and (5, 6) <= key < (5, 10):  # web apps without wslink: trust the version
        return FAMILY_5_6
    if key and (5, 10) <= key < (5, 13):
        return FAMILY_5_10
    raise InstallError(f"{top_folder}: cannot tell the ParaView release family (web apps but no wslink)")


# --------------------------------------------------------------------------
# what each family serves
# --------------------------------------------------------------------------


def default_apps(info: ReleaseInfo, release_dir: Path, data_dir: Path) -> dict[str, AppSpec]:
    """The launcher apps a config that names none gets: the family's bundled wslink apps.

    ``release_dir`` is where the tree is reached (the live symlink, say),
    ``data_dir`` the folder served as data.  Commands are exactly what each
    family's apps accept (5.10 - 5.12 reject unknown flags).  Raises
    NoWebApps for 5.13 and 6.x, which ship none; InstallError when a
    5.6 - 5.12 or legacy release has none of its apps.
    """
    if info.family in (FAMILY_5_13, FAMILY_6):
        raise NoWebApps(NO_WEB_APPS)
    pvpython = str(release_dir / info.pvpython)
    data = str(data_dir)
    apps: dict[str, AppSpec] = {}
    for name in info.server_apps:
        if info.family == LEGACY:
            script = str(release_dir / info.site_packages / LEGACY_APPS[name])
            cmd = [pvpython, "-dr", script, "--port", "${port}", "--data-dir", data, "-f", "--authKey", "${secret}"]
        elif info.family == FAMILY_5_6:
            app_dir = release_dir / info.share_web / name
            cmd = [pvpython, str(app_dir / "server" / f"pvw-{name}.py"), "--port", "${port}", "--data", data,
                   "--authKey", "${secret}"]
            if info.share_web and name in info.static_apps:
                cmd += ["--content", str(app_dir / "www")]
        else:
            cmd = [pvpython, "-m", f"paraview.apps.{name}", "--host", "${host}", "--port", "${port}",
                   "--authKey", "${secret}", "--data", data]
        apps[name] = AppSpec(tuple(cmd))
    if not apps:
        raise InstallError(f"ParaView {info.paraview_version} ({info.family}) holds none of its web apps")
    return apps


def default_args(info: ReleaseInfo) -> list[str]:
    """The arguments an app of this family takes, for a configured app that gives none.

    Exactly what each family's apps accept: 5.10 - 5.12 exit on an unknown
    flag such as ``-f``; 5.13+ apps are trame apps (``--server``).
    """
    if info.family == LEGACY:
        return ["--port", "${port}", "--data-dir", "${data}", "-f", "--authKey", "${secret}"]
    if info.family == FAMILY_5_6:
        return ["--port", "${port}", "--data", "${data}", "--authKey", "${secret}"]
    if info.family == FAMILY_5_10:
        return ["--host", "${host}", "--port", "${port}", "--authKey", "${secret}", "--data", "${data}"]
    return ["--host", "${host}", "--port", "${port}", "--authKey", "${secret}", "--server"]


def require_web_apps(info: ReleaseInfo, configured: Iterable[str]) -> None:
    """Fail before any switch when the release can serve nothing: 5.13+/6.x and no (trame) app configured.

    Raises NoWebApps with the one line users see.
    """
    if not info.serves_web_apps and info.family in (FAMILY_5_13, FAMILY_6) and not list(configured):
        raise NoWebApps(NO_WEB_APPS)


def missing_parts(info: ReleaseInfo, release_dir: Path, cmd: Sequence[str]) -> list[str]:
    """What an app command needs from the release and the release lacks (empty: nothing).

    Looks at ``-m module`` (searched in the release's site-packages when it
    starts with ``paraview`` or ``wslink``) and at ``.py`` paths inside
    ``release_dir``.  Lets the apps of one family be caught against the tree
    of another before a switch.
    """
    missing = []
    release = str(release_dir).rstrip("/") + "/"
    sp = release_dir / info.site_packages
    for index, arg in enumerate(cmd):
        if arg == "-m" and index + 1 < len(cmd):
            module = cmd[index + 1]
            if module.split(".")[0] in ("paraview", "wslink") and not _module_file(sp, module):
                missing.append(f"module {module}")
        elif arg.endswith(".py") and arg.startswith(release) and not Path(arg).is_file():
            missing.append(arg[len(release):])
    return missing


def check_apps(info: ReleaseInfo, release_dir: Path, apps: Mapping[str, AppSpec]) -> None:
    """Raise FamilyMismatch naming the first app whose command needs what the release lacks."""
    for name, spec in apps.items():
        missing = missing_parts(info, release_dir, spec.cmd)
        if missing:
            raise FamilyMismatch(f"app {name} needs {missing[0]}, which ParaView {info.paraview_version} "
                                 f"({info.family} family) does not have; check [launcher.apps]")


def _module_file(sp: Path, module: str) -> bool:
    base = sp.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or (base / "__main__.py").is_file()


def launcher_python(info: ReleaseInfo, release_dir: Path) -> Path | None:
    """The Python that runs the wslink launcher: the release's pvpython when it bundles wslink, else None.

    None means pvwtasks' own Python (``sys.executable``), which has wslink.
    """
    return release_dir / info.pvpython if info.bundles_wslink else None


def static_clients(info: ReleaseInfo, release_dir: Path) -> dict[str, Path]:
    """The bundled web clients: app name -> ``share/paraview-X.Y/web/<app>/www``.

    Filled for 5.6 - 5.12 (visualizer, lite, divvy, glance); 5.13 and 6.x
    keep only the static Glance; empty for the 4.x layout.
    """
    if not info.share_web:
        return {}
    return {name: release_dir / info.share_web / name / "www" for name in info.static_apps}


# --------------------------------------------------------------------------
# rendering backend
# --------------------------------------------------------------------------


def opengl_backend(info: ReleaseInfo, backend: str = "", display: str = "") -> str:
    """The OpenGL backend the release's apps use: "egl", "osmesa", "glx", or "" when fixed by the build.

    6.x picks it at run time: ``backend`` when set, else "glx" with an X
    ``display`` and "egl" without.  5.x builds have one backend, shown by
    the variant.  Raises ConfigError for an unknown ``backend``.
    """
    backend = backend.strip().lower()
    if backend and backend not in OPENGL_WINDOWS:
        raise ConfigError(f"[launcher] backend must be egl, osmesa or glx, not {backend!r}")
    if info.family != FAMILY_6:
        return ""
    return backend or ("glx" if display else "egl")


def render_env(info: ReleaseInfo, backend: str = "", display: str = "") -> dict[str, str]:
    """Environment for the release's apps: ``DISPLAY`` when set; for 6.x ``VTK_DEFAULT_OPENGL_WINDOW``."""
    env = {"DISPLAY": display} if display else {}
    chosen = opengl_backend(info, backend, display)
    if chosen:
        env["VTK_DEFAULT_OPENGL_WINDOW"] = OPENGL_WINDOWS[chosen]
    return env


def pvpython_backend_args(info: ReleaseInfo, backend: str = "", display: str = "") -> list[str]:
    """The same choice as pvpython options (6.x): ``["--opengl-window-backend", "EGL"]``, else []."""
    chosen = opengl_backend(info, backend, display)
    return ["--opengl-window-backend", _OPTION_NAMES[chosen]] if chosen else []
