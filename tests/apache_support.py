"""A private Apache that pvwtasks manages like the system one: a real apache2, driven by a real apachectl script.

``[web] apachectl`` names a small shell script that runs ``apache2 -f <private
httpd.conf> -t`` for ``configtest`` and ``apache2 -f <conf> -k graceful|start|stop``
for the rest, so ``install_vhost``, ``apache_site`` and logrotate's postrotate
reload a real daemon; ``[web] sites_dir`` / ``enabled_dir`` / ``pid_file`` point
into the test's folder.  The daemon is stopped by its PID at teardown.
"""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
import time
from pathlib import Path

import aiohttp
import psutil
import requests

from conftest import end_processes
from pvwtasks.apache import httpd_conf

APACHECTL = """#!/bin/sh
# Stands in for apache2ctl over a private Apache: the same apache2 binary with its own httpd.conf.
echo "$*" >> {calls}
case "$1" in
  configtest) exec apache2 -f {conf} -t ;;
  graceful|start|stop|graceful-stop|restart) exec apache2 -f {conf} -k "$1" ;;
  *) echo "unsupported: $*" >&2; exit 2 ;;
esac
"""


class ManagedApache:
    """A private Apache daemon under ``folder``, with Debian-like sites-available/sites-enabled."""

    def __init__(self, folder: Path, ports: list[int], user: str = "", group: str = "",
                 extra_modules: list[str] = ()) -> None:
        self.folder, self.ports = folder, ports
        self.sites, self.enabled = folder / "sites-available", folder / "sites-enabled"
        self.sites.mkdir(parents=True, exist_ok=True)
        self.enabled.mkdir(parents=True, exist_ok=True)
        self.conf = httpd_conf(folder / "httpd", ports, str(self.enabled / "*.conf"), user=user, group=group,
                               extra_modules=extra_modules)
        self.pid_file = folder / "httpd" / "httpd.pid"
        self.error_log = folder / "httpd" / "error.log"
        self.calls = folder / "apachectl.calls"
        self.ctl = folder / "apachectl"
        self.ctl.write_text(APACHECTL.format(calls=self.calls, conf=self.conf))
        self.ctl.chmod(0o755)

    def web_keys(self) -> dict:
        """The ``[web]`` keys that make pvwtasks manage this Apache, as a dict (an Ansible inventory's)."""
        return {"manage_apache": True, "sites_dir": str(self.sites), "enabled_dir": str(self.enabled),
                "apachectl": str(self.ctl), "pid_file": str(self.pid_file)}

    def web_toml(self) -> str:
        """The ``[web]`` keys that make pvwtasks manage this Apache."""
        return textwrap.dedent(f"""
            manage_apache = true
            sites_dir = "{self.sites}"
            enabled_dir = "{self.enabled}"
            apachectl = "{self.ctl}"
            pid_file = "{self.pid_file}"
            """)

    def calls_made(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            proc = psutil.Process(pid)
            return pid if str(self.conf) in proc.cmdline() or proc.name().startswith("apache2") else None
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def start(self) -> "ManagedApache":
        subprocess.run([str(self.ctl), "start"], check=True, capture_output=True, timeout=30)
        self.wait_running()
        return self

    def graceful(self) -> None:
        subprocess.run([str(self.ctl), "graceful"], check=True, capture_output=True, timeout=30)

    def wait_running(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None:
                return pid
            time.sleep(0.05)
        raise AssertionError(f"private Apache not running: {self.error_log.read_text() if self.error_log.exists() else ''}")

    def stop(self) -> None:
        """Stop the daemon (``apache2 -k stop``, then by PID if it lingers)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        subprocess.run(["apache2", "-f", str(self.conf), "-k", "stop"], capture_output=True, timeout=30)
        _gone, alive = psutil.wait_procs(family, timeout=10)
        end_processes(alive, 5)


def post_session(base: str, app: str, timeout: float = 60) -> dict:
    """POST a session of ``app`` to ``base``/paraview/; its JSON answer (asserting a 200)."""
    answer = requests.post(f"{base}/paraview/", json={"application": app}, timeout=timeout)
    assert answer.status_code == 200, answer.text
    return answer.json()


def websocket_status(url: str) -> int:
    """Open the websocket ``url``; the HTTP status of the upgrade (101), closing it cleanly."""

    async def run() -> int:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.ws_connect(url) as ws:
                status = ws._response.status
                await ws.close()
                return status

    return asyncio.run(run())
