"""pvwtasks: keep a ParaViewWeb server up to date.

Cron runs ``doit update``; every step below is also a task of its own
(``doit list``).  The config is ``config/pvw.toml`` unless ``PVW_CONFIG`` or
``doit ... config=PATH`` names another one.  This file only declares
tasks: their names, order and dependencies.  The work is done by the
``pvwtasks`` functions each action names as ``"module:function"``,
imported only when the action (or check) runs.  A task's ``meta`` tells the
reporter and the mails what it is: ``read_only`` (takes no lock, writes no
log), ``lock``, and ``mail`` ("bookkeeping", "rendered", "restart").
"""

import sys

from pvwtasks.doit_adapter import (RUN, changed, check, config_error, doit_config, dodo_path, load_settings,
                                   progress_bar, step, survives_bad_config, task_params)
from pvwtasks.outputs import config_read, template_file

# Only reads the config; a bad one stops each command with its one line, but for the
# tasks marked @survives_bad_config (stop_launcher, status).
SETTINGS = load_settings()

_CRON_TASK = "update"  # what cron runs: the default task, preflighted, recorded and mailed by the reporter
_LOCKED = ["lock"]
_BOOKKEEPING = {"mail": "bookkeeping"}
_RESTART = {"mail": "restart"}
_READ_ONLY = {"read_only": True}


def _always(ref, **fields):
    """A task running ``ref`` with the settings each time it is asked: nothing makes it up to date."""
    return {"actions": [step(ref, SETTINGS)], "uptodate": [False], **fields}


def task_lock():
    """Take this deployment's run lock, so two updates never overlap."""
    return {"actions": [step("pvwtasks.lock:acquire", SETTINGS.layout.lock_file)], "uptodate": [False],
            "meta": {"lock": True, **_BOOKKEEPING}}


def task_download():
    """Download the ParaView tarball when upstream changed (resumes a partial .part)."""
    return {
        "actions": [step("pvwtasks.pipeline:download_release", SETTINGS, progress=progress_bar())],
        # `doit clean` removes only leftovers of interrupted runs, never what serves (README).
        "clean": [step("pvwtasks.pipeline:clean_leftovers", SETTINGS)],
        "targets": [SETTINGS.layout.download_record],
        "uptodate": [changed(SETTINGS, "source"),
                     check("pvwtasks.pipeline:upstream_unchanged", SETTINGS,
                           why="upstream unchanged (a HEAD of the release URL matches the verified download)")],
        "task_dep": _LOCKED,
    }


def task_verify():
    """Check the download's sha256 (pinned or from the checksum manifest) and publish it."""
    layout = SETTINGS.layout
    return {
        "actions": [step("pvwtasks.pipeline:verify_download", SETTINGS)],
        "file_dep": [layout.download_record],
        "targets": [layout.verified_record],
        "uptodate": [changed(SETTINGS, extra={"sha256": SETTINGS.source.sha256,
                                              "checksums": SETTINGS.source.checksums})],
        "task_dep": _LOCKED,
    }


def task_install():
    """Extract the verified release into autodeploy/versions/ and switch the live symlink."""
    layout = SETTINGS.layout
    return {
        "actions": [step("pvwtasks.pipeline:install_release", SETTINGS)],
        "file_dep": [layout.verified_record],
        # installed.json (the live release) is written here but is not a declared target:
        # tasks that read it (render_*, publish_hash, launcher) must never pull in a
        # download or a switch when run alone; `update` orders install before them.
        "uptodate": [changed(SETTINGS, extra={"keep": SETTINGS.deploy.keep})],
        "task_dep": _LOCKED,
    }


def task_venv():
    """Build the trame apps' companion venv for the release's Python (content-addressed, reused when unchanged)."""
    return {
        "actions": [step("pvwtasks.trame:ensure_live_venv", SETTINGS)],
        "uptodate": [changed(SETTINGS, "apps"),
                     check("pvwtasks.trame:venv_current", SETTINGS,
                           why="the live release's venv holds the configured [apps] requirements")],
        "task_dep": _LOCKED,
    }


