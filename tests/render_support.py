"""Helpers for the render tests: a private Apache, a test certificate, a stand-in crontab, configs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import trustme

from conftest import end_processes, write_config
from support.ports import free_port
from pvwtasks import apache
from pvwtasks.apache import httpd_conf  # noqa: F401 - tests import it from here

def apache_configtest(conf: Path) -> subprocess.CompletedProcess:
    """``apache2 -f CONF -t``: the real syntax check."""
    return apache.configtest(conf)


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answers on 127.0.0.1:{port} after {timeout} s")


class Apache:
    """A real Apache in the foreground with a private config; stopped by its PID."""

    def __init__(self, conf: Path, port: int) -> None:
        self.conf, self.port = conf, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Apache":
        out = (self.conf.parent / "foreground.log").open("ab")
        self.proc = subprocess.Popen(["apache2", "-f", str(self.conf), "-DFOREGROUND"], stdout=out, stderr=out,
                                     start_new_session=True)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"apache did not start: {(self.conf.parent / 'error.log').read_text()}") from None
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the parent stops its children
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stop_tree(self.proc.pid)
            self.proc.wait(timeout=5)


def stop_tree(pid: int, grace: float = 5.0) -> None:
    """Terminate ``pid`` and all its descendants: terminate, wait, then kill."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    end_processes([parent, *parent.children(recursive=True)], grace)


def tls_files(folder: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[Path, Path, Path]:
    """A self-signed test CA and a server certificate for ``names``: (cert, key, ca)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    cert_path, key_path, ca_path = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    key_path.chmod(0o600)
    return cert_path, key_path, ca_path


FAKE_CRONTAB = """#!{python}
# Stand-in for crontab(1): the user's crontab is the file {store}.
import sys
from pathlib import Path
store = Path({store!r})
calls = Path({calls!r})
with calls.open("a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:] == ["-l"]:
    if not store.exists():
        sys.stderr.write("no crontab for tester\\n")
        sys.exit(1)
    sys.stdout.write(store.read_text())
elif sys.argv[1:] == ["-"]:
    store.write_text(sys.stdin.read())
else:
    sys.stderr.write("fake crontab: unsupported arguments\\n")
    sys.exit(2)
"""


def fake_crontab(folder: Path) -> tuple[Path, Path, Path]:
    """A crontab stand-in storing the crontab in a file: (program, store, calls log)."""
    folder.mkdir(parents=True, exist_ok=True)
    program, store, calls = folder / "crontab", folder / "crontab.store", folder / "crontab.calls"
    program.write_text(FAKE_CRONTAB.format(python=sys.executable, store=str(store), calls=str(calls)))
    program.chmod(0o755)
    return program, store, calls


def render_config(tmp_path: Path, url: str, http_port: int | None = None, https_port: int | None = None,
                  web: str = "", extra: str = "", crontab: Path | None = None) -> Path:
    """A config deploying ``url`` under tmp_path/root, with [web] ports on free loopback ports."""
    http_port = http_port or free_port()
    https_port = https_port or free_port()
    sections = textwrap.dedent(f"""
        [web]
        server_name = "127.0.0.1"
        http_port = {http_port}
        https_port = {https_port}
        proxy_timeout = 600
        {web}
        """)
    if crontab is not None:
        sections += f'\n[cron]\ncrontab = "{crontab}"\n'
    return write_config(tmp_path / "pvw.toml", url, tmp_path / "root", extra=extra + "\n" + sections)


def env_without_display() -> dict:
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return env
