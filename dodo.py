"""pvwtasks: keep a ParaViewWeb server up to date.

Cron runs ``doit update``; every step below is also a task of its own
(``doit list``).  The config is ``config/pvw.toml`` unless ``PVW_CONFIG`` or
``doit ... config=PATH`` names another one.  This file only declares
tasks: the work is done by the ``pvwtasks`` modules.
"""

from pvwtasks import launcher, notify, pipeline, render, status
from pvwtasks.doit_adapter import RUN, changed, check, doit_config, dodo_path, load_settings, progress_bar, step
from pvwtasks.install import installed_record
from pvwtasks.lock import acquire

SETTINGS = load_settings()
LAYOUT = SETTINGS.layout
DOIT_CONFIG = doit_config(SETTINGS)

_LOCKED = ["lock"]
_TEMPLATES = render.TEMPLATE_DIR


def task_lock():
    """Take this deployment's run lock, so two updates never overlap."""
    return {"actions": [step(acquire, LAYOUT.lock_file)], "uptodate": [False]}


def task_download():
    """Download the ParaView tarball when upstream changed (resumes a partial .part)."""
    return {
        "actions": [step(pipeline.download_release, SETTINGS, progress=progress_bar())],
        "targets": [LAYOUT.download_record],
        "uptodate": [changed(SETTINGS, "download", "source"), check(pipeline.upstream_unchanged, SETTINGS)],
        "task_dep": _LOCKED,
    }


def task_verify():
    """Check the download's sha256 (pinned or from the checksum manifest) and publish it."""
    return {
        "actions": [step(pipeline.verify_download, SETTINGS)],
        "file_dep": [LAYOUT.download_record],
        "targets": [LAYOUT.verified_record],
        "uptodate": [changed(SETTINGS, "verify", extra={"sha256": SETTINGS.source.sha256,
                                                        "checksums": SETTINGS.source.checksums})],
        "task_dep": _LOCKED,
    }


def task_install():
    """Extract the verified release into autodeploy/versions/ and switch the live symlink."""
    return {
        "actions": [step(pipeline.install_release, SETTINGS)],
        "file_dep": [LAYOUT.verified_record],
        "targets": [installed_record(LAYOUT)],
        "uptodate": [changed(SETTINGS, "install", extra={"keep": SETTINGS.deploy.keep})],
        "task_dep": _LOCKED,
    }


def task_extras():
    """Download and extract the optional docs and data archives into autodeploy/."""
    yield {"name": None, "doc": "Download and extract the optional docs and data archives into autodeploy/."}
    for kind, url in (("docs", SETTINGS.source.docs_url), ("data", SETTINGS.source.data_url)):
        if not url:
            continue
        yield {
            "name": kind,
            "doc": f"Download and extract the {kind} archive into autodeploy/{kind}.",
            "actions": [step(pipeline.install_extra, SETTINGS, kind, url)],
            "targets": [LAYOUT.extra_record(kind)],
            "uptodate": [changed(SETTINGS, f"extras:{kind}", extra={"url": url}),
                         check(pipeline.extra_unchanged, SETTINGS, kind, url)],
            "task_dep": _LOCKED,
        }


def task_publish_hash():
    """Write www/hash.json (sha256 of the archive bytes, version, URL); keep hash.json.previous."""
    return {
        "actions": [step(pipeline.publish_hash, SETTINGS)],
        "file_dep": [installed_record(LAYOUT)],
        "targets": [LAYOUT.hash_file],
        "task_dep": _LOCKED,
    }


def task_proxy_file():
    """Create proxy.txt (session -> host:port map for Apache) with its group and mode 0660."""
    return {
        "actions": [step(launcher.ensure_proxy_file, SETTINGS)],
        "targets": [LAYOUT.proxy_file],
        "uptodate": [changed(SETTINGS, "proxy_file", extra={"group": SETTINGS.launcher.proxy_group,
                                                             "user": SETTINGS.launcher.user,
                                                             "web_user": SETTINGS.web.user}),
                     check(launcher.proxy_file_ok, SETTINGS)],
        "task_dep": _LOCKED,
    }


def _render_task(name, sections=(), extra=None, file_dep=(), uptodate=(), **values):
    return {
        "actions": [step(render.render_file, SETTINGS, name, **values)],
        "file_dep": [_TEMPLATES / render.TEMPLATES[name], *file_dep],
        "targets": [render.output_path(LAYOUT, name)],
        "uptodate": [changed(SETTINGS, f"render_{name}", *sections, extra=extra), *uptodate],
        "task_dep": _LOCKED,
        "clean": True,
    }


def _keys(section, *names):
    """Only the named keys of one config section, so a task reruns only when those change."""
    data = SETTINGS.section(section)
    return {name: data[name] for name in names}


def task_render_vhost():
    """Render the Apache virtual host to conf/pvw-vhost.conf (launcher proxy, websocket map, TLS)."""
    task = _render_task("vhost", extra={
        "web": _keys("web", "server_name", "server_admin", "http_port", "https_port", "tls_certificate",
                     "tls_key", "proxy_timeout"),
        "launcher": _keys("launcher", "host", "port", "endpoint"),
    })
    task["task_dep"] = _LOCKED + ["proxy_file"]  # apache2 -t needs the RewriteMap file to exist
    return task