def task_web_client():
    """Build the trame apps' static client per client type and their pages www/<app>.html."""
    return {
        "actions": [step("pvwtasks.trame:build_web_clients", SETTINGS)],
        "file_dep": [SETTINGS.layout.installed_record],
        "uptodate": [changed(SETTINGS, "apps", extra={"endpoint": SETTINGS.launcher.endpoint}),
                     check("pvwtasks.trame:clients_current", SETTINGS,
                           why="each trame app's page points at a built client of the live venv")],
        "task_dep": _LOCKED + ["venv"],
    }


def task_extras():
    """Download and extract the optional docs and data archives into autodeploy/."""
    yield {"name": None, "doc": "Download and extract the optional docs and data archives into autodeploy/."}
    yield from _extra_tasks()


def _extra_tasks():
    for kind, url in (("docs", SETTINGS.source.docs_url), ("data", SETTINGS.source.data_url)):
        if not url:
            continue
        yield {
            "name": kind,
            "doc": f"Download and extract the {kind} archive into autodeploy/{kind}.",
            "actions": [step("pvwtasks.pipeline:install_extra", SETTINGS, kind, url)],
            "targets": [SETTINGS.layout.extra_record(kind)],
            "uptodate": [changed(SETTINGS, extra={"url": url}),
                         check("pvwtasks.pipeline:extra_unchanged", SETTINGS, kind, url,
                               why=f"upstream unchanged (a HEAD of the {kind} URL matches autodeploy/{kind})")],
            "task_dep": _LOCKED,
        }


def task_publish_hash():
    """Write www/hash.json (sha256 of the archive bytes, version, URL); keep hash.json.previous."""
    layout = SETTINGS.layout
    return {
        "actions": [step("pvwtasks.pipeline:publish_hash", SETTINGS)],
        "file_dep": [layout.installed_record],
        "targets": [layout.hash_file],
        "task_dep": _LOCKED,
    }


def task_proxy_file():
    """Create proxy.txt (session -> host:port map for Apache) with its group and mode 0660."""
    return {
        "actions": [step("pvwtasks.proxyfile:ensure_proxy_file", SETTINGS)],
        "targets": [SETTINGS.layout.proxy_file],
        "uptodate": [changed(SETTINGS, extra={"group": SETTINGS.launcher.proxy_group, "user": SETTINGS.launcher.user,
                                              "web_user": SETTINGS.web.user}),
                     check("pvwtasks.proxyfile:proxy_file_ok", SETTINGS,
                           why="proxy.txt has the right group and mode 0660")],
        "task_dep": _LOCKED,
    }


def _render_task(name, output, file_dep=(), uptodate=(), extra=None, **values):
    """Render output ``name``; it reruns when a config key it reads (outputs.READS) or ``extra`` changes."""
    return {
        "actions": [step("pvwtasks.render:render_file", SETTINGS, name, **values)],
        "file_dep": [template_file(name), *file_dep],
        "targets": [output],
        "uptodate": [changed(SETTINGS, extra={**config_read(SETTINGS, name), **(extra or {})}), *uptodate],
        "task_dep": _LOCKED,
        "meta": {"mail": "rendered", "label": name},
    }


def task_render_vhost():
    """Render the Apache virtual host to conf/pvw-vhost.conf (launcher proxy, websocket map, TLS)."""
    task = _render_task("vhost", SETTINGS.layout.vhost_file)
    task["task_dep"] = _LOCKED + ["proxy_file"]  # apache2 -t needs the RewriteMap file to exist
    return task


def task_render_launcher():
    """Render the wslink launcher config conf/launch.json from the installed release."""
    layout = SETTINGS.layout
    return _render_task("launcher", layout.launch_json, file_dep=[layout.installed_record])


def task_render_start():
    """Render bin/start.sh, which runs the launcher with the installed pvpython."""
    layout = SETTINGS.layout
    return _render_task("start", layout.start_script, file_dep=[layout.installed_record])


def task_render_logrotate():
    """Render conf/logrotate.conf for the update log and the launcher's logs."""
    return _render_task("logrotate", SETTINGS.layout.logrotate_conf)


def _run_by_scheduler():
    """What the crontab and the systemd units run: this dodo, its cron task, the config, and this venv's python."""
    return {"dodo": str(dodo_path()), "task": _CRON_TASK, "config": str(SETTINGS.path), "python": sys.executable}


