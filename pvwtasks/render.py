"""Render the deployment's config files from ``config/templates/*.j2``.

Each file is rendered with Jinja2 from the Settings and the installed
release, then written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jinja2

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


def render_file(settings: Settings, name: str) -> None:
    """Render template ``name`` and write it atomically to its output path."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    try:
        text = env.get_template(TEMPLATES[name]).render(settings=settings, layout=settings.layout)
    except jinja2.TemplateError as err:
        raise RenderError(f"{TEMPLATES[name]}: {err}") from None
    out = output_path(settings.layout, name)
    atomic_write_text(out, text, 0o755 if name == "start" else 0o644)
    log.info("rendered %s", out)


def install_cron(settings: Settings) -> None:
    raise RenderError("install_cron: not implemented yet")


def uninstall_cron(settings: Settings) -> None:
    raise RenderError("uninstall_cron: not implemented yet")


def install_vhost(settings: Settings) -> None:
    raise RenderError("install_vhost: not implemented yet")
