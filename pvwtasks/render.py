"""Render the deployment's config files from ``config/templates/*.j2``.

Each file is rendered with Jinja2 from the Settings and the installed
release, then written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import jinja2

from . import apache, install
from .config import Layout, Settings, current_group, current_user
from .errors import RenderError
from .fsutil import atomic_write_bytes, atomic_write_text, read_json, replace_symlink
from .runlog import last_run_path

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
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    )
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent)
    env.filters["shquote"] = lambda value: shlex.quote(str(value))
    env.filters["apq"] = _apache_quote
    env.filters["lrq"] = _logrotate_quote
    return env


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


_TOKEN = re.compile(r"^[^\s\"'\\#]+$")


def _token(where: str, value: str) -> str:
    """A value written bare into a config line: no spaces, quotes or comment signs."""
    if not _TOKEN.match(value):
        raise RenderError(f"{where}: {value!r} must be one word (no spaces, quotes or #)")
    return value


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


def launcher_url(settings: Settings) -> str:
    """The launcher's own URL (with the trailing slash it requires), as Apache reaches it."""
    launcher = settings.launcher
    host = launcher.host if launcher.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{launcher.port}/{launcher.endpoint.strip('/')}/"


def logrotate_state(layout: Layout) -> Path:
    """logrotate's state file for this deployment (the crontab line passes it with -s)."""
    return layout.state / "logrotate.state"


def doit_command() -> list[str]:
    """How cron runs this venv's doit: its ``bin/doit``, else ``python -m doit``."""
    doit = Path(sys.executable).parent / "doit"
    return [str(doit)] if doit.is_file() else [sys.executable, "-m", "doit"]


def cron_path() -> str:
    """PATH for the crontab lines: the venv first, then the usual system folders (logrotate is in sbin)."""
    return f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _cron_command(words: list[str], append_to: Path | None = None) -> str:
    command = f"PATH={shlex.quote(cron_path())} " + " ".join(shlex.quote(str(w)) for w in words)
    if append_to is not None:
        command += f" >> {shlex.quote(str(append_to))} 2>&1"
    # cron turns a bare % into a newline.
    return command.replace("%", "\\%")


def last_result(layout: Layout) -> str:
    """The last finished update's result: "ok", "failed" or "none"."""
    data = read_json(last_run_path(layout.state))
    return str(data.get("result", "none")) if isinstance(data, dict) else "none"


def index_current(settings: Settings) -> bool:
    """True when www/index.html already shows the last update's result and the installed docs."""
    try:
        text = output_path(settings.layout, "index").read_text(encoding="utf-8")
    except OSError:
        return False
    shows_docs = 'href="docs/"' in text
    return (f'<meta name="pvwtasks-last-result" content="{last_result(settings.layout)}">' in text
            and shows_docs == (settings.layout.autodeploy / "docs").is_dir())


def _link_docs(layout: Layout) -> bool:
    """Make ``www/docs`` point at ``autodeploy/docs`` when the docs are installed; True when linked."""
    docs, link = layout.autodeploy / "docs", layout.www / "docs"
    if not docs.is_dir():
        return False
    if not link.exists() and not link.is_symlink():
        layout.www.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.join("..", "autodeploy", "docs"), link)
    return link.is_dir()


def _stamp(seconds) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(seconds)))
    except (TypeError, ValueError, OverflowError):
        return "unknown time"