def task_render_cron():
    """Render conf/crontab: the weekly `doit update`, @reboot and watchdog lines (cron supervision), logrotate."""
    scheduled = _run_by_scheduler()
    return _render_task("cron", SETTINGS.layout.crontab_file, dodo=scheduled["dodo"], task=_CRON_TASK,
                        extra=scheduled)


def task_render_index():
    """Render the landing page www/index.html: live version, hash, last update, app links."""
    layout = SETTINGS.layout
    return _render_task("index", layout.index_page, file_dep=[layout.hash_file],
                        uptodate=[check("pvwtasks.render:index_current", SETTINGS,
                                        why="index.html shows the last update's result and the installed docs")])


def task_apache_site():
    """Reinstall a changed vhost into Apache ([web] manage_apache): configtest, graceful, restore on failure."""
    return {
        "actions": [step("pvwtasks.apache:ensure_site", SETTINGS)],
        "file_dep": [SETTINGS.layout.vhost_file],
        "uptodate": [check("pvwtasks.apache:site_current", SETTINGS,
                           why="Apache is not managed, or its site is the rendered vhost, enabled")],
        "task_dep": _LOCKED + ["render_vhost"],
        "meta": {"mail": "rendered", "label": "apache site"},
    }


def task_web_access():
    """Make what Apache serves (www/, client links, docs, the proxy files, active.txt) readable by the web user."""
    return {
        "actions": [step("pvwtasks.webaccess:open_served", SETTINGS)],
        "uptodate": [check("pvwtasks.webaccess:served_open", SETTINGS,
                           why="everything Apache serves is readable by the web user")],
        "task_dep": _LOCKED + ["proxy_file", "render_vhost", "render_index"],
    }


def task_compare_hash():
    """Compare the archive's sha256 with the last run's: report changed or unchanged."""
    return _always("pvwtasks.pipeline:compare_hash", task_dep=_LOCKED, meta=_BOOKKEEPING)


_RENDERED = ["render_vhost", "render_launcher", "render_start", "render_logrotate", "render_cron", "render_index"]


def task_drain():
    """Stop the old launcher slot of an upgrade once its last session ended or its drain limit passed."""
    return {"actions": [step("pvwtasks.deploy:drain", SETTINGS)],
            "uptodate": [check("pvwtasks.slots:nothing_to_drain", SETTINGS,
                               why="no launcher slot drains and no switch was interrupted")],
            "task_dep": _LOCKED, "meta": _BOOKKEEPING}


def task_launcher():
    """Restart the launcher if the install or its config changed, or it is down; roll back if unhealthy."""
    layout = SETTINGS.layout
    return {
        "actions": [step("pvwtasks.deploy:ensure_running", SETTINGS)],
        "file_dep": [layout.installed_record, layout.launch_json, layout.start_script],
        "uptodate": [check("pvwtasks.launcher:running_as_deployed", SETTINGS,
                           why="the launcher runs, healthy, with the live release, launch.json and start.sh")],
        "task_dep": _LOCKED + ["proxy_file", "render_launcher", "render_start", "drain"],
        "meta": _RESTART,
    }


def task_prune_logs():
    """Delete session logs older than [logrotate] session_log_days (not those of live sessions)."""
    return _always("pvwtasks.logfiles:prune_session_logs", task_dep=_LOCKED, meta=_BOOKKEEPING)


def task_notify():
    """Mail the run's result: a new version (if enabled) or an unchanged upstream."""
    return {
        "actions": [step("pvwtasks.notify:run_finished", SETTINGS, RUN)],
        "uptodate": [False],
        "task_dep": _LOCKED,
        "meta": _BOOKKEEPING,
    }


# The steps of an update, in order (the tasks above).
_UPDATE_STEPS = ["lock", "download", "verify", "install", "venv", "web_client", "extras", "publish_hash", "proxy_file",
                 *_RENDERED, "apache_site", "web_access", "compare_hash", "drain", "launcher", "prune_logs", "notify"]


def task_update():
    """Deploy the newest release end to end (what cron runs): download ... notify."""
    return {"actions": None, "task_dep": _UPDATE_STEPS}


def task_restart_launcher():
    """Stop the launcher and its sessions, start it again and health-check it."""
    return _always("pvwtasks.deploy:restart", task_dep=_LOCKED + ["proxy_file"], meta=_RESTART)


