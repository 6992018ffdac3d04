"""Every path of one deployment, and a small typed record for each JSON file in it.

``Layout(root)`` names every folder and file under ROOT; no other module
builds a path under ROOT by hand.  Each JSON file pvwtasks keeps has one
frozen dataclass below, with ``load`` (None when missing or unreadable) and
``save`` (atomic).  Lowest layer: imports only the standard library and fsutil.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from .frozen import Frozen
from .fsutil import read_json, write_json

R = TypeVar("R", bound="Record")

INCOMING_PREFIX = ".incoming-"
STAGED_PREFIX = ".incoming-staged-"


class Layout(Frozen):
    """The folders and files of one deployment, all under ``root``."""

    root: Path
    slot: str = "a"  # the launcher slot whose files launch_json, start_script, proxy_file, pid_file name

    # --- folders
    @property
    def autodeploy(self) -> Path:
        return self.root / "autodeploy"

    @property
    def versions(self) -> Path:
        return self.autodeploy / "versions"

    @property
    def downloads(self) -> Path:
        return self.autodeploy / "downloads"

    @property
    def live_link(self) -> Path:
        """``autodeploy/paraview``: the symlink to the live release."""
        return self.autodeploy / "paraview"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def systemd_units(self) -> Path:
        """The rendered systemd units (``doit install_systemd`` copies them into the unit folder)."""
        return self.conf / "systemd"

    @property
    def update_logs(self) -> Path:
        return self.logs / "autodeploy"

    @property
    def session_logs(self) -> Path:
        """One log per launched session, written by the wslink launcher."""
        return self.logs / "launcher"

    @property
    def www(self) -> Path:
        return self.root / "www"

    @property
    def state(self) -> Path:
        """pvwtasks' own bookkeeping: doit's dep file, the run lock, records."""
        return self.root / ".pvwtasks"

    # --- releases
    def release_dir(self, name: str) -> Path:
        return self.versions / name

    def release_record(self, name: str) -> Path:
        """``versions/<name>.json``: what was installed, and its failure mark."""
        return self.versions / f"{name}.json"

    def staged_dir(self, sha256: str) -> Path:
        """The tree unpacked while downloading, named after the archive's sha256."""
        return self.versions / f"{STAGED_PREFIX}{sha256}"

    def incoming_dir(self, label: str) -> Path:
        return self.versions / f"{INCOMING_PREFIX}{label}"

    @property
    def installed_record(self) -> Path:
        return self.autodeploy / "installed.json"

    # --- downloads
    @property
    def download_record(self) -> Path:
        return self.downloads / "download.json"

    @property
    def verified_record(self) -> Path:
        return self.downloads / "verified.json"

    def part_file(self, filename: str) -> Path:
        return self.downloads / f"{filename}.part"

    def part_record(self, filename: str) -> Path:
        return self.downloads / f"{filename}.part.json"

    # --- trame apps: companion venvs and static web clients
    @property
    def venvs(self) -> Path:
        """``autodeploy/venvs``: content-addressed companion venvs, one folder per key."""
        return self.autodeploy / "venvs"

    def venv_dir(self, key: str) -> Path:
        return self.venvs / key

    def venv_record(self, key: str) -> Path:
        """The venv's ``complete`` record, written last: no record, not built."""
        return self.venv_dir(key) / "pvwtasks-venv.json"

    @property
    def trame_clients(self) -> Path:
        """``www/trame``: the static trame clients, one folder per client key."""
        return self.www / "trame"

    def client_dir(self, key: str) -> Path:
        return self.trame_clients / key

    def client_record(self, key: str) -> Path:
        return self.client_dir(key) / "pvwtasks-client.json"

    def app_page(self, app: str) -> Path:
        """``www/<app>.html``: the page of one trame app."""
        return self.www / f"{app}.html"

    # --- extras (docs, data)
    def extra_link(self, kind: str) -> Path:
        return self.autodeploy / kind

    def extra_record(self, kind: str) -> Path:
        return self.autodeploy / f"{kind}.json"

    def extra_staging(self, kind: str) -> Path:
        return self.autodeploy / f".{kind}-download"

    def extra_part_file(self, kind: str, filename: str) -> Path:
        return self.extra_staging(kind) / f"{filename}.part"

    def extra_part_record(self, kind: str, filename: str) -> Path:
        return self.extra_staging(kind) / f"{filename}.part.json"

    # --- rendered files
    @property
    def vhost_file(self) -> Path:
        return self.conf / "pvw-vhost.conf"

    def for_slot(self, slot: str) -> Layout:
        """The same deployment seen from launcher slot ``a`` or ``b``."""
        return dataclasses.replace(self, slot=slot)

    def _slotted(self, folder: Path, stem: str, suffix: str) -> Path:
        """Slot ``a`` keeps the historical names (``launch.json``); slot ``b`` adds ``-b``."""
        return folder / (f"{stem}{suffix}" if self.slot == "a" else f"{stem}-{self.slot}{suffix}")

    @property
    def front_file(self) -> Path:
        """The fleet front's Apache site (``doit render_front``, on the front host only)."""
        return self.conf / "pvw-front.conf"

    @property
    def launch_json(self) -> Path:
        """This slot's launcher config: ``conf/launch.json`` (slot a, what render_launcher writes), ``launch-b.json``."""
        return self._slotted(self.conf, "launch", ".json")

    @property
    def start_script(self) -> Path:
        """This slot's ``bin/start.sh`` (slot a, what render_start writes) or ``bin/start-b.sh``."""
        return self._slotted(self.bin, "start", ".sh")

    @property
    def rendered_launch_json(self) -> Path:
        """``conf/launch.json`` as render_launcher writes it: what every slot's launcher is derived from."""
        return self.for_slot("a").launch_json

    @property
    def rendered_start_script(self) -> Path:
        return self.for_slot("a").start_script

    @property
    def active_map(self) -> Path:
        """``conf/active.txt``: the RewriteMap naming the slot that takes new sessions (``launcher host:port``)."""
        return self.conf / "active.txt"

    @property
    def logrotate_conf(self) -> Path:
        return self.conf / "logrotate.conf"

    @property
    def crontab_file(self) -> Path:
        return self.conf / "crontab"

    @property
    def index_page(self) -> Path:
        return self.www / "index.html"

    @property
    def hash_file(self) -> Path:
        return self.www / "hash.json"

    @property
    def previous_hash_file(self) -> Path:
        return self.www / "hash.json.previous"

    @property
    def www_docs(self) -> Path:
        return self.www / "docs"

    @property
    def proxy_file(self) -> Path:
        """This slot's session map: ``proxy.txt`` (slot a) or ``proxy-b.txt``."""
        return self._slotted(self.root, "proxy", ".txt")

    # --- logs
    @property
    def update_log(self) -> Path:
        return self.update_logs / "update.log"

    @property
    def launcher_log(self) -> Path:
        return self.logs / "launcher.log"

    @property
    def pid_file(self) -> Path:
        return self._slotted(self.logs, "launcher", ".pid")

    @property
    def apache_error_log(self) -> Path:
        return self.logs / "error.log"

    @property
    def apache_access_log(self) -> Path:
        return self.logs / "access.log"

    # --- state
    @property
    def dep_file(self) -> Path:
        return self.state / "doit-deps.sqlite3"

    @property
    def lock_file(self) -> Path:
        return self.state / "update.lock"

    @property
    def launcher_record(self) -> Path:
        return self._slotted(self.state, "launcher", ".json")

    @property
    def slots_record(self) -> Path:
        """``state/slots.json``: which launcher slot is active, which one drains (``SlotsRecord``)."""
        return self.state / "slots.json"

    @property
    def compare_record(self) -> Path:
        return self.state / "compare.json"

    @property
    def last_run_record(self) -> Path:
        return self.state / "last-run.json"

    @property
    def logrotate_state(self) -> Path:
        return self.state / "logrotate.state"

    def rendered_record(self, name: str) -> Path:
        """What rendered output ``name`` was last made from, when the reporter refreshes it (the landing page)."""
        return self.state / f"rendered-{name}.json"


