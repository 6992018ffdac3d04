"""The rendered files and their templates: the one table dodo.py (each render task's file_dep) and render use.

Imports nothing of the render stack (no Jinja2), so loading the dodo stays light.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE_FOLDER = "templates"  # package data: pvwtasks/templates

# Rendered output name (the doit task is render_<name>) -> its template in TEMPLATE_FOLDER.
TEMPLATES = {
    "vhost": "vhost.conf.j2",
    "front": "front.conf.j2",
    "launcher": "launch.json.j2",
    "start": "start.sh.j2",
    "logrotate": "logrotate.conf.j2",
    "cron": "crontab.j2",
    "index": "index.html.j2",
    "systemd_launcher": "systemd-launcher.service.j2",
    "systemd_update": "systemd-update.service.j2",
    "systemd_timer": "systemd-update.timer.j2",
    "systemd_watchdog": "systemd-watchdog.service.j2",
    "systemd_watchdog_timer": "systemd-watchdog.timer.j2",
}


def template_file(name: str) -> Path:
    """The template file of output ``name`` inside the installed package (KeyError for an unknown name)."""
    # What importlib.resources answers for an installed (unzipped) package, without importing its readers.
    return Path(__file__).resolve().parent / TEMPLATE_FOLDER / TEMPLATES[name]
