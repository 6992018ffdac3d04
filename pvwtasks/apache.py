"""Apache: checking the rendered vhost with ``apache2 -t``, and installing it into Apache's sites.

Debian's ``apache2 -t`` against /etc/apache2 needs the variables of
/etc/apache2/envvars, so the vhost is checked inside a minimal ``httpd.conf``
of our own that loads just the modules it uses.  The same builder serves
tests that run a real Apache in the foreground.  ``install_vhost`` (``doit
install_vhost``, ``uninstall_vhost``, and ``update``'s ``apache_site`` when
``[web] manage_apache`` is on) are the steps that change the system's Apache.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from . import programs
from .config import Settings
from .errors import RenderError
from .fsutil import atomic_write_bytes, replace_symlink

log = logging.getLogger(__name__)

MODULES_DIR = Path("/usr/lib/apache2/modules")
MODULES = ["mpm_event", "authz_core", "dir", "mime", "proxy", "proxy_http", "proxy_wstunnel", "rewrite"]
# What the rendered vhost needs enabled in the system's Apache (``a2enmod``); ssl too with TLS.
SITE_MODULES = ["proxy", "proxy_http", "proxy_wstunnel", "rewrite", "headers"]
# What the fleet front needs besides (``doit install_front``): the balancer, its health checks, balancer-manager.
FRONT_MODULES = ["proxy", "proxy_http", "authz_host", "proxy_balancer", "lbmethod_byrequests", "slotmem_shm",
                 "proxy_hcheck"]
DEFAULT_SITE = "000-default"
_INSTALL_HINT = "install Apache with `apt-get install apache2`, or fix [web] apachectl"


def httpd_conf(folder: Path, ports: list[int], include: Path | str, ssl: bool = False,
               user: str = "", group: str = "", extra_modules: list[str] = ()) -> Path:
    """Write ``folder/httpd.conf``: listening on 127.0.0.1:``ports``, Including ``include``.

    ``user``/``group``: the account Apache's children run as (only when started as root);
    ``extra_modules``: loaded too (the fleet front's balancer modules).
    """
    folder.mkdir(parents=True, exist_ok=True)
    modules = MODULES + (["ssl", "socache_shmcb"] if ssl else [])
    modules += [name for name in extra_modules if name not in modules]
    lines = [
        *([f"User {user}"] if user else []),
        *([f"Group {group}"] if group else []),
        f'ServerRoot "{folder}"',
        f'PidFile "{folder}/httpd.pid"',
        f'DefaultRuntimeDir "{folder}"',
        f"Mutex file:{folder} default",
        *[f"Listen 127.0.0.1:{port}" for port in ports],
        f'ErrorLog "{folder}/error.log"',
        "LogLevel warn",
        "TypesConfig /etc/mime.types",
        "ServerName 127.0.0.1",
        *[f"LoadModule {name}_module {MODULES_DIR}/mod_{name}.so" for name in modules],
        'LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined',
    ]
    if ssl:
        lines.append(f'SSLSessionCache "shmcb:{folder}/ssl_scache(512000)"')
    lines.append(f'IncludeOptional "{include}"')
    conf = folder / "httpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def binary() -> str | None:
    """Path of ``apache2``, also looked up in the sbin folders; None when not installed."""
    return programs.find("apache2")


def configtest(conf: Path, apache2: str = "apache2") -> subprocess.CompletedProcess:
    """``apache2 -f CONF -t``: Apache's own syntax check."""
    return subprocess.run([apache2, "-f", str(conf), "-t"], capture_output=True, text=True, timeout=60, check=False)


def check_vhost(vhost: Path, ports: list[int], ssl: bool, extra_modules: list[str] = ()) -> bool:
    """Check ``vhost`` with the real ``apache2 -t``; RenderError quoting Apache when it rejects it.

    Returns False (not checked) when Apache is not installed here.
    """
    apache2 = binary()
    if apache2 is None or not MODULES_DIR.is_dir():
        return False
    with tempfile.TemporaryDirectory(prefix="pvwtasks-apache-") as folder:
        proc = configtest(httpd_conf(Path(folder), ports, vhost, ssl, extra_modules=extra_modules), apache2)
    if proc.returncode != 0:
        complaint = " ".join(line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip())
        raise RenderError(f"apache2 -t rejects the rendered vhost: {complaint[-400:]}")
    return True


def _apachectl(settings: Settings) -> list[str]:
    words = shlex.split(settings.web.apachectl)
    if not words:
        raise RenderError(f"{settings.path}: [web] apachectl: empty; expected apache2ctl or apachectl")
    return words


def _site_paths(settings: Settings, site_name: str = "") -> tuple[Path, Path]:
    """(the site file in ``[web] sites_dir``, its link in ``[web] enabled_dir``); RenderError when a folder is missing.

    ``site_name``: the site's file name (default ``[web] site_name``, the vhost).
    """
    web = settings.web
    sites, enabled = Path(web.sites_dir), Path(web.enabled_dir)
    for folder in (sites, enabled):
        if not folder.is_dir():
            raise RenderError(f"{folder}: no such folder; is Apache installed? (see [web] sites_dir, enabled_dir)")
    site_name = site_name or web.site_name
    link = enabled / site_name
    if link.exists() and not link.is_symlink():
        raise RenderError(f"{link} is a real file, not a link; move it away first")
    return sites / site_name, link


def _restore(path: Path, text: bytes | None, link: Path, target: str | None) -> None:
    """Put back the site file and its link as they were (None: there was none)."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_bytes(path, text, 0o644)
    if target is None:
        link.unlink(missing_ok=True)
    else:
        replace_symlink(link, target)


def needed_modules(settings: Settings) -> list[str]:
    """The Apache modules the rendered vhost uses (``ssl`` too with TLS)."""
    return SITE_MODULES + (["ssl"] if settings.web.tls else [])


def _confdir(settings: Settings) -> Path | None:
    """Apache's Debian-style config folder (holding mods-available beside ``[web] enabled_dir``), or None."""
    folder = Path(settings.web.enabled_dir).parent
    return folder if (folder / "mods-available").is_dir() and (folder / "mods-enabled").is_dir() else None


def _a2(settings: Settings, program: str, names: list[str], what: str) -> None:
    """Run ``a2enmod``/``a2dissite`` on Apache's config folder; RenderError when it fails."""
    confdir = _confdir(settings)
    done = programs.run([program, "-q", *names], what, "install Apache with `apt-get install apache2`",
                        env={"APACHE_CONFDIR": str(confdir)})
    if done.returncode != 0:
        output = "; ".join(line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip())
        raise RenderError(f"`{program} {' '.join(names)}` failed: {output or 'exit status ' + str(done.returncode)}")


def enable_modules(settings: Settings, wanted: list[str] | None = None) -> list[str]:
    """Enable the modules the vhost needs (or ``wanted``) that are not enabled yet (``a2enmod``); the ones it enabled.

    Does nothing (and says so) when ``[web] enabled_dir`` has no Debian-style
    mods-available/mods-enabled beside it.  Raises RenderError when a2enmod fails.
    """
    confdir = _confdir(settings)
    wanted = needed_modules(settings) if wanted is None else wanted
    if confdir is None:
        log.info("no mods-enabled beside %s: Apache modules %s not checked", settings.web.enabled_dir,
                 ", ".join(wanted))
        return []
    missing = [name for name in wanted if not (confdir / "mods-enabled" / f"{name}.load").exists()]
    if missing:
        _a2(settings, "a2enmod", missing, "enabling Apache modules")
    return missing


def disable_default_site(settings: Settings) -> bool:
    """``a2dissite 000-default`` when ``[web] disable_default_site`` is on and it is enabled; True when done."""
    link = Path(settings.web.enabled_dir) / f"{DEFAULT_SITE}.conf"
    if not settings.web.disable_default_site or not (link.exists() or link.is_symlink()):
        return False
    if _confdir(settings) is not None:
        _a2(settings, "a2dissite", [DEFAULT_SITE], "disabling Apache's default site")
    else:
        link.unlink()
    return True


def running_pid(settings: Settings) -> int | None:
    """The PID of the running Apache from ``[web] pid_file`` (confirmed by its program name), or None."""
    import psutil  # here, not at the top: every update imports this module (render, site_current)

    try:
        pid = int(Path(settings.web.pid_file).read_text().split()[0])
        name = psutil.Process(pid).name()
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return pid if name.startswith(("apache2", "httpd")) else None


def _reload(settings: Settings) -> str:
    """``apachectl graceful`` (which starts a stopped Apache); "reloaded" or "started"."""
    apachectl = _apachectl(settings)
    was_running = running_pid(settings) is not None
    reload = programs.run([*apachectl, "graceful"], "apache graceful reload", _INSTALL_HINT)
    if reload.returncode != 0:
        raise RenderError(f"`{' '.join(apachectl)} graceful` failed: "
                          f"{(reload.stderr or reload.stdout).strip() or reload.returncode}")
    if was_running:
        return "reloaded Apache gracefully"
    deadline = time.monotonic() + 10
    while running_pid(settings) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return "started Apache (it was not running)"


def _say(what: list[str]) -> str:
    return "; ".join(what)


def install_vhost(settings: Settings) -> dict:
    """Install the rendered vhost (conf/pvw-vhost.conf) as ``[web] site_name``: see :func:`install_site`."""
    return install_site(settings, settings.layout.vhost_file, settings.web.site_name, needed_modules(settings))


def install_front(settings: Settings) -> dict:
    """Install the rendered fleet front (conf/pvw-front.conf) as ``[fleet] site_name``: see :func:`install_site`."""
    if not settings.fleet.front:
        raise RenderError(f"{settings.path}: [fleet] hosts: none listed; this config is not a fleet front")
    return install_site(settings, settings.layout.front_file, settings.fleet.site_name, FRONT_MODULES)


def install_site(settings: Settings, source: Path, site_name: str, modules: list[str]) -> dict:
    """Install a rendered site into Apache: modules, copy, enable, configtest, then reload gracefully.

    Enables ``modules`` (``a2enmod``, see :func:`enable_modules`), disables
    Debian's default site when ``[web] disable_default_site`` is on, copies
    ``source`` to ``[web] sites_dir/<site_name>`` and links it from ``[web] enabled_dir``.
    When ``apachectl configtest`` fails (or apachectl is missing:
    MissingProgram), the previous file and link are put back and RenderError
    carries the configtest output; Apache is not reloaded then.  Does not
    copy or reload when the same file is already installed and enabled.
    Logs and returns what it did: modules enabled, site installed, default
    site disabled, and whether Apache was reloaded or started.
    """
    try:
        text = source.read_bytes()
    except OSError:
        raise RenderError(f"{source} is missing; run `doit render_{source.stem.removeprefix('pvw-')}` first") from None
    dest, link = _site_paths(settings, site_name)
    done: dict = {"modules_enabled": enable_modules(settings, modules),
                  "default_site_disabled": disable_default_site(settings),
                  "installed": False, "apache": ""}
    what = [f"enabled Apache modules {', '.join(done['modules_enabled'])}"] if done["modules_enabled"] else []
    if done["default_site_disabled"]:
        what.append(f"disabled the default site {DEFAULT_SITE}")
    old_text = dest.read_bytes() if dest.is_file() else None
    old_link = os.readlink(link) if link.is_symlink() else None
    if old_text == text and old_link is not None and (link.parent / old_link).resolve() == dest.resolve():
        if what:
            done["apache"] = _reload(settings)
            log.info("%s; %s is already installed and enabled; %s", _say(what), dest, done["apache"])
        else:
            log.info("%s is already installed and enabled", dest)
        return done
    atomic_write_bytes(dest, text, 0o644)
    replace_symlink(link, os.path.relpath(dest, link.parent))
    apachectl = _apachectl(settings)
    try:
        test = programs.run([*apachectl, "configtest"], "apache configtest", _INSTALL_HINT)
    except BaseException:  # no apachectl, or it hung: Apache must not pick up an untested file
        _restore(dest, old_text, link, old_link)
        raise
    if test.returncode != 0:
        _restore(dest, old_text, link, old_link)
        output = "; ".join(line.strip() for line in (test.stdout + test.stderr).splitlines() if line.strip())
        raise RenderError(f"`{' '.join(apachectl)} configtest` rejects {dest.name}, previous state restored: "
                          f"{output or 'exit status ' + str(test.returncode)}")
    done["installed"] = True
    what.append(f"installed {dest} and enabled it")
    try:
        done["apache"] = _reload(settings)
    except RenderError:
        _restore(dest, old_text, link, old_link)
        raise
    log.info("%s; %s", _say(what), done["apache"])
    return done


def site_current(settings: Settings) -> bool:
    """True when Apache is not managed, or its site is the rendered vhost, enabled (``apache_site``'s check).

    Never raises.
    """
    if not settings.web.manage_apache:
        return True
    try:
        dest, link = _site_paths(settings)
        return (dest.read_bytes() == settings.layout.vhost_file.read_bytes() and link.is_symlink()
                and link.resolve() == dest.resolve())
    except (OSError, RenderError) as err:
        log.info("installed vhost not checked: %s", err)
        return False


def ensure_site(settings: Settings) -> dict:
    """``update``'s ``apache_site``: reinstall a changed vhost when ``[web] manage_apache`` is on.

    See :func:`install_vhost` (configtest, graceful, the previous site put
    back on failure).  Does nothing, and says so, when Apache is not managed.
    """
    if not settings.web.manage_apache:
        log.info("Apache is not managed ([web] manage_apache = false); its site is left alone")
        return {"managed": False}
    return {"managed": True, **install_vhost(settings)}


def uninstall_vhost(settings: Settings) -> dict:
    """Remove the site's link and file from Apache, then reload it gracefully if it runs.

    Logs and returns what it did.  Raises RenderError when the reload fails
    (the files are gone then).  A stopped Apache is left stopped.
    """
    dest, link = _site_paths(settings)
    removed = []
    for path in (link, dest):
        if path.is_symlink() or path.exists():
            path.unlink()
            removed.append(str(path))
    if not removed:
        log.info("%s is not installed; nothing to remove", dest)
        return {"removed": [], "apache": ""}
    if running_pid(settings) is None:
        state = "Apache is not running; not reloaded"
    else:
        state = _reload(settings)
    log.info("removed %s; %s", " and ".join(removed), state)
    return {"removed": removed, "apache": state}