class Record(Frozen):
    """A frozen dataclass stored as one JSON object.

    ``load`` ignores keys it does not know (older or newer pvwtasks) and
    answers None for a missing, unreadable or incomplete file, so a damaged
    record means "do the step again", never a crash.
    """

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R | None:
        if not isinstance(data, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:  # a required field is missing
            return None

    @classmethod
    def load(cls: type[R], path: Path) -> R | None:
        return cls.from_dict(read_json(path))

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    file_mode: ClassVar[int | None] = None  # None: private to pvwtasks' user (0600)

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict(), self.file_mode)

    def replace(self: R, **changes) -> R:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


class DownloadRecord(Record):
    """A finished download (``download.json``, ``verified.json``, the extras' records)."""

    url: str
    filename: str
    path: str
    size: int
    etag: str | None
    last_modified: str | None
    sha256: str
    md5: str


class PartRecord(Record):
    """The validators of a partial download (``<file>.part.json``), to resume it safely."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None


class Failure(Record):
    """The failure mark of a release (``failed`` in its record): when, and why."""

    at: float
    reason: str


class ReleaseRecord(Record):
    """An installed release (``versions/<name>.json`` and ``installed.json``)."""

    name: str  # folder name under versions/
    top_folder: str  # the archive's own top folder, e.g. ParaView-5.13.0-MPI-Linux-Python3.11-x86_64
    version: str  # e.g. 5.13.0
    sha256: str
    url: str
    size: int
    installed_at: float
    pvpython: str  # relative to the tree
    site_packages: str  # relative to the tree
    python_version: str  # e.g. 3.11
    failed: dict | None = None  # {"at": epoch, "reason": text} once its health check failed
    healthy_at: float | None = None  # when it last passed a health check as the live release
    info: dict | None = None  # families.ReleaseInfo: family, ParaView/Python versions, variant, apps
    venv: str | None = None  # key of the trame apps' companion venv (venvs/<key>), None without trame apps

    @property
    def failure(self) -> Failure | None:
        return Failure.from_dict(self.failed)


class CompareRecord(Record):
    """``compare.json``: whether upstream changed since the last run."""

    result: str  # "changed" | "unchanged"
    sha256: str | None
    previous_sha256: str | None
    filename: str | None
    since: float | None  # when this result was first seen (the mails' "unchanged since")


class LauncherRecord(Record):
    """``launcher.json``: the running launcher and what it was started from."""

    pid: int | None  # None once stopped
    create_time: float
    release: str | None  # the live release it was started with
    launch_json: str | None  # sha256 of conf/launch.json it started with
    start_sh: str | None  # sha256 of bin/start.sh it started with
    port: int
    started_at: float
    health: dict | None = None


class SlotsRecord(Record):
    """``slots.json``: the launcher slot taking new sessions, and the one draining after an upgrade."""

    active: str = "a"
    draining: str | None = None  # the old slot: no new sessions, stopped once empty or at the drain limit
    drain_since: float | None = None
    starting: str | None = None  # a slot being started beside the active one (an upgrade in progress)
    changed_at: float = 0.0


class LastRun(Record):
    """``last-run.json``: how the last ``doit update`` ended."""

    started: float
    finished: float
    result: str  # "ok" | "failed"
    failed: dict = field(default_factory=dict)
    ran: list = field(default_factory=list)
    host: str = ""


class HashRecord(Record):
    """``www/hash.json``: the published identity of the live release."""

    file_mode: ClassVar[int | None] = 0o644  # Apache's user must read it

    sha256: str
    version: str
    name: str
    url: str
    size: int
    installed_at: str  # ISO 8601 UTC
    family: str = ""  # families.FAMILIES: legacy, 5.6-5.9, 5.10-5.12, 5.13, 6.x
    paraview_version: str = ""
    python_version: str = ""
    variant: str = ""  # egl, osmesa or "" (from the file name)


class RenderedRecord(Record):
    """``.pvwtasks/rendered-<name>.json``: a refreshed file's inputs, its text with markers, the text written."""

    inputs: str  # sha256 of pvwtasks' version, the template, the settings and the template values (markers in)
    output: str  # sha256 of the file as written
    skeleton: str | None = None  # the text rendered with markers in place of the per-run values