def _check_log_folder(folder: Path) -> None:
    """Make ``folder``; RenderError when logrotate would refuse it (writable by others)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder.stat()
    mode = info.st_mode
    # logrotate skips logs in a world-writable folder, and as root also in one a non-root group can write.
    if mode & stat.S_IWOTH or (os.geteuid() == 0 and mode & stat.S_IWGRP and info.st_gid != 0):
        raise RenderError(f"{folder}: writable by group or others (mode {stat.S_IMODE(mode):04o}); "
                          f"logrotate refuses such a folder: chmod go-w it")


def _context(settings: Settings, name: str, values: dict) -> dict:
    layout = settings.layout
    context = {"settings": settings, "layout": layout, "project_python": sys.executable, "web": settings.web}
    context.update(values)
    if name == "vhost":
        web = settings.web
        _token("[web] server_name", web.server_name)
        _token("[web] server_admin", web.server_admin)
        https_port = "" if web.https_port == 443 else f":{web.https_port}"
        context.update(
            endpoint_path="/" + settings.launcher.endpoint.strip("/"),
            launcher_url=launcher_url(settings),
            error_log=layout.logs / "error.log",
            access_log=layout.logs / "access.log",
            https_base=f"https://{web.server_name}{https_port}",
        )
        layout.logs.mkdir(parents=True, exist_ok=True)
        layout.www.mkdir(parents=True, exist_ok=True)
    elif name == "launcher":
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
    elif name == "logrotate":
        rotate = settings.logrotate
        _token("[logrotate] size", rotate.size)
        sessions = session_log_dir(layout)
        for folder in (layout.logs, layout.update_logs, sessions):
            _check_log_folder(folder)
        context.update(
            rotate=rotate,
            owner=_token("[logrotate] owner", rotate.owner or current_user()),
            group=_token("[logrotate] group", rotate.group or current_group()),
            update_log=layout.update_log,
            launcher_log=layout.logs / "launcher.log",
            launcher_own_log=sessions / "launcherLog.log",
            session_logs=sessions / "*.txt",
            state_file=logrotate_state(layout),
            conf_file=output_path(layout, "logrotate"),
        )
    elif name == "cron":
        dodo = Path(values.get("dodo") or Path(__file__).resolve().parent.parent / "dodo.py")
        layout.update_logs.mkdir(parents=True, exist_ok=True)
        context.update(
            config_path=settings.path,
            update_command=_cron_command(
                [*doit_command(), "-f", dodo, values.get("task", "update"), f"config={settings.path}"],
                layout.update_log),
            logrotate_command=_cron_command(
                ["logrotate", "-s", logrotate_state(layout), output_path(layout, "logrotate")]),
        )
    elif name == "index":
        context.update(_index_context(settings))
    return context


def _index_context(settings: Settings) -> dict:
    layout = settings.layout
    live = install.live_release(layout)
    release = None
    if live is not None:
        release = {"version": live.version, "top_folder": live.top_folder, "sha256": live.sha256,
                   "installed": _stamp(live.installed_at), "url": (read_json(layout.hash_file) or {}).get("url", "")}
    run = read_json(last_run_path(layout.state))
    last_run = None
    if isinstance(run, dict) and run.get("result"):
        last_run = {"result": str(run["result"]), "finished": _stamp(run.get("finished")),
                    "host": str(run.get("host", "")), "failed": sorted(run.get("failed") or {})}
    names = sorted(settings.launcher.apps)
    if live is not None:
        site = layout.versions / live.name / live.site_packages
        names = [name for name in names if (site / settings.launcher.apps[name].script).is_file()]
    apps = [{"name": app, "link": f"apps/{app}/" if (layout.www / "apps" / app).is_dir() else ""} for app in names]
    return {
        "release": release,
        "last_run": last_run,
        "last_result": last_run["result"] if last_run else "none",
        "apps": apps,
        "docs_link": "docs/" if _link_docs(layout) else "",
        "endpoint_path": "/" + settings.launcher.endpoint.strip("/"),
    }


def render_text(settings: Settings, name: str, **values) -> str:
    """Render template ``name`` for ``settings``; RenderError on a template problem.

    ``values`` are extra template values from the caller (the cron
    template takes ``dodo``, the absolute path of the dodo.py to run).
    """
    try:
        return _environment().get_template(TEMPLATES[name]).render(**_context(settings, name, values))
    except jinja2.TemplateError as err:
        raise RenderError(f"{TEMPLATES[name]}: {err}") from None


def render_file(settings: Settings, name: str, **values) -> None:
    """Render template ``name`` and write it atomically to its output path.

    The logrotate config and the vhost are first written next to their
    target and checked with ``logrotate -d`` and ``apache2 -t``; a rejected
    file raises RenderError and leaves the previous one in place.  Files are 0644 (start.sh 0755): logrotate
    ignores a config writable by group or others.
    """
    text = render_text(settings, name, **values)
    out = output_path(settings.layout, name)
    mode = 0o755 if name == "start" else 0o644
    if name in ("logrotate", "vhost"):
        candidate = out.with_name(f".{out.name}.check")
        atomic_write_text(candidate, text, mode)
        try:
            if name == "logrotate":
                check_logrotate(candidate)
            elif not apache.check_vhost(candidate, _vhost_ports(settings), settings.web.tls):
                log.info("apache2 is not installed; %s not checked", out.name)
            os.replace(candidate, out)
        finally:
            candidate.unlink(missing_ok=True)
    else:
        atomic_write_text(out, text, mode)
    log.info("rendered %s", out)


def _vhost_ports(settings: Settings) -> list[int]:
    web = settings.web
    return [web.http_port, web.https_port] if web.tls else [web.http_port]


def check_logrotate(conf: Path) -> None:
    """Run ``logrotate -d`` on ``conf``; RenderError with its complaint when it rejects it.

    Skipped (with a log line) when logrotate is not installed.
    """
    binary = shutil.which("logrotate") or next(
        (p for p in ("/usr/sbin/logrotate", "/sbin/logrotate") if os.access(p, os.X_OK)), None)
    if binary is None:
        log.info("logrotate is not installed; %s not checked", conf.name)
        return
    proc = subprocess.run([binary, "-d", "-s", os.devnull, str(conf)], capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")] or proc.stderr.splitlines()
        raise RenderError(f"logrotate rejects the rendered config: {'; '.join(errors[-3:]) or 'exit status ' + str(proc.returncode)}")


def cron_markers(layout: Layout) -> tuple[str, str]:
    """The lines around this deployment's block in the user's crontab."""
    return f"# BEGIN pvwtasks {layout.root}", f"# END pvwtasks {layout.root}"


def _run(words: list[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(words, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise RenderError(f"{what}: {words[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise RenderError(f"{what}: {' '.join(words)} did not finish in 120 s") from None


def _crontab_command(settings: Settings) -> list[str]:
    words = shlex.split(settings.cron.crontab)
    if not words:
        raise RenderError(f"{settings.path}: [cron] crontab: empty; expected the crontab program")
    return words


def _read_crontab(settings: Settings) -> list[str]:
    crontab = _crontab_command(settings)
    proc = _run([*crontab, "-l"], "reading the crontab")
    if proc.returncode != 0:
        if "no crontab" in proc.stderr.lower():
            return []
        raise RenderError(f"`{' '.join(crontab)} -l` failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.splitlines()


def _write_crontab(settings: Settings, lines: list[str]) -> None:
    crontab = _crontab_command(settings)
    text = "\n".join(lines) + "\n" if lines else ""
    proc = _run([*crontab, "-"], "writing the crontab", stdin=text)
    if proc.returncode != 0:
        raise RenderError(f"`{' '.join(crontab)} -` refused the new crontab: {proc.stderr.strip() or proc.returncode}")


def _split_block(lines: list[str], layout: Layout) -> tuple[list[str], list[str], list[str]]:
    """(before, our block, after); RenderError on a BEGIN without its END."""
    begin, end = cron_markers(layout)
    if begin not in lines:
        return lines, [], []
    start = lines.index(begin)
    try:
        stop = lines.index(end, start)
    except ValueError:
        raise RenderError(f"the crontab has '{begin}' but no '{end}'; fix it with `crontab -e`") from None
    return lines[:start], lines[start:stop + 1], lines[stop + 1:]


def install_cron(settings: Settings) -> None:
    """Add or replace this deployment's marked block in the user's crontab.

    Other lines, other deployments' blocks included, stay as they are.
    Does nothing when the block is already current.  Raises RenderError
    when conf/crontab is missing or the crontab program fails.
    """
    layout = settings.layout
    rendered = output_path(layout, "cron")
    try:
        body = [line for line in rendered.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        raise RenderError(f"{rendered} is missing; run `doit render_cron` first") from None
    begin, end = cron_markers(layout)
    block = [begin, *body, end]
    before, current, after = _split_block(_read_crontab(settings), layout)
    if current == block:
        log.info("crontab block for %s already installed", layout.root)
        return
    _write_crontab(settings, [*before, *block, *after])
    log.info("%s the crontab block for %s", "replaced" if current else "installed", layout.root)


def uninstall_cron(settings: Settings) -> None:
    """Remove this deployment's marked block from the user's crontab (other lines stay)."""
    layout = settings.layout
    before, current, after = _split_block(_read_crontab(settings), layout)
    if not current:
        log.info("no crontab block for %s; nothing to remove", layout.root)
        return
    _write_crontab(settings, [*before, *after])
    log.info("removed the crontab block for %s", layout.root)


def _apachectl(settings: Settings) -> list[str]:
    words = shlex.split(settings.web.apachectl)
    if not words:
        raise RenderError(f"{settings.path}: [web] apachectl: empty; expected apache2ctl or apachectl")
    return words


def install_vhost(settings: Settings) -> None:
    """Install the rendered vhost into Apache: copy, enable, configtest, then reload gracefully.

    Copies conf/pvw-vhost.conf to ``[web] sites_dir/site_name`` and links
    it from ``[web] enabled_dir``.  When ``apachectl configtest`` fails, the
    previous file and link are put back and RenderError carries the
    configtest output; Apache is not reloaded then.
    """
    web = settings.web
    source = output_path(settings.layout, "vhost")
    try:
        text = source.read_bytes()
    except OSError:
        raise RenderError(f"{source} is missing; run `doit render_vhost` first") from None
    sites, enabled = Path(web.sites_dir), Path(web.enabled_dir)
    for folder in (sites, enabled):
        if not folder.is_dir():
            raise RenderError(f"{folder}: no such folder; is Apache installed? (see [web] sites_dir, enabled_dir)")
    dest, link = sites / web.site_name, enabled / web.site_name
    target = os.path.relpath(dest, enabled)
    old_text = dest.read_bytes() if dest.is_file() else None
    old_link = os.readlink(link) if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        raise RenderError(f"{link} is a real file, not a link; move it away first")
    if old_text == text and old_link is not None and (enabled / old_link).resolve() == dest.resolve():
        log.info("%s is already installed and enabled", dest)
        return
    atomic_write_bytes(dest, text, 0o644)
    replace_symlink(link, target)
    apachectl = _apachectl(settings)
    test = _run([*apachectl, "configtest"], "apache configtest")
    if test.returncode != 0:
        if old_text is None:
            dest.unlink(missing_ok=True)
        else:
            atomic_write_bytes(dest, old_text, 0o644)
        if old_link is None:
            link.unlink(missing_ok=True)
        else:
            replace_symlink(link, old_link)
        output = "; ".join(line.strip() for line in (test.stdout + test.stderr).splitlines() if line.strip())
        raise RenderError(f"`{' '.join(apachectl)} configtest` rejects {web.site_name}, previous state restored: "
                          f"{output or 'exit status ' + str(test.returncode)}")
    reload = _run([*apachectl, "graceful"], "apache graceful reload")
    if reload.returncode != 0:
        raise RenderError(f"`{' '.join(apachectl)} graceful` failed: "
                          f"{(reload.stderr or reload.stdout).strip() or reload.returncode}")
    log.info("installed %s, enabled it and reloaded Apache gracefully", dest)
