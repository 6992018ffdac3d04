"""Render the deployment's files from the templates shipped in the package (``pvwtasks/templates``).

``OUTPUTS`` holds one :class:`Output` per rendered file: its template, where
it goes in the :class:`~pvwtasks.layout.Layout`, its mode, the values its
template needs, and the program that checks it before it replaces the
previous file.  ``render_file(settings, name)`` looks the entry up; nothing
here branches on an output's name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
from operator import attrgetter
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__, apache, apps, cron, families, outputs, programs, proxyfile, releases, systemd, trame
from .config import Settings, current_group, current_user
from .errors import PvwError, RenderError
from .frozen import Frozen
from .fsutil import atomic_write_text, replace_symlink
from .layout import HashRecord, LastRun, Layout, ReleaseRecord, RenderedRecord
from .outputs import TEMPLATE_FOLDER, TEMPLATES

log = logging.getLogger(__name__)

TEMPLATE_PACKAGE = __package__


# --- values the templates need

def session_url(settings: Settings) -> str:
    """The websocket URL clients get back, through Apache's /proxy rewrite.

    With trame apps the host is ``USE_HOST``, which the trame client replaces
    with the page's own host and port (``window.location.host``; the scheme
    stays, and with TLS the vhost sends all http to https), so launch.json
    serves whatever name and port the browser used.  The wslink apps'
    clients of 5.6 - 5.12 keep the configured name (and today's tests).
    """
    web = settings.web
    if web.node_name:
        return fleet_session_url(web.public_url, web.node_name, trame.configured(settings))
    scheme, port, default = ("wss", web.https_port, 443) if web.tls else ("ws", web.http_port, 80)
    host = web.server_name if port == default else f"{web.server_name}:{port}"
    if trame.configured(settings):
        host = "USE_HOST"
    return f"{scheme}://{host}/proxy?sessionId=${{id}}&path=ws"


def fleet_session_url(public_url: str, node_name: str, use_host: bool = False) -> str:
    """A fleet host's sessionURL: through the front ``public_url`` to ``/node/<node_name>/proxy``.

    The front proxies ``/node/<name>/`` to that host's own Apache, whose
    ``/proxy`` rewrite finds the session's port in its proxy.txt: no state is
    shared between hosts.  ``use_host``: trame apps, whose client puts the
    page's own host (the front's) in place of ``USE_HOST``.
    """
    front = urlsplit(public_url)
    scheme = "wss" if front.scheme == "https" else "ws"
    host = "USE_HOST" if use_host else front.netloc
    return f"{scheme}://{host}/node/{node_name}/proxy?sessionId=${{id}}&path=ws"


def launcher_url(settings: Settings) -> str:
    """The launcher's own URL (with the trailing slash it requires), as Apache reaches it."""
    return settings.launcher.url


def launcher_address(settings: Settings) -> str:
    """``host:port`` of the launcher of ``settings.slot``, as Apache reaches it (the active map's value)."""
    return settings.launcher.address


def ensure_active_map(settings: Settings) -> Path:
    """``conf/active.txt``, written naming slot a when missing (Apache needs the file to exist)."""
    path = settings.layout.active_map
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, f"launcher {launcher_address(settings.for_slot('a'))}\n", 0o644)
    return path


def _second_proxy_file(settings: Settings) -> Path:
    """Slot b's proxy file, made (like proxy.txt) when missing: Apache refuses a map file that is not there."""
    second = settings.for_slot("b")
    if not second.layout.proxy_file.exists():
        proxyfile.clear_proxy_file(second)
    return second.layout.proxy_file


def session_log_dir(layout: Layout) -> Path:
    """Where the launcher writes launcherLog.log and one <session id>.txt per session (``layout.session_logs``)."""
    return layout.session_logs


def live_tree(settings: Settings) -> tuple[ReleaseRecord, Path]:
    """The live release and its folder; RenderError when nothing is installed yet."""
    release = releases.live_release(settings.layout)
    if release is None:
        raise RenderError("no release installed yet; run `doit install` (or `doit update`) first")
    return release, settings.layout.versions / release.name


