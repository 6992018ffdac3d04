"""The rendered files: their templates and the config keys each reads, the one table dodo.py and render use.

Imports nothing of the render stack (no Jinja2), so loading the dodo stays light.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE_FOLDER = "templates"  # package data: pvwtasks/templates
_TEMPLATES_DIR = Path(__file__).resolve().parent / TEMPLATE_FOLDER

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

ALL = "*"  # every key of the section

# Output name -> the config keys its values come from, by section.  Its render task
# reruns when one of these changes, and only then (besides its template and file_dep).
READS: dict[str, dict[str, tuple[str, ...] | str]] = {
    "vhost": {"web": ("server_name", "server_admin", "http_port", "https_port", "tls_certificate", "tls_key",
                      "proxy_timeout"),
              "launcher": ("host", "port", "second_port", "endpoint")},
    "front": {"fleet": ALL, "web": ("server_name", "server_admin", "http_port", "proxy_timeout"),
              "launcher": ("endpoint",)},
    "launcher": {"launcher": ("host", "port", "endpoint", "timeout", "port_range", "python_flags", "apps",
                              "health_app"),
                 "apps": ("apps",),
                 "web": ("server_name", "http_port", "https_port", "tls_certificate", "tls_key", "node_name",
                         "public_url")},
    "start": {"launcher": ("display", "endpoint", "backend"), "apps": ("apps",)},
    "logrotate": {"logrotate": ALL, "web": ("manage_apache", "apachectl")},
    "cron": {"cron": ("update", "logrotate", "watchdog", "auto_update"), "deploy": ("supervisor",)},
    "index": {"web": ("server_name",), "launcher": ("apps", "endpoint"), "apps": ("apps",)},
    "systemd_launcher": {"launcher": ("user", "allow_root", "proxy_group", "stop_grace")},
    "systemd_update": {},
    "systemd_timer": {"cron": ("update",)},
    "systemd_watchdog": {},
    "systemd_watchdog_timer": {"cron": ("watchdog",)},
}


def template_file(name: str) -> Path:
    """The template file of output ``name`` inside the installed package (KeyError for an unknown name)."""
    # What importlib.resources answers for an installed (unzipped) package, without importing its readers.
    return _TEMPLATES_DIR / TEMPLATES[name]


def config_read(settings, name: str) -> dict:
    """The slice of ``settings`` that output ``name`` reads (``READS``), as plain data for ``config_changed``."""
    read = {}
    for section, keys in READS[name].items():
        data = settings.section(section)
        read[section] = data if keys == ALL else {key: data[key] for key in keys}
    return read
