"""A trame site on loopback: the wslink launcher and a private Apache in front, as Kitware serves trame.

``TrameSite.start()`` writes
* ``launch.json``: one app, Kitware's trame command (``--host ${host} --port ${port}
  --authKey ${secret} --server``), ready line ``App running at``, ``sessionURL``
  ``ws://USE_HOST/proxy?sessionId=${id}&path=ws`` (one file for http and https), and
  ``secret`` in ``fields`` so the client gets the key the app was started with;
* a vhost with the rules of config/templates/vhost.conf.j2 (``/paraview`` to the
  launcher, the ``session-to-port`` RewriteMap for ``/proxy``, ``[NC]`` because the
  trame client lowercases the whole sessionURL) plus Kitware's per-session
  ``/api/<session>/...`` rule;
and runs ``python -m wslink.launcher launch.json`` and ``apache2 -DFOREGROUND``.
``stop()`` ends, by PID, the launcher with its sessions and Apache.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from conftest import end_processes, free_port
from support.waiting import launcher_log_tail, wait_until
from pvwtasks.apache import httpd_conf
from render_support import Apache, wait_port

SESSION_URL = "ws://USE_HOST/proxy?sessionId=${id}&path=ws"
READY_LINE = "App running at"

VHOST = """\
<VirtualHost *:{port}>
    ServerName 127.0.0.1
    DocumentRoot "{www}"
    ErrorLog "{logs}/error.log"
    CustomLog "{logs}/access.log" combined
    LogLevel warn
    <Directory "{www}">
        Options FollowSymLinks
        AllowOverride None
        Require all granted
    </Directory>
    Timeout 600
    ProxyTimeout 600
    ProxyRequests Off
    ProxyPass /paraview/ http://127.0.0.1:{launcher_port}/paraview/
    ProxyPassReverse /paraview/ http://127.0.0.1:{launcher_port}/paraview/
    ProxyPass /paraview http://127.0.0.1:{launcher_port}/paraview/
    RewriteEngine On
    RewriteMap session-to-port "txt:{proxy_file}"
    RewriteCond %{{QUERY_STRING}} ^sessionId=([^&]+)&path=([A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*)$ [NC]
    RewriteRule ^/proxy.*$ ws://${{session-to-port:%1}}/%2 [P,L]
    RewriteCond %{{QUERY_STRING}} ^sessionId=([^&]+)$ [NC]
    RewriteRule ^/proxy.*$ ws://${{session-to-port:%1}}/ws [P,L]
    # Kitware's per-session HTTP: /api/<session>/<path> goes to that session's own server.
    RewriteRule ^/api/([^/]+)/(.*)$ http://${{session-to-port:$1}}/$2 [P,L]
</VirtualHost>
"""


@dataclass
class TrameSite:
    """One trame app behind the wslink launcher and Apache, all under ``folder``."""

    folder: Path
    www: Path
    app: str
    app_cmd: list[str]  # with ${host} ${port} ${secret}
    launcher_python: str
    port: int = field(default_factory=free_port)
    launcher_port: int = field(default_factory=free_port)
    session_ports: tuple[int, int] = (0, 0)
    launcher: subprocess.Popen | None = None
    apache: Apache | None = None

    @property
    def proxy_file(self) -> Path:
        return self.folder / "proxy.txt"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch_config(self) -> dict:
        first = free_port()
        self.session_ports = (first, first + 20)
        return {
            "configuration": {
                "host": "127.0.0.1", "port": self.launcher_port, "endpoint": "paraview",
                "sessionURL": SESSION_URL, "timeout": 60, "log_dir": str(self.logs / "sessions"),
                "proxy_file": str(self.proxy_file), "fields": ["secret"],
            },
            "resources": [{"host": "127.0.0.1", "port_range": list(self.session_ports)}],
            "properties": {},
            "apps": {self.app: {"cmd": self.app_cmd, "ready_line": READY_LINE}},
        }

    def start(self) -> "TrameSite":
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.logs / "sessions").mkdir(exist_ok=True)
        self.proxy_file.write_text("")
        launch = self.folder / "launch.json"
        launch.write_text(json.dumps(self.launch_config(), indent=2))
        vhost = self.folder / "vhost.conf"
        vhost.write_text(VHOST.format(port=self.port, www=self.www, logs=self.logs, launcher_port=self.launcher_port,
                                      proxy_file=self.proxy_file))
        out = (self.logs / "launcher.log").open("ab")
        self.launcher = subprocess.Popen([self.launcher_python, "-m", "wslink.launcher", str(launch)], stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True)
        wait_port(self.launcher_port, timeout=30)
        conf = httpd_conf(self.folder / "apache", [self.port], vhost)
        self.apache = Apache(conf, self.port).start()
        return self

    def stop(self) -> None:
        if self.launcher is not None:
            try:
                parent = psutil.Process(self.launcher.pid)
                end_processes([parent, *parent.children(recursive=True)], 5)
            except psutil.NoSuchProcess:
                pass
            self.launcher.wait(timeout=10)
        if self.apache is not None:
            self.apache.stop()

    def access_lines(self, pattern: str) -> list[str]:
        try:
            text = self.access_log.read_text()
        except OSError:
            return []
        return [line for line in text.splitlines() if re.search(pattern, line)]

    def sessions(self) -> dict[str, str]:
        """The proxy file's ``<id> <host>:<port>`` lines."""
        found = {}
        for line in self.proxy_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                found[parts[0]] = parts[1]
        return found

    def wait_for(self, check, timeout: float, what: str):
        return wait_until(check, timeout, 0.2, what, lambda: launcher_log_tail(self.logs / "launcher.log"))