def launcher_config(settings: Settings) -> dict:
    """The wslink launcher's configuration for the live release, as a dict.

    The apps are the configured ones or the family's bundled apps
    (:func:`pvwtasks.apps.launcher_apps`).  Every property gets a
    ``sanitize`` entry, so a client's POST body cannot replace
    ``python_exec`` or any other property.
    """
    layout, launcher = settings.layout, settings.launcher
    release, tree = live_tree(settings)
    properties = {
        "python_exec": str(tree / release.pvpython),
        "python_path": str(tree / release.site_packages),
        "data": str(layout.extra_link("data")),
    }
    try:
        served = apps.launcher_apps(settings, release, tree)
    except PvwError as err:
        raise RenderError(str(err)) from None
    return {
        "configuration": {
            "host": launcher.host,
            "port": launcher.port,
            "endpoint": launcher.endpoint,
            "sessionURL": session_url(settings),
            "timeout": launcher.timeout,
            "log_dir": str(layout.session_logs),
            "proxy_file": str(layout.proxy_file),
            "fields": ["file", "host", "port", "secret"],
            "content": str(layout.www),
            "sanitize": {
                key: {"type": "inList", "list": [value], "default": value} for key, value in properties.items()
            },
        },
        "resources": [{"host": launcher.host, "port_range": list(launcher.port_range)}],
        "properties": properties,
        "apps": {name: spec.to_launcher() for name, spec in served.items()},
    }


def last_result(layout: Layout) -> str:
    """The last finished update's result: "ok", "failed" or "none"."""
    run = LastRun.load(layout.last_run_record)
    return str(run.result) if run is not None else "none"


def index_current(settings: Settings) -> bool:
    """True when www/index.html already shows the last update's result and the installed docs."""
    try:
        text = settings.layout.index_page.read_text(encoding="utf-8")
    except OSError:
        return False
    shows_docs = 'href="docs/"' in text
    return (f'<meta name="pvwtasks-last-result" content="{last_result(settings.layout)}">' in text
            and shows_docs == (settings.layout.autodeploy / "docs").is_dir())


_TOKEN = re.compile(r"^[^\s\"'\\#]+$")


def _token(where: str, value: str) -> str:
    """A value written bare into a config line: no spaces, quotes or comment signs."""
    if not _TOKEN.match(value):
        raise RenderError(f"{where}: {value!r} must be one word (no spaces, quotes or #)")
    return value


def _stamp(seconds) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(seconds)))
    except (TypeError, ValueError, OverflowError):
        return "unknown time"


def _link_docs(layout: Layout) -> bool:
    """Make ``www/docs`` point at ``autodeploy/docs`` when the docs are installed; True when linked."""
    docs, link = layout.autodeploy / "docs", layout.www_docs
    if not docs.is_dir():
        return False
    if not link.exists() and not link.is_symlink():
        layout.www.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.join("..", "autodeploy", "docs"), link)
    return link.is_dir()


def _link_static_clients(layout: Layout, info: families.ReleaseInfo) -> dict[str, str]:
    """Serve the release's bundled web clients as ``www/<app>/`` (links through the live link).

    Links left by another release that this one lacks are removed.  Returns
    the app names served, with their link targets.
    """
    wanted = {}
    if info.share_web:
        for app in info.static_apps:
            wanted[app] = os.path.join("..", "autodeploy", layout.live_link.name, info.share_web, app, "www")
    layout.www.mkdir(parents=True, exist_ok=True)
    for entry in layout.www.iterdir():
        if entry.is_symlink() and entry.name not in wanted and _is_client_link(os.readlink(entry), layout):
            entry.unlink()
    for app, target in wanted.items():
        link = layout.www / app
        if link.exists() and not link.is_symlink():
            log.warning("www/%s is a real folder, not a link to the bundled client; left alone", app)
            continue
        if not link.is_symlink() or os.readlink(link) != target:
            replace_symlink(link, target)
    return wanted


def _is_client_link(target: str, layout: Layout) -> bool:
    return target.startswith(os.path.join("..", "autodeploy", layout.live_link.name, "share") + os.sep)