def task_start_launcher():
    """Start the launcher (detached) if it is not running, and wait until it answers."""
    return _always("pvwtasks.deploy:start", task_dep=_LOCKED + ["proxy_file"], meta=_RESTART)


@survives_bad_config
def task_stop_launcher():
    """Stop the launcher and every session process it started, orphans included."""
    return _always("pvwtasks.launcher:stop", task_dep=_LOCKED)


_JSON_OPTION = {"name": "as_json", "long": "json", "type": bool, "default": False,
                "help": "print the status as JSON for monitoring"}


@survives_bad_config
@task_params([_JSON_OPTION])
def task_status(as_json):
    """Show the live version, launcher health, sessions, last update and disk use (--json)."""
    return {
        "actions": [step("pvwtasks.status:show", SETTINGS, as_json=as_json, config_error=config_error())],
        "uptodate": [False],
        "verbosity": 2,
        "meta": _READ_ONLY,
    }


def task_notify_test():
    """Send a test mail with the [notify] settings."""
    return _always("pvwtasks.notify:send_test", verbosity=2, meta=_READ_ONLY)


def task_install_cron():
    """Install pvwtasks' marked block into the user's crontab (other lines untouched)."""
    return _always("pvwtasks.cron:install_cron", file_dep=[SETTINGS.layout.crontab_file], task_dep=["render_cron"])


def task_uninstall_cron():
    """Remove pvwtasks' marked block from the user's crontab."""
    return _always("pvwtasks.cron:uninstall_cron")


def task_render_systemd():
    """Render the systemd units into conf/systemd/: launcher slots' template, update and watchdog with timers."""
    yield {"name": None, "doc": "Render the systemd units into conf/systemd/."}
    yield from _systemd_unit_tasks()


def _systemd_unit_tasks():
    from pvwtasks.systemd import instance_name, unit_names  # small: no render stack on `doit list`

    root = SETTINGS.layout.root
    units = unit_names(instance_name(root))
    scheduled = _run_by_scheduler()
    for kind in ("launcher", "update", "timer", "watchdog", "watchdog_timer"):
        values = {"dodo": scheduled["dodo"], "task": _CRON_TASK} if kind == "update" else {}
        task = _render_task(f"systemd_{kind}", SETTINGS.layout.systemd_units / units[kind],
                            extra={**scheduled, "root": str(root)}, **values)
        task["task_dep"] = []  # writes only under conf/systemd; no lock needed
        yield {"name": kind, "doc": f"Render the {kind} unit into conf/systemd/.", **task}


def task_install_systemd():
    """Install the systemd units, enable them, and run the launcher under systemd ([deploy] supervisor)."""
    return _always("pvwtasks.deploy:install_systemd", meta=_RESTART,
                   task_dep=_LOCKED + ["proxy_file", "render_systemd", "render_start", "render_launcher"])


def task_uninstall_systemd():
    """Stop, disable and remove this deployment's systemd units (the launcher stops with them)."""
    return _always("pvwtasks.deploy:uninstall_systemd", task_dep=_LOCKED)


def task_install_vhost():
    """Enable the Apache modules, copy the vhost into Apache's sites, enable it, configtest, reload gracefully."""
    return _always("pvwtasks.apache:install_vhost", task_dep=["render_vhost", "proxy_file"])


def task_uninstall_vhost():
    """Remove the vhost's link and file from Apache's sites, then reload Apache gracefully if it runs."""
    return _always("pvwtasks.apache:uninstall_vhost")


def task_render_front():
    """Render the fleet front conf/pvw-front.conf from [fleet] hosts (balancer, health checks, /node/<name>/)."""
    task = _render_task("front", SETTINGS.layout.front_file)
    task["task_dep"] = []  # the front host runs no update: nothing to lock against
    return task


def task_install_front():
    """Install the fleet front into Apache's sites (balancer modules, configtest, graceful; put back on failure)."""
    return _always("pvwtasks.apache:install_front", task_dep=["render_front"])


# Last, because on a config that cannot be loaded it defers every task creator above to the run,
# where the reporter mails the error (for `update`) and stops with it before any of them is called.
DOIT_CONFIG = doit_config(SETTINGS, default_task=_CRON_TASK, tasks=globals())
