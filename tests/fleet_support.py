"""A fleet on one machine: three deployments as hosts, each with its own root, ports and private Apache,
a front Apache, and the real ``ansible-playbook`` (``ansible_connection=local``) running ansible/site.yml.

Used by tests/test_fleet.py and bench/bench_fleet.py.  Everything lives under one folder and is
stopped by PID (:meth:`Fleet.stop`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from apache_support import ManagedApache
from conftest import stop_deployment_processes
from render_support import fake_crontab
from support.doit import PROJECT, doit_env, run_doit
from support.ports import free_port, free_port_range
from pvwtasks import apache

PLAYBOOK = PROJECT / "ansible" / "site.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
_NODE = re.compile(r"/node/([A-Za-z0-9_-]+)/proxy\?sessionId=([^&]+)")


@dataclass
class Host:
    name: str
    folder: Path
    apache: ManagedApache
    http_port: int
    launcher_port: int
    port_range: tuple[int, int]

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def config(self) -> Path:
        return self.folder / "pvw.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def crontab(self) -> Path:
        """A stand-in crontab(1) (render_support.fake_crontab): the role installs the host's lines there."""
        return self.folder / "cron" / "crontab"

    @property
    def crontab_store(self) -> Path:
        return self.folder / "cron" / "crontab.store"


@dataclass
class Playbook:
    returncode: int
    output: str
    seconds: float


class Fleet:
    """Hosts ``names`` and a front under ``folder`` (nothing runs until :meth:`rollout`)."""

    def __init__(self, folder: Path, names=("h1", "h2", "h3"), sessions_per_host: int = 14) -> None:
        self.folder = folder
        self.venv = folder / "venv"  # one venv for the hosts of this one machine (the role's pip step reuses it)
        self.hosts: dict[str, Host] = {}
        for name in names:
            port = free_port()
            self.hosts[name] = Host(name, folder / name, ManagedApache(folder / name / "apache", [port]), port,
                                    free_port(), free_port_range(sessions_per_host))
            fake_crontab(folder / name / "cron")
        self.front_port = free_port()
        self.front_root = folder / "front" / "root"
        self.front_apache = ManagedApache(folder / "front" / "apache", [self.front_port],
                                          extra_modules=apache.FRONT_MODULES)

    @property
    def front_url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def inventory(self, release_url: str) -> Path:
        """The inventory (JSON, which Ansible reads as YAML) deploying ``release_url`` on every host."""
        common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                  "pvwtasks_src": str(PROJECT), "pvwtasks_venv": str(self.venv), "pvwtasks_python": sys.executable,
                  "pvwtasks_supervise": True}
        hosts = {}
        for host in self.hosts.values():
            hosts[host.name] = {
                "pvwtasks_root": str(host.root), "pvwtasks_config": str(host.config), "pvwtasks_node_url": host.url,
                "pvwtasks_host_settings": {
                    "web": {"http_port": host.http_port, **host.apache.web_keys()},
                    "launcher": {"port": host.launcher_port, "port_range": list(host.port_range)},
                    "cron": {"crontab": str(host.crontab)},
                },
            }
        front = {"pvwtasks_root": str(self.front_root), "pvwtasks_config": str(self.front_config),
                 "pvwtasks_front_port": self.front_port, "pvwtasks_public_url": self.front_url,
                 "pvwtasks_front_settings": {"web": {"server_name": "127.0.0.1", **self.front_apache.web_keys()},
                                             "fleet": {"health_interval": 1}}}
        shared = self.shared_settings(release_url)
        data = {"all": {"vars": common, "children": {
            "pvw_front": {"hosts": {"front": front}},
            "pvw_hosts": {"vars": {"pvwtasks_settings": shared}, "hosts": hosts}}}}
        path = self.folder / "inventory.json"
        path.write_text(json.dumps(data, indent=2))
        return path

    @staticmethod
    def shared_settings(release_url: str) -> dict:
        """Every host's config (the inventory's ``pvwtasks_settings``) deploying ``release_url``."""
        return {"source": {"url": release_url, "timeout": 10, "retries": 3, "backoff": 0.05},
                "web": {"server_name": "127.0.0.1"},
                "launcher": {"host": "127.0.0.1", "timeout": 20, "stop_grace": 5, "start_timeout": 30,
                             "allow_root": True}}

    def rollout(self, release_url: str, timeout: float = 900, extra_vars: dict | None = None) -> Playbook:
        """``ansible-playbook -i inventory site.yml [-e JSON]``: the front, then the hosts one at a time."""
        home = self.folder / "ansible-home"
        env = doit_env({"ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
                        "ANSIBLE_REMOTE_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1",
                        "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_FORCE_COLOR": "0",
                        "ANSIBLE_DEPRECATION_WARNINGS": "0"})
        started = time.monotonic()
        extra = ["-e", json.dumps(extra_vars)] if extra_vars else []
        proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory(release_url)), *extra, str(PLAYBOOK)],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd=self.folder)
        return Playbook(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)

    @property
    def front_config(self) -> Path:
        """The front's config, which the playbook's front play writes."""
        return self.folder / "front" / "pvw.toml"

    def front_status(self) -> tuple[int, dict]:
        """``doit status --json`` on the front: its exit code and the JSON."""
        done = run_doit(self.front_config, "status", "--json", timeout=60)
        return done.returncode, json.loads(done.stdout)

    def stop(self) -> None:
        for host in self.hosts.values():
            stop_deployment_processes(host.root)
            host.apache.stop()
        self.front_apache.stop()


def node_of(session: dict) -> str:
    """The host named in a session's sessionURL (``…/node/<name>/proxy?sessionId=…``)."""
    match = _NODE.search(session.get("sessionURL", ""))
    assert match, session
    return match.group(1)


def end_session(front_url: str, session: dict) -> None:
    """DELETE the session on the host that holds it, through the front's ``/node/<name>/``."""
    requests.delete(f"{front_url}/node/{node_of(session)}/paraview/{session['id']}", timeout=30)


@dataclass
class Poll:
    started: float
    finished: float
    status: int | str  # the HTTP status, or the exception's name
    node: str = ""


@dataclass
class Poller:
    """POSTs a session through the front again and again (ending each one) until stopped."""

    front_url: str
    app: str = "loader"
    pause: float = 0.2
    polls: list[Poll] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-poller", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            try:
                answer = requests.post(f"{self.front_url}/paraview/", json={"application": self.app}, timeout=60)
                node = ""
                if answer.status_code == 200:
                    session = answer.json()
                    node = node_of(session)
                    end_session(self.front_url, session)
                self.polls.append(Poll(started, time.time(), answer.status_code, node))
            except (requests.RequestException, ValueError, AssertionError) as err:
                self.polls.append(Poll(started, time.time(), type(err).__name__))
            self._stop.wait(self.pause)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(90)

    @property
    def failures(self) -> list[Poll]:
        return [p for p in self.polls if p.status != 200]