def _check_log_folder(folder: Path) -> None:
    """Make ``folder``; RenderError when logrotate would refuse it (writable by others)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder.stat()
    mode = info.st_mode
    # logrotate skips logs in a world-writable folder, and as root also in one a non-root group can write.
    if mode & stat.S_IWOTH or (os.geteuid() == 0 and mode & stat.S_IWGRP and info.st_gid != 0):
        raise RenderError(f"{folder}: writable by group or others (mode {stat.S_IMODE(mode):04o}); "
                          f"logrotate refuses such a folder: chmod go-w it")


# --- each output's values (they also make the folders the rendered file names)

def _vhost_values(settings: Settings) -> dict:
    layout, web = settings.layout, settings.web
    _token("[web] server_name", web.server_name)
    _token("[web] server_admin", web.server_admin)
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.www.mkdir(parents=True, exist_ok=True)
    https_port = "" if web.https_port == 443 else f":{web.https_port}"
    return {
        "endpoint_path": settings.launcher.endpoint_path,
        "launcher_url": launcher_url(settings),
        "slot_b_url": launcher_url(settings.for_slot("b")),
        "slot_a_address": launcher_address(settings.for_slot("a")),
        "slot_b_address": launcher_address(settings.for_slot("b")),
        "active_map": ensure_active_map(settings),
        "proxy_file": settings.for_slot("a").layout.proxy_file,
        "slot_b_proxy_file": _second_proxy_file(settings),
        "error_log": layout.apache_error_log,
        "access_log": layout.apache_access_log,
        "https_base": f"https://{web.server_name}{https_port}",
    }


def health_uri(settings: Settings) -> str:
    """What the fleet front's health check GETs on each host's Apache: a launcher URL that is no session.

    The launcher answers it (404) while it runs; a stopped launcher makes the
    host's Apache answer 503, and a stopped Apache refuses the connection.
    """
    return settings.launcher.endpoint_path + "/pvwtasks-health"


def _front_values(settings: Settings) -> dict:
    layout, web, fleet = settings.layout, settings.web, settings.fleet
    if not fleet.front:
        raise RenderError(f"{settings.path}: [fleet] hosts: none listed; only a fleet front renders pvw-front.conf")
    _token("[web] server_name", web.server_name)
    layout.logs.mkdir(parents=True, exist_ok=True)
    return {
        "hosts": {name: host.url.rstrip("/") for name, host in sorted(fleet.hosts.items())},
        "fleet": fleet,
        "endpoint_path": settings.launcher.endpoint_path,
        "health_uri": health_uri(settings),
        "modules": apache.FRONT_MODULES,
        "health_expr": "{%{REQUEST_STATUS} < 500}",
        "error_log": layout.apache_error_log,
        "access_log": layout.apache_access_log,
    }


def _launcher_values(settings: Settings) -> dict:
    layout = settings.layout
    values = {"launcher_config": launcher_config(settings)}
    layout.session_logs.mkdir(parents=True, exist_ok=True)
    data = layout.autodeploy / "data"
    if not data.exists() and not data.is_symlink():
        data.mkdir(parents=True)
    return values


def _start_values(settings: Settings) -> dict:
    layout, launcher = settings.layout, settings.launcher
    release, tree = live_tree(settings)
    info = apps.release_info(release, tree)
    # Trame apps: a Python with wslink >= 2.5 (the companion venv's, else pvwtasks' own).  Otherwise
    # the release's own Python when it bundles wslink, else pvwtasks' own (which has it).
    python = (trame.launcher_python(settings, release) or families.launcher_python(info, tree)
              or Path(sys.executable))
    try:
        env = families.render_env(info, launcher.backend, launcher.display)
    except PvwError as err:
        raise RenderError(str(err)) from None
    return {
        "launcher_python": str(python),
        "release": info.label,
        "render_env": env,
        "launch_json": str(layout.launch_json),
        "slot_b_script": str(settings.for_slot("b").layout.start_script) if settings.slot == "a" else "",
        "launcher_log": str(layout.launcher_log),
    }


def _logrotate_values(settings: Settings) -> dict:
    layout, rotate = settings.layout, settings.logrotate
    _token("[logrotate] size", rotate.size)
    for folder in (layout.logs, layout.update_logs, layout.session_logs):
        _check_log_folder(folder)
    return {
        "rotate": rotate,
        "owner": _token("[logrotate] owner", rotate.owner or current_user()),
        "group": _token("[logrotate] group", rotate.group or current_group()),
        "update_log": layout.update_log,
        "launcher_log": layout.launcher_log,
        "launcher_own_log": layout.session_logs / "launcherLog.log",
        "session_logs": layout.session_logs / "*.txt",
        "apache_access_log": layout.apache_access_log,
        "apache_error_log": layout.apache_error_log,
        "apache_managed": settings.web.manage_apache,
        "graceful_command": _graceful_command(settings),
        "state_file": layout.logrotate_state,
        "conf_file": layout.logrotate_conf,
    }


def _graceful_command(settings: Settings) -> str:
    """The shell words of ``[web] apachectl graceful`` for logrotate's postrotate (program by full path)."""
    words = shlex.split(settings.web.apachectl) or ["apache2ctl"]
    words[0] = programs.find(words[0]) or words[0]
    return shlex.join([*words, "graceful"])


