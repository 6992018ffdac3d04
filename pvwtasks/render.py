"""Render the deployment's config files from ``config/templates/*.j2``.

Each file is rendered with Jinja2 from the Settings and the installed
release, then written atomically.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

import jinja2

from . import install
from .config import Layout, Settings
from .errors import RenderError
from .fsutil import atomic_write_text

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "config" / "templates"
TEMPLATES = {
    "vhost": "vhost.conf.j2",
    "launcher": "launch.json.j2",
    "start": "start.sh.j2",
    "logrotate": "logrotate.conf.j2",
    "cron": "crontab.j2",
    "index": "index.html.j2",
}
_OUTPUTS = {
    "vhost": ("conf", "pvw-vhost.conf"),
    "launcher": ("conf", "launch.json"),
    "start": ("bin", "start.sh"),
    "logrotate": ("conf", "logrotate.conf"),
    "cron": ("conf", "crontab"),
    "index": ("www", "index.html"),
}


def output_path(layout: Layout, name: str) -> Path:
    folder, filename = _OUTPUTS[name]
    return getattr(layout, folder) / filename


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent)
    env.filters["shquote"] = lambda value: shlex.quote(str(value))
    return env


def session_url(settings: Settings) -> str:
    """The websocket URL clients get back, through Apache's /proxy rewrite."""
    web = settings.web
    scheme, port, default = ("wss", web.https_port, 443) if web.tls else ("ws", web.http_port, 80)
    host = web.server_name if port == default else f"{web.server_name}:{port}"
    return f"{scheme}://{host}/proxy?sessionId=${{id}}&path=ws"


def live_tree(settings: Settings) -> tuple[install.Release, Path]:
    """The live release and its folder; RenderError when nothing is installed yet."""
    release = install.live_release(settings.layout)
    if release is None:
        raise RenderError("no release installed yet; run `doit install` (or `doit update`) first")
    return release, settings.layout.versions / release.name


def launcher_config(settings: Settings) -> dict:
    """The wslink launcher's configuration for the live release, as a dict.

    Apps whose script is missing from the release are left out with a
    warning.  Every property gets a ``sanitize`` entry, so a client's POST
    body cannot replace ``python_exec`` or any other property.
    """
    layout, launcher = settings.layout, settings.launcher
    release, tree = live_tree(settings)
    site = tree / release.site_packages
    properties = {
        "python_exec": str(tree / release.pvpython),
        "python_path": str(site),
        "data": str(layout.autodeploy / "data"),
    }
    apps = {}
    for name, app in launcher.apps.items():
        if not (site / app.script).is_file():
            log.warning("app %s left out: %s is not in %s", name, app.script, release.name)
            continue
        cmd = ["${python_exec}", *launcher.python_flags, "${python_path}/" + app.script, *app.args]
        apps[name] = {"cmd": cmd, "ready_line": app.ready_line}
    if not apps:
        raise RenderError(f"none of the configured apps exists in {release.name}; check [launcher.apps]")
    return {
        "configuration": {
            "host": launcher.host,
            "port": launcher.port,
            "endpoint": launcher.endpoint,
            "sessionURL": session_url(settings),
            "timeout": launcher.timeout,
            "log_dir": str(session_log_dir(layout)),
            "proxy_file": str(layout.proxy_file),
            "fields": ["file", "host", "port"],
            "content": str(layout.www),
            "sanitize": {
                key: {"type": "inList", "list": [value], "default": value} for key, value in properties.items()
            },
        },
        "resources": [{"host": launcher.host, "port_range": list(launcher.port_range)}],
        "properties": properties,
        "apps": apps,
    }


def session_log_dir(layout: Layout) -> Path:
    """Where the launcher writes launcherLog.log and one <session id>.txt per session."""
    return layout.logs / "launcher"


def _context(settings: Settings, name: str) -> dict:
    layout = settings.layout
    context = {"settings": settings, "layout": layout, "project_python": sys.executable}
    if name == "launcher":
        context["launcher_config"] = launcher_config(settings)
        session_log_dir(layout).mkdir(parents=True, exist_ok=True)
        data = layout.autodeploy / "data"
        if not data.exists() and not data.is_symlink():
            data.mkdir(parents=True)
    elif name == "start":
        release, tree = live_tree(settings)
        context.update(
            pvpython=str(tree / release.pvpython),
            bundled_launcher=str(tree / release.site_packages / "wslink" / "launcher.py"),
            launch_json=str(output_path(layout, "launcher")),
            launcher_log=str(layout.logs / "launcher.log"),
        )
    return context


def render_text(settings: Settings, name: str) -> str:
    """Render template ``name`` for ``settings``; RenderError on a template problem."""
    try:
        return _environment().get_template(TEMPLATES[name]).render(**_context(settings, name))
    except jinja2.TemplateError as err:
        raise RenderError(f"{TEMPLATES[name]}: {err}") from None


def render_file(settings: Settings, name: str) -> None:
    """Render template ``name`` and write it atomically to its output path."""
    text = render_text(settings, name)
    out = output_path(settings.layout, name)
    atomic_write_text(out, text, 0o755 if name == "start" else 0o644)
    log.info("rendered %s", out)


def install_cron(settings: Settings) -> None:
    raise RenderError("install_cron: not implemented yet")


def uninstall_cron(settings: Settings) -> None:
    raise RenderError("uninstall_cron: not implemented yet")


def install_vhost(settings: Settings) -> None:
    raise RenderError("install_vhost: not implemented yet")
