"""Apache: checking the rendered vhost with ``apache2 -t``, and installing it into Apache's sites.

Debian's ``apache2 -t`` against /etc/apache2 needs the variables of
/etc/apache2/envvars, so the vhost is checked inside a minimal ``httpd.conf``
of our own that loads just the modules it uses.  The same builder serves
tests that run a real Apache in the foreground.  ``install_vhost`` (``doit
install_vhost``) is the one step that changes the system's Apache.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from . import programs
from .config import Settings
from .errors import RenderError
from .fsutil import atomic_write_bytes, replace_symlink

log = logging.getLogger(__name__)

MODULES_DIR = Path("/usr/lib/apache2/modules")
MODULES = ["mpm_event", "authz_core", "dir", "mime", "proxy", "proxy_http", "proxy_wstunnel", "rewrite"]
_INSTALL_HINT = "install Apache with `apt-get install apache2`, or fix [web] apachectl"


def httpd_conf(folder: Path, ports: list[int], include: Path | str, ssl: bool = False) -> Path:
    """Write ``folder/httpd.conf``: listening on 127.0.0.1:``ports``, Including ``include``."""
    folder.mkdir(parents=True, exist_ok=True)
    modules = MODULES + (["ssl", "socache_shmcb"] if ssl else [])
    lines = [
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


def check_vhost(vhost: Path, ports: list[int], ssl: bool) -> bool:
    """Check ``vhost`` with the real ``apache2 -t``; RenderError quoting Apache when it rejects it.

    Returns False (not checked) when Apache is not installed here.
    """
    apache2 = binary()
    if apache2 is None or not MODULES_DIR.is_dir():
        return False
    with tempfile.TemporaryDirectory(prefix="pvwtasks-apache-") as folder:
        proc = configtest(httpd_conf(Path(folder), ports, vhost, ssl), apache2)
    if proc.returncode != 0:
        complaint = " ".join(line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip())
        raise RenderError(f"apache2 -t rejects the rendered vhost: {complaint[-400:]}")
    return True


def _apachectl(settings: Settings) -> list[str]:
    words = shlex.split(settings.web.apachectl)
    if not words:
        raise RenderError(f"{settings.path}: [web] apachectl: empty; expected apache2ctl or apachectl")
    return words


def _site_paths(settings: Settings) -> tuple[Path, Path]:
    """(the site file in ``[web] sites_dir``, its link in ``[web] enabled_dir``); RenderError when a folder is missing."""
    web = settings.web
    sites, enabled = Path(web.sites_dir), Path(web.enabled_dir)
    for folder in (sites, enabled):
        if not folder.is_dir():
            raise RenderError(f"{folder}: no such folder; is Apache installed? (see [web] sites_dir, enabled_dir)")
    link = enabled / web.site_name
    if link.exists() and not link.is_symlink():
        raise RenderError(f"{link} is a real file, not a link; move it away first")
    return sites / web.site_name, link


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


def install_vhost(settings: Settings) -> None:
    """Install the rendered vhost into Apache: copy, enable, configtest, then reload gracefully.

    Copies conf/pvw-vhost.conf to ``[web] sites_dir/site_name`` and links
    it from ``[web] enabled_dir``.  When ``apachectl configtest`` fails
    (or apachectl is missing: MissingProgram), the previous file and link
    are put back and RenderError carries the configtest output; Apache is
    not reloaded then.  Does nothing when the same file is already
    installed and enabled.
    """
    source = settings.layout.vhost_file
    try:
        text = source.read_bytes()
    except OSError:
        raise RenderError(f"{source} is missing; run `doit render_vhost` first") from None
    dest, link = _site_paths(settings)
    old_text = dest.read_bytes() if dest.is_file() else None
    old_link = os.readlink(link) if link.is_symlink() else None
    if old_text == text and old_link is not None and (link.parent / old_link).resolve() == dest.resolve():
        log.info("%s is already installed and enabled", dest)
        return
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
    reload = programs.run([*apachectl, "graceful"], "apache graceful reload", _INSTALL_HINT)
    if reload.returncode != 0:
        raise RenderError(f"`{' '.join(apachectl)} graceful` failed: "
                          f"{(reload.stderr or reload.stdout).strip() or reload.returncode}")
    log.info("installed %s, enabled it and reloaded Apache gracefully", dest)