def _cron_values(settings: Settings, dodo: str | Path | None = None, task: str = "update") -> dict:
    """``dodo``: the absolute path of the dodo.py cron runs (default: the one beside this package);
    ``task``: the task cron runs (dodo.py names it)."""
    layout = settings.layout
    dodo = Path(dodo or Path(__file__).resolve().parent.parent / "dodo.py")
    layout.update_logs.mkdir(parents=True, exist_ok=True)
    update = [*cron.doit_command(), "-f", dodo, task, f"config={settings.path}"]
    return {
        "config_path": settings.path,
        "supervisor": settings.deploy.supervisor,
        "update_command": cron.command_line(update, layout.update_log),
        "watchdog_command": cron.command_line(cron.watchdog_command(settings), layout.update_log),
        "logrotate_command": cron.command_line(["logrotate", "-s", layout.logrotate_state, layout.logrotate_conf]),
    }


def _unit_text(value) -> str:
    """A value written into a systemd unit: ``%`` doubled; RenderError on a newline."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise RenderError(f"{text!r}: a systemd unit value cannot hold a newline")
    return text.replace("%", "%%")


def _unit_word(value) -> str:
    """One ExecStart argument for systemd: double-quoted, ``%`` and ``$`` escaped."""
    text = _unit_text(value)
    if '"' in text or "\\" in text:
        raise RenderError(f"{text!r}: a systemd command argument cannot hold a quote or backslash")
    return '"' + text.replace("$", "$$") + '"'


def _unit_account(settings: Settings) -> str:
    """``User=`` of the launcher service ("" for root); RenderError for root unless allowed."""
    from .launcher import ROOT_REFUSED

    cfg = settings.launcher
    if cfg.user:
        return _token("[launcher] user", cfg.user)
    if os.geteuid() != 0:
        return current_user()
    if not cfg.allow_root:
        raise RenderError(ROOT_REFUSED)
    return ""


def _systemd_common(settings: Settings) -> dict:
    layout = settings.layout
    layout.systemd_units.mkdir(parents=True, exist_ok=True)
    return {"config_path": settings.path, "root_text": _unit_text(layout.root),
            "units": systemd.unit_names(systemd.instance_name(layout.root))}


def _systemd_launcher_values(settings: Settings) -> dict:
    return {**_systemd_common(settings),
            "account": _unit_account(settings),
            "proxy_group": _token("[launcher] proxy_group", settings.launcher.proxy_group),
            "start_script": _unit_word(settings.layout.start_script),
            "stop_timeout": f"{max(settings.launcher.stop_grace, 1):g}s"}


def _systemd_update_values(settings: Settings, dodo: str | Path | None = None, task: str = "update") -> dict:
    dodo = Path(dodo or Path(__file__).resolve().parent.parent / "dodo.py")
    settings.layout.update_logs.mkdir(parents=True, exist_ok=True)
    words = [*cron.doit_command(), "-f", dodo, task, f"config={settings.path}"]
    return {**_systemd_common(settings),
            "path_env": _unit_word("PATH=" + cron.cron_path()),
            "update_command": " ".join(_unit_word(w) for w in words)}


def _systemd_timer_values(settings: Settings) -> dict:
    return _timer_values(settings, "update", settings.cron.update)


def _timer_values(settings: Settings, kind: str, schedule: str) -> dict:
    """A timer unit's values: its cron ``schedule`` (``[cron] <kind>``) as OnCalendar, and the unit it starts."""
    common = _systemd_common(settings)
    try:
        calendar = systemd.on_calendar(schedule)
    except PvwError as err:
        raise RenderError(f"{settings.path}: [cron] {kind}: {err}") from None
    return {**common, "schedule": schedule, "on_calendar": calendar, f"{kind}_unit": common["units"][kind]}