def task_render_launcher():
    """Render the wslink launcher config conf/launch.json from the installed release."""
    return _render_task("launcher", file_dep=[installed_record(LAYOUT)], extra={
        "launcher": _keys("launcher", "host", "port", "endpoint", "timeout", "port_range", "python_flags", "apps"),
        "session_url": render.session_url(SETTINGS),
    })


def task_render_start():
    """Render bin/start.sh, which runs the launcher with the installed pvpython."""
    return _render_task("start", file_dep=[installed_record(LAYOUT)],
                        extra=_keys("launcher", "display", "endpoint"))


def task_render_logrotate():
    """Render conf/logrotate.conf for the update log and the launcher's logs."""
    return _render_task("logrotate", ("logrotate",))


def task_render_cron():
    """Render conf/crontab: the weekly `doit update` and logrotate lines."""
    dodo = str(dodo_path())
    return _render_task("cron", dodo=dodo, extra={
        **_keys("cron", "update", "logrotate"), "dodo": dodo, "config": str(SETTINGS.path),
        "doit": render.doit_command(), "path": render.cron_path(),
    })


def task_render_index():
    """Render the landing page www/index.html: live version, hash, last update, app links."""
    return _render_task("index", file_dep=[LAYOUT.hash_file], uptodate=[check(render.index_current, SETTINGS)],
                        extra={**_keys("web", "server_name"), "apps": sorted(SETTINGS.launcher.apps),
                               "endpoint": SETTINGS.launcher.endpoint})


def task_compare_hash():
    """Compare the archive's sha256 with the last run's: report changed or unchanged."""
    return {
        "actions": [step(pipeline.compare_hash, SETTINGS)],
        "uptodate": [False],
        "task_dep": _LOCKED,
    }


_RENDERED = ["render_vhost", "render_launcher", "render_start", "render_logrotate", "render_cron", "render_index"]


def task_launcher():
    """Restart the launcher if the install or its config changed, or it is down; roll back if unhealthy."""
    return {
        "actions": [step(launcher.ensure_running, SETTINGS)],
        "file_dep": [installed_record(LAYOUT), render.output_path(LAYOUT, "launcher"),
                     render.output_path(LAYOUT, "start")],
        "uptodate": [check(launcher.running_as_deployed, SETTINGS)],
        "task_dep": _LOCKED + ["proxy_file", "render_launcher", "render_start"],
    }


def task_notify():
    """Mail the run's result: a new version (if enabled) or an unchanged upstream."""
    return {
        "actions": [step(notify.run_finished, SETTINGS, RUN)],
        "uptodate": [False],
        "task_dep": _LOCKED,
    }


def task_update():
    """Deploy the newest release end to end (what cron runs): download ... notify."""
    return {
        "actions": None,
        "task_dep": ["lock", "download", "verify", "install", "extras", "publish_hash", "proxy_file", *_RENDERED,
                     "compare_hash", "launcher", "notify"],
    }


def task_restart_launcher():
    """Stop the launcher and its sessions, start it again and health-check it."""
    return {"actions": [step(launcher.restart, SETTINGS)], "uptodate": [False], "task_dep": _LOCKED + ["proxy_file"]}


def task_start_launcher():
    """Start the launcher (detached) if it is not running, and wait until it answers."""
    return {"actions": [step(launcher.start, SETTINGS)], "uptodate": [False], "task_dep": _LOCKED + ["proxy_file"]}


def task_stop_launcher():
    """Stop the launcher and every session process it started, orphans included."""
    return {"actions": [step(launcher.stop, SETTINGS)], "uptodate": [False], "task_dep": _LOCKED}


def task_status():
    """Show the live version, launcher health, sessions, last update and disk use (--json)."""
    return {
        "actions": [step(status.show, SETTINGS)],
        "params": [{"name": "as_json", "long": "json", "type": bool, "default": False,
                    "help": "print the status as JSON for monitoring"}],
        "uptodate": [False],
        "verbosity": 2,
    }


def task_notify_test():
    """Send a test mail with the [notify] settings."""
    return {"actions": [step(notify.send_test, SETTINGS)], "uptodate": [False], "verbosity": 2}


def task_install_cron():
    """Install pvwtasks' marked block into the user's crontab (other lines untouched)."""
    return {"actions": [step(render.install_cron, SETTINGS)], "file_dep": [render.output_path(LAYOUT, "cron")],
            "uptodate": [False], "task_dep": ["render_cron"]}


def task_uninstall_cron():
    """Remove pvwtasks' marked block from the user's crontab."""
    return {"actions": [step(render.uninstall_cron, SETTINGS)], "uptodate": [False]}


def task_install_vhost():
    """Copy the vhost into Apache's sites, enable it, configtest, then reload gracefully."""
    return {"actions": [step(render.install_vhost, SETTINGS)], "uptodate": [False],
            "task_dep": ["render_vhost", "proxy_file"]}
