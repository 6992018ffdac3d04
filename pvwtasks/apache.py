"""A private Apache configuration around the rendered vhost, and Apache's own syntax check.

Debian's ``apache2 -t`` against /etc/apache2 needs its envvars (FACTS.md),
so the vhost is checked inside a minimal ``httpd.conf`` of our own that
loads just the modules it uses.  The same builder serves tests that run a
real Apache in the foreground.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import RenderError

MODULES_DIR = Path("/usr/lib/apache2/modules")
MODULES = ["mpm_event", "authz_core", "dir", "mime", "proxy", "proxy_http", "proxy_wstunnel", "rewrite"]
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


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
    return shutil.which("apache2") or next((f"{d}/apache2" for d in _SBIN if Path(f"{d}/apache2").exists()), None)


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