def _systemd_watchdog_values(settings: Settings) -> dict:
    words = cron.watchdog_command(settings)
    return {**_systemd_common(settings),
            "path_env": _unit_word("PATH=" + cron.cron_path()),
            "watchdog_command": " ".join(_unit_word(w) for w in words)}


def _systemd_watchdog_timer_values(settings: Settings) -> dict:
    return _timer_values(settings, "watchdog", settings.cron.watchdog)


def systemd_unit_path(kind: str) -> Callable[[Layout], Path]:
    """Where the rendered unit ``kind`` ("launcher", "update", "timer") goes: conf/systemd/<unit name>."""
    return lambda layout: layout.systemd_units / systemd.unit_names(systemd.instance_name(layout.root))[kind]


SYSTEMD_OUTPUTS = {"launcher": "systemd_launcher", "update": "systemd_update", "timer": "systemd_timer",
                   "watchdog": "systemd_watchdog", "watchdog_timer": "systemd_watchdog_timer"}


def _index_values(settings: Settings) -> dict:
    layout = settings.layout
    live = releases.live_release(layout)
    release = None
    if live is not None:
        published = HashRecord.load(layout.hash_file)
        release = {"version": live.version, "top_folder": live.top_folder, "sha256": live.sha256,
                   "installed": _stamp(live.installed_at), "url": published.url if published else ""}
    run = LastRun.load(layout.last_run_record)
    last_run = None
    if run is not None and run.result:
        last_run = {"result": str(run.result), "finished": _stamp(run.finished), "host": str(run.host),
                    "failed": sorted(run.failed or {})}
    names, clients = sorted(settings.launcher.apps), {}
    if live is not None:
        tree = layout.release_dir(live.name)
        info = apps.release_info(live, tree)
        release["family"] = info.label
        clients = _link_static_clients(layout, info)
        try:
            names = list(apps.launcher_apps(settings, live, tree))
        except PvwError as err:
            log.warning("landing page: %s", err)
    names += [name for name in clients if name not in names]  # static-only clients such as glance
    pages = {name: f"{name}.html" for name in trame.configured(settings) if layout.app_page(name).is_file()}
    app_links = [{"name": app, "link": f"{app}/" if app in clients else pages.get(app, "")} for app in names]
    return {
        "release": release,
        "last_run": last_run,
        "last_result": last_run["result"] if last_run else "none",
        "apps": app_links,
        "docs_link": "docs/" if _link_docs(layout) else "",
        "endpoint_path": settings.launcher.endpoint_path,
    }


def _marker(name: str) -> str:
    """A stand-in for a per-run value: private-use characters, which neither HTML nor Jinja's escaping touch."""
    return f"\ue000{name}\ue001"


def _index_run_markers(values: dict) -> tuple[dict, dict]:
    """The landing page's values with markers for the last run's line, and the HTML each marker stands for.

    Whether there is a last run, and whether it failed tasks, stay in the
    values: they choose the template's branches.
    """
    run = values["last_run"]
    if run is None:
        return values, {}
    fills = {_marker(key): _html_escape(run[key]) for key in ("result", "finished", "host")}
    fills[_marker("failed")] = ", ".join(_html_escape(name) for name in run["failed"])
    marked = {**values, "last_result": _marker("result"),
              "last_run": {**{key: _marker(key) for key in ("result", "finished", "host")},
                           "failed": [_marker("failed")] if run["failed"] else []}}
    return marked, fills


def _html_escape(value) -> str:
    """What Jinja's autoescape writes for ``value`` (markupsafe.escape), without importing it."""
    return (str(value).replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
            .replace("'", "&#39;").replace('"', "&#34;"))


# --- checks: each raises RenderError when the program that reads the file rejects it

def _check_vhost(settings: Settings, candidate: Path) -> None:
    """``apache2 -t`` on the vhost inside a private httpd.conf (skipped without Apache)."""
    web = settings.web
    ports = [web.http_port, web.https_port] if web.tls else [web.http_port]
    if not apache.check_vhost(candidate, ports, web.tls):
        log.info("apache2 is not installed; %s not checked", settings.layout.vhost_file.name)