class VenvRecord(Record):
    """``venvs/<key>/pvwtasks-venv.json``: a finished companion venv (its ``complete`` marker)."""

    key: str
    python_version: str  # the release's minor, e.g. 3.12
    mode: str  # "venv" (made by a matching interpreter) | "target" (pip --target for another minor)
    packages: list  # resolved "name==version", sorted
    site_packages: str  # relative to the venv
    launcher_python: str  # a Python with wslink >= 2.5 that can run the launcher
    interpreter: str | None  # the interpreter that made a real venv, None for "target"
    requests: list  # hashes of the declared requirement sets that resolved to this key
    built_at: float
    seconds: float = 0.0  # wall time of the build
    size: int = 0  # bytes on disk


class ClientRecord(Record):
    """``www/trame/<key>/pvwtasks-client.json``: a finished static trame client."""

    key: str
    client_type: str  # vue2 | vue3
    modules: list
    packages: list  # the trame packages' "name==version" it was built from
    built_at: float
    seconds: float = 0.0
    size: int = 0


def finished_builds(folder: Path, record_file: Callable[[str], Path], record_type: type[R],
                    complete: Callable[[Path, R], bool]) -> dict[str, R]:
    """The finished builds under ``folder`` (trame venvs, web clients): sub-folder name -> its record.

    A build writes its record last, naming its own folder (``key``); a
    folder without such a record (being built, cut short, hidden) or one
    that ``complete`` rejects does not count.
    """
    found = {}
    try:
        folders = sorted(folder.iterdir())
    except OSError:
        return {}
    for sub in folders:
        if sub.name.startswith("."):
            continue
        record = record_type.load(record_file(sub.name))
        if record is not None and record.key == sub.name and complete(sub, record):
            found[sub.name] = record
    return found


def read_pid(path: Path) -> int | None:
    """The PID in a pid file, or None."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def live_name(layout: Layout) -> str | None:
    """Name of the live release folder, from the ``paraview`` symlink."""
    try:
        return Path(os.readlink(layout.live_link)).name
    except OSError:
        return None


def load_json_object(path: Path) -> dict | None:
    """A JSON object from ``path`` (for files pvwtasks does not own, e.g. launch.json)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