def _check_front(settings: Settings, candidate: Path) -> None:
    """``apache2 -t`` on the front with the balancer modules loaded (skipped without Apache)."""
    if not apache.check_vhost(candidate, [settings.web.http_port], False, apache.FRONT_MODULES):
        log.info("apache2 is not installed; %s not checked", settings.layout.front_file.name)


def _check_logrotate(settings: Settings, candidate: Path) -> None:
    """``logrotate -d`` (skipped without logrotate)."""
    binary = programs.find("logrotate")
    if binary is None:
        log.info("logrotate is not installed; %s not checked", settings.layout.logrotate_conf.name)
        return
    proc = subprocess.run([binary, "-d", "-s", os.devnull, str(candidate)], capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")] or proc.stderr.splitlines()
        complaint = "; ".join(errors[-3:]) or f"exit status {proc.returncode}"
        raise RenderError(f"logrotate rejects the rendered config: {complaint}")


def _check_shell(settings: Settings, candidate: Path) -> None:
    """``sh -n``: the script parses."""
    proc = subprocess.run(["/bin/sh", "-n", str(candidate)], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RenderError(f"/bin/sh -n rejects the rendered script: {proc.stderr.strip() or proc.returncode}")


def _check_json(settings: Settings, candidate: Path) -> None:
    """The file is one JSON object."""
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RenderError(f"the rendered launcher config is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise RenderError("the rendered launcher config is not a JSON object")


# --- the registry

class Output(Frozen):
    """One rendered file: template, place in the layout, mode, template values, and its check."""

    name: str  # the doit task is render_<name>
    template: str  # file name in pvwtasks/templates (outputs.TEMPLATES)
    path: Callable[[Layout], Path]
    values: Callable[..., dict]  # (settings, **caller values) -> template values
    mode: int = 0o644  # logrotate ignores a config writable by group or others
    check: Callable[[Settings, Path], None] | None = None  # (settings, candidate file); raises RenderError
    # (template values) -> (the values with markers for what changes at every run, the markers' text);
    # see refresh_file.  None: the whole file is rendered at each change.
    per_run: Callable[[dict], tuple[dict, dict]] | None = None


def _entry(name: str, path: Callable[[Layout], Path], values: Callable[..., dict], **options) -> Output:
    return Output(name, TEMPLATES[name], path, values, **options)  # the template: from the shared table


OUTPUTS: dict[str, Output] = {entry.name: entry for entry in (
    _entry("vhost", attrgetter("vhost_file"), _vhost_values, check=_check_vhost),
    _entry("front", attrgetter("front_file"), _front_values, check=_check_front),
    _entry("launcher", attrgetter("launch_json"), _launcher_values, check=_check_json),
    _entry("start", attrgetter("start_script"), _start_values, mode=0o755, check=_check_shell),
    _entry("logrotate", attrgetter("logrotate_conf"), _logrotate_values, check=_check_logrotate),
    _entry("cron", attrgetter("crontab_file"), _cron_values),
    _entry("index", attrgetter("index_page"), _index_values, per_run=_index_run_markers),
    _entry("systemd_launcher", systemd_unit_path("launcher"), _systemd_launcher_values),
    _entry("systemd_update", systemd_unit_path("update"), _systemd_update_values),
    _entry("systemd_timer", systemd_unit_path("timer"), _systemd_timer_values),
    _entry("systemd_watchdog", systemd_unit_path("watchdog"), _systemd_watchdog_values),
    _entry("systemd_watchdog_timer", systemd_unit_path("watchdog_timer"), _systemd_watchdog_timer_values),
)}


def output(name: str) -> Output:
    """The registry entry ``name``; RenderError for an unknown one."""
    try:
        return OUTPUTS[name]
    except KeyError:
        raise RenderError(f"{name}: no such rendered file (known: {', '.join(OUTPUTS)})") from None


def output_path(layout: Layout, name: str) -> Path:
    """Where output ``name`` is written under ROOT."""
    return output(name).path(layout)


def template_file(name: str) -> Path:
    """The template file of output ``name`` inside the installed package (a doit file_dep)."""
    return outputs.template_file(output(name).name)


def _apache_quote(value) -> str:
    """One Apache directive argument, double-quoted; RenderError on characters Apache cannot take."""
    text = str(value)
    if any(c in text for c in '"\\\n\r'):
        raise RenderError(f"{text!r}: a path in the Apache vhost cannot hold a quote, backslash or newline")
    return f'"{text}"'


def _logrotate_quote(value) -> str:
    """A logrotate file name (quoted when it holds a space); RenderError on characters it cannot take."""
    text = str(value)
    if any(c in text for c in '"\\\n\r{}#'):
        raise RenderError(f"{text!r}: a logrotate path cannot hold a quote, backslash, brace, # or newline")
    return f'"{text}"' if " " in text or "\t" in text else text


@cache
def _environment():
    """The Jinja2 environment over the package's templates (jinja2 is imported only when rendering)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATE_PACKAGE, TEMPLATE_FOLDER),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    )
    # Jinja's own tojson, keeping the keys in the order launch.json is built in.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    env.filters["shquote"] = lambda value: shlex.quote(str(value))  # start.sh
    env.filters["apq"] = _apache_quote  # vhost
    env.filters["lrq"] = _logrotate_quote  # logrotate
    return env


def render_text(settings: Settings, name: str, **values) -> str:
    """Render output ``name`` for ``settings``; RenderError on a template problem.

    ``values`` go to the output's values function (the crontab takes
    ``dodo``, the absolute path of the dodo.py cron runs).
    """
    entry = output(name)
    return _render(settings, entry, entry.values(settings, **values))


def _render(settings: Settings, entry: Output, template_values: dict) -> str:
    import jinja2

    context = {"settings": settings, "layout": settings.layout, "web": settings.web, **template_values}
    try:
        return _environment().get_template(entry.template).render(**context)
    except jinja2.TemplateError as err:
        raise RenderError(f"{entry.template}: {err}") from None


def render_file(settings: Settings, name: str, **values) -> None:
    """Render output ``name`` and publish it atomically at its path with its mode.

    An output with a check is first written next to its target and
    checked there (``apache2 -t``, ``logrotate -d``, ...); a rejected file
    raises RenderError and leaves the previous one in place.
    """
    entry = output(name)
    _publish(settings, entry, render_text(settings, name, **values))


def _publish(settings: Settings, entry: Output, text: str) -> None:
    out = entry.path(settings.layout)
    if entry.check is None:
        atomic_write_text(out, text, entry.mode)
    else:
        candidate = out.with_name(f".{out.name}.check")
        atomic_write_text(candidate, text, entry.mode)
        try:
            entry.check(settings, candidate)
            os.replace(candidate, out)
        finally:
            candidate.unlink(missing_ok=True)
    log.info("rendered %s", out)


def refresh_file(settings: Settings, name: str, **values) -> bool:
    """Render output ``name`` unless the file already holds what it would be rendered to; True when written.

    The reporter re-renders the landing page after every update, and only
    that run's line on it (result, end time, host) is new at a no-op.  So
    the page is rendered by Jinja2 with markers in place of the output's
    per-run values (``Output.per_run``), and that text is kept in
    ``.pvwtasks/rendered-<name>.json`` with the digest of its inputs (the
    values besides the markers, the template, the settings and pvwtasks'
    version).  While that digest holds, each refresh only puts the new
    values in place of the markers: no Jinja2 import.  The file is written
    only when its text changes.
    """
    entry = output(name)
    template_values = entry.values(settings, **values)
    marked, fills = entry.per_run(template_values) if entry.per_run else (template_values, {})
    inputs = hashlib.sha256(json.dumps(
        [__version__, template_file(name).read_text(encoding="utf-8"), repr(settings), marked],
        sort_keys=True, default=str).encode("utf-8")).hexdigest()
    out, record = entry.path(settings.layout), settings.layout.rendered_record(name)
    known = RenderedRecord.load(record)
    skeleton = known.skeleton if known is not None and known.inputs == inputs else None
    if skeleton is None:
        skeleton = _render(settings, entry, marked)
    text = skeleton
    for marker, fill in fills.items():
        text = text.replace(marker, fill)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    written = _sha256_of(out) != digest
    if written:
        _publish(settings, entry, text)
    if known != (kept := RenderedRecord(inputs=inputs, output=digest, skeleton=skeleton)):
        kept.save(record)
    return written


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
