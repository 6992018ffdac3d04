"""Load and validate the pvwtasks TOML configuration.

Every section is a frozen dataclass, and the field types *are* the schema:
``Path`` fields resolve against the config file's folder, ``Literal`` fields
take one of their values, and ``Annotated`` fields carry a rule (a port, a
positive number, a URL, a cron schedule, a mail address).  An unknown
section, a misspelled key, a wrong type or a value out of range is one line
naming the file and the key.
"""

# No `from __future__ import annotations` here: the field types are read at run time (they are the
# schema: _build reads them from dataclasses.fields), and as strings every load would evaluate them again.
import dataclasses
import functools
import grp
import os
import pwd
import re
import sys
import tomllib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from .errors import ConfigError
from .frozen import Frozen
from .layout import Layout

# The documented config, which deploys the demo: config/pvw.toml of the source tree.  A wheel ships
# the same file as pvwtasks/example/pvw.toml (see example_text) but has no default config.
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "pvw.toml"
CONFIG_ENV = "PVW_CONFIG"


class _Key(Frozen):
    """Where a value sits, for error messages: ``FILE: [table] key``."""

    path: Path
    table: str
    key: str = ""

    def __str__(self) -> str:
        return f"{self.path}: [{self.table}]" + (f" {self.key}" if self.key else "")


# --- rules carried by the field types ---------------------------------------------------------

class _Rule:
    """A check attached to a field type with ``Annotated``; returns the (possibly resolved) value."""

    def __call__(self, value, where: _Key):
        raise NotImplementedError


class _Range(_Rule, Frozen):
    """A number within bounds: at least (or above) ``low``, at most ``high``."""

    low: float | None = None
    high: float | None = None
    above: bool = False  # strictly greater than ``low``

    def __call__(self, value, where: _Key):
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            bound = "greater than" if self.above else "at least"
            raise ConfigError(f"{where}: must be {bound} {self.low:g}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{where}: must be at most {self.high:g}, got {value!r}")
        return value


class _Url(_Rule):
    """http(s) and file URLs stay as they are; a plain path becomes an absolute one."""

    def __call__(self, value, where: _Key):
        if not value:
            return value
        scheme = urlsplit(value).scheme.lower()
        if scheme in ("http", "https", "file"):
            return value
        if scheme:
            raise ConfigError(f"{where}: unsupported URL scheme '{scheme}' (use http, https, file or a path)")
        return str(_resolve_path(value, where.path.parent))


class _Shape(_Rule):
    """The whole value must match a regular expression (empty means "not set" unless required)."""

    def __init__(self, regex: str, expected: str, required: bool = False) -> None:
        self.regex, self.expected, self.required = regex, expected, required  # compiled (and cached) by re on use

    def __call__(self, value, where: _Key):
        if (value or self.required) and not re.fullmatch(self.regex, value):
            raise ConfigError(f"{where}: expected {self.expected}, got {value!r}")
        return value


class _Requirement(_Rule):
    """A pip requirement; a local wheel or folder (``./x``, ``../x``, ``/x``, ``~/x``) becomes an absolute path."""

    def __call__(self, value, where: _Key):
        if not value.strip():
            raise ConfigError(f"{where}: an empty requirement")
        if value.startswith(("./", "../", "/", "~")):
            return str(_resolve_path(value, where.path.parent))
        return value


class _Regex(_Rule):
    def __call__(self, value, where: _Key):
        try:
            re.compile(value)
        except re.error as err:
            raise ConfigError(f"{where}: not a valid regex: {err}") from None
        return value


_CRON_ITEM = r"(\*|[0-9a-z]+(-[0-9a-z]+)?)(/[1-9][0-9]*)?"
_CRON_LIMITS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_CRON_NAMES = ({}, {}, {}, _MONTHS, _DAYS)
_CRON_SPECIALS = {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class _CronSchedule(_Rule):
    """Five cron fields (numbers, names, ranges, steps, lists) or an @special like @daily."""

    def __call__(self, value, where: _Key):
        if value.strip().lower() in _CRON_SPECIALS:
            return value
        fields = value.lower().split()
        if len(fields) != 5:
            raise ConfigError(f"{where}: expected 5 schedule fields like '0 4 * * 1', got {value!r}")
        for text, (low, high), names in zip(fields, _CRON_LIMITS, _CRON_NAMES):
            if not all(re.fullmatch(_CRON_ITEM, item) for item in text.split(",")):
                raise ConfigError(f"{where}: {text!r} is not a cron field (in {value!r})")
            for word in re.findall(r"[0-9a-z]+", re.sub(r"/[0-9]+", "", text)):
                number = names.get(word, int(word) if word.isdigit() else None)
                if number is None or not low <= number <= high:
                    raise ConfigError(f"{where}: {word!r} is out of range {low}-{high} (in {value!r})")
        return value


Port = Annotated[int, _Range(1, 65535)]
Positive = Annotated[float, _Range(0, above=True)]
PositiveInt = Annotated[int, _Range(0, above=True)]
NonNegative = Annotated[float, _Range(0)]
NonNegativeInt = Annotated[int, _Range(0)]
Url = Annotated[str, _Url()]
Regex = Annotated[str, _Regex()]
Requirement = Annotated[str, _Requirement()]
Sha256 = Annotated[str, _Shape(r"[0-9a-fA-F]{64}", "64 hex digits")]
MailAddress = Annotated[str, _Shape(r"[^@\s<>\"',;]+@[^@\s<>\"',;.]+(\.[^@\s<>\"',;.]+)*",
                                    "a mail address like user@example.org")]
OctalMode = Annotated[str, _Shape(r"0?[0-7]{3}", "an octal mode like '0660'")]
Size = Annotated[str, _Shape(r"[0-9]+[kMG]?", "a size like '5M'")]
Schedule = Annotated[str, _CronSchedule()]


# A fleet host's name: its [web] node_name, its [fleet.hosts.NAME] and its /node/<name>/ on the front.
NODE_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"

# --- the sections ------------------------------------------------------------------------------

class Deploy(Frozen):
    """``[deploy]``: where the deployment lives, how many releases it keeps, what supervises it."""

    root: Path
    keep: PositiveInt = 2
    require_programs: bool = True
    supervisor: Literal["cron", "systemd"] = "cron"  # what restarts the launcher after a crash or a reboot
    systemd_unit_dir: Path = Path("/etc/systemd/system")  # where install_systemd puts the units


class Source(Frozen):
    """``[source]``: where releases come from and how they are fetched and checked."""

    url: Url = ""
    listing: Url = ""
    pattern: Regex = ""
    sha256: Sha256 = ""
    checksums: Url = ""
    docs_url: Url = ""
    data_url: Url = ""
    timeout: Positive = 30.0
    retries: NonNegativeInt = 4
    backoff: NonNegative = 1.0
    ca_file: Path | None = None  # PEM bundle trusted for https instead of the system's CAs
    allow_http_redirect: bool = False  # follow https -> http redirects and listing entries
    allow_other_hosts: bool = False  # listing entries on other hosts or outside the listing's folder
    transfer_deadline: NonNegative = 0.0  # seconds one transfer may take in all (0: no deadline)
    min_speed: NonNegativeInt = 1024  # bytes/s, averaged over each `timeout` seconds (0: no minimum)
    max_size_mib: PositiveInt = 16384  # largest archive accepted, when the server announces no size
    max_listing_mib: PositiveInt = 32  # largest listing or checksum manifest read


class Web(Frozen):
    """``[web]``: the Apache virtual host in front of the launcher."""

    server_name: str = "localhost"
    server_admin: MailAddress = "webmaster@localhost"
    http_port: Port = 80
    https_port: Port = 443
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    proxy_timeout: PositiveInt = 3600
    user: str = "www-data"
    site_name: str = "pvw-vhost.conf"
    sites_dir: Path = Path("/etc/apache2/sites-available")
    enabled_dir: Path = Path("/etc/apache2/sites-enabled")
    apachectl: str = "apache2ctl"
    manage_apache: bool = True  # `update` reinstalls a changed vhost, and health-checks through Apache
    disable_default_site: bool = False  # `install_vhost` runs `a2dissite 000-default`
    pid_file: Path = Path("/var/run/apache2/apache2.pid")  # tells whether Apache runs (started vs reloaded)
    # Behind a fleet front: this host's name there; its sessionURL becomes <public_url>/node/<node_name>/proxy?...
    node_name: Annotated[str, _Shape(NODE_NAME, "a node name of letters, digits, - and _")] = ""
    public_url: Annotated[str, _Shape(r"https?://[^/\s\"'#?]+/?",
                                      "the front's base URL like 'http://pvw.lab.org'")] = ""

    @property
    def tls(self) -> bool:
        return bool(self.tls_certificate and self.tls_key)


class App(Frozen):
    """One web app of the launcher: a script or a module run by the release's pvpython."""

    script: str = ""  # a .py file: absolute, or relative to the release's site-packages or its top folder
    module: str = ""  # or a module, run as ``pvpython -m MODULE``
    args: list[str] | None = None  # None: the usual arguments of the release's family
    ready_line: Annotated[str, _Shape(r".+", "a non-empty line (the launcher answers 503 without one)", True)] = (
        "Starting factory")


class TrameApp(Frozen):
    """One trame app (ParaView 5.13+): run by ``pvpython --venv <companion venv>``.

    Exactly one of ``module`` (``pvpython --venv V -m MODULE``), ``trame_app``
    (``-m paraview.apps.trame --trame-app MODULE``) or ``script``.
    """

    module: str = ""
    trame_app: str = ""
    script: str = ""  # a .py file: absolute, or relative to the release's top folder
    requirements: list[Requirement] = field(default_factory=list)  # what provides the app (added to [apps])
    args: list[str] = field(default_factory=list)  # after Kitware's --host/--port/--authKey/--server
    client: Literal["vue2", "vue3"] = "vue3"  # the static client type trame.tools.www builds
    client_modules: list[str] = field(default_factory=list)  # trame modules of its widgets: vtk, vuetify3, ...
    ready_line: Annotated[str, _Shape(r".+", "a non-empty line (the launcher answers 503 without one)", True)] = (
        "App running at")


class Apps(Frozen):
    """``[apps]``: what the trame apps' companion venv holds, and ``[apps.NAME]`` one table per trame app."""

    requirements: list[Requirement] = field(default_factory=list)  # common to all: trame, trame-vtk, ... pinned
    index_url: Url = ""  # a pip index (may hold credentials: never logged)
    find_links: Path | None = None  # a folder of wheels; without index_url pip never asks an index
    allow_vtk: bool = False  # demo stand-ins only: real ParaView brings its own VTK
    apps: dict[str, TrameApp] = field(default_factory=dict, metadata={"rest": True})  # [apps.NAME] tables


class Launcher(Frozen):
    """``[launcher]``: the wslink launcher, its session ports and its apps."""

    host: str = "localhost"
    port: Port = 8081
    endpoint: Annotated[str, _Shape(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*", "a URL path like 'paraview'")] = (
        "paraview")
    timeout: PositiveInt = 25
    port_range: list[Port] = field(default_factory=lambda: [9104, 9204])
    display: str = ""
    user: str = ""  # the service account the launcher and its sessions run as (when pvwtasks runs as root)
    allow_root: bool = False  # start the launcher as root when no user is set (the demo and the tests)
    proxy_group: str = "mappingfileusers"
    python_flags: list[str] = field(default_factory=lambda: ["-dr"])
    stop_grace: NonNegative = 10.0
    start_timeout: Positive = 30.0
    health_app: str = ""  # empty: the first app
    backend: Literal["", "egl", "osmesa", "glx"] = ""  # 6.x picks its OpenGL backend at run time
    apps: dict[str, App] = field(default_factory=dict)  # empty: the release family's bundled apps
    # The second launcher slot, started beside the running one during an upgrade.
    second_port: Annotated[int, _Range(0, 65535)] = 0  # 0: port + 1
    second_port_range: list[Port] = field(default_factory=list)  # []: as many ports, right after port_range
    drain_limit: NonNegative = 14400.0  # seconds an old slot keeps its open sessions after an upgrade

    @property
    def connect_host(self) -> str:
        """Where to reach the launcher from this machine: loopback for a wildcard or localhost."""
        return loopback_host(self.host)

    @property
    def endpoint_path(self) -> str:
        """The launcher's URL path, as Apache and clients see it: ``/paraview``."""
        return "/" + self.endpoint.strip("/")

    @property
    def url(self) -> str:
        """The launcher's own URL, with the trailing slash it requires (health check, status, Apache)."""
        return f"http://{url_host(self.connect_host)}:{self.port}{self.endpoint_path}/"

    @property
    def address(self) -> str:
        """``host:port`` of the launcher from this machine (and from Apache)."""
        return f"{url_host(self.connect_host)}:{self.port}"

    @property
    def slot_b_port(self) -> int:
        """The launcher port of slot ``b`` (``second_port``, or ``port`` + 1)."""
        return self.second_port or self.port + 1

    @property
    def slot_b_range(self) -> list[int]:
        """The session ports of slot ``b``: ``second_port_range``, or as many right after ``port_range``."""
        if self.second_port_range:
            return list(self.second_port_range)
        first, last = self.port_range
        return [last + 1, last + 1 + (last - first)]


def loopback_host(host: str) -> str:
    """Where to reach a server listening on ``host``: 127.0.0.1 for a wildcard or localhost."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "localhost") else host


def url_host(host: str) -> str:
    """``host`` as written in a URL: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Logrotate(Frozen):
    """``[logrotate]``: rotation of the update and launcher logs, and the session logs' age."""

    size: Size = "5M"
    rotate: NonNegativeInt = 10
    compress: bool = True
    create_mode: OctalMode = "0660"
    owner: str = ""
    group: str = ""
    session_log_days: PositiveInt = 30  # session logs (logs/launcher/*) older than this are deleted


class Cron(Frozen):
    """``[cron]``: the schedules of the update, logrotate and the watchdog."""

    update: Schedule = "0 4 * * 1"
    logrotate: Schedule = "55 3 * * 1"
    watchdog: Schedule = "*/5 * * * *"  # how often cron's watchdog starts a dead launcher
    auto_update: bool = True  # false: no update line / timer (a fleet rolled forward by Ansible); watchdog kept
    crontab: str = "crontab"


class Notify(Frozen):
    """``[notify]``: the mails of each run (SMTP or sendmail)."""

    method: Literal["none", "smtp", "sendmail"] = "none"
    host: str = "localhost"
    port: Port = 25
    security: Literal["none", "starttls", "tls"] = "none"
    user: str = ""
    password_env: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None
    sender: MailAddress = "pvwtasks@localhost"
    to: list[MailAddress] = field(default_factory=list)
    subject_prefix: str = "[pvwtasks]"
    on_unchanged: bool = True
    on_success: bool = False
    sendmail: str = "/usr/sbin/sendmail"
    timeout: Positive = 30.0
    log_tail_lines: NonNegativeInt = 40


class FleetHost(Frozen):
    """``[fleet.hosts.NAME]``: one host of the fleet, as the front reaches its own Apache."""

    url: Annotated[str, _Shape(r"https?://[^/\s\"'#?]+", "the host's Apache like 'http://10.0.0.11:80'", True)] = ""


class Fleet(Frozen):
    """``[fleet]``: on the front host only, the hosts its Apache balances (``doit render_front``)."""

    site_name: str = "pvw-front.conf"  # the front's site in [web] sites_dir
    health_interval: PositiveInt = 2  # seconds between mod_proxy_hcheck probes of each host
    health_fails: PositiveInt = 1  # failed probes before a host leaves the balancer
    health_passes: PositiveInt = 1  # passed probes before it comes back
    hosts: dict[str, FleetHost] = field(default_factory=dict)  # [fleet.hosts.NAME] tables

    @property
    def front(self) -> bool:
        return bool(self.hosts)


_SECTIONS: dict[str, type] = {
    "deploy": Deploy,
    "source": Source,
    "web": Web,
    "launcher": Launcher,
    "logrotate": Logrotate,
    "cron": Cron,
    "notify": Notify,
    "apps": Apps,
    "fleet": Fleet,
}
# TOML key -> dataclass field, where a TOML name is a Python keyword.
_RENAMED = {("notify", "from"): "sender"}


class Settings(Frozen):
    """The whole validated configuration of one deployment."""

    path: Path
    deploy: Deploy
    source: Source
    web: Web
    launcher: Launcher
    logrotate: Logrotate
    cron: Cron
    notify: Notify
    apps: Apps = field(default_factory=Apps)
    fleet: Fleet = field(default_factory=Fleet)
    slot: str = "a"  # the launcher slot these settings describe (see for_slot)
    base: "Settings | None" = field(default=None, repr=False, compare=False)  # slot a's, for a slot-b copy

    @property
    def front_only(self) -> bool:
        """A fleet front's config: hosts to balance ([fleet] hosts) and no release of its own ([source])."""
        return self.fleet.front and not (self.source.url or self.source.listing)

    @functools.cached_property  # read dozens of times per run; the settings never change
    def layout(self) -> Layout:
        return Layout(self.deploy.root, self.slot)

    def for_slot(self, slot: str) -> "Settings":
        """These settings for launcher slot ``a`` (the configured port and range) or ``b`` (the second ones).

        Slot ``b`` uses ``[launcher] second_port`` and ``second_port_range`` as
        its ``port`` and ``port_range``, and the slot-b files of the layout.
        """
        base = self if self.slot == "a" or self.base is None else self.base
        if slot == "a":
            return base
        cfg = base.launcher
        return dataclasses.replace(base, slot="b", base=base, launcher=dataclasses.replace(
            cfg, port=cfg.slot_b_port, port_range=cfg.slot_b_range))

    def section(self, name: str) -> dict:
        """Return one section as plain data, for ``config_changed``."""
        return _plain(getattr(self, name))


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --- loading -----------------------------------------------------------------------------------

def config_path(explicit: str | None = None) -> Path:
    """Return the config file to use: ``explicit``, then ``$PVW_CONFIG``, then the default."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG)
    return Path(chosen).expanduser().resolve()


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (set {CONFIG_ENV} or config=PATH; "
                          f"`python -m pvwtasks.config --example` prints a documented one)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def load(path: Path) -> Settings:
    """Read and validate the TOML file at ``path``.

    Raises ConfigError with a one-line message naming the file and the key.
    Touches nothing on disk.
    """
    return parse(_read_toml(path), path)


def parse(raw: dict, path: Path) -> Settings:
    """Validate the already-parsed TOML ``raw`` that came from ``path``."""
    for name in raw:
        if name not in _SECTIONS:
            raise ConfigError(f"{path}: [{name}]: unknown section{_suggest(name, _SECTIONS)}")
        if not isinstance(raw[name], dict):
            raise ConfigError(f"{path}: {name}: must be a [{name}] table")
    sections = {name: _build(cls, path, name, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    settings = Settings(path=path, **sections)
    _check_together(settings)
    return settings


def salvage(path: Path) -> Settings | None:
    """What can still be read of a config that does not load, for ``stop_launcher`` and ``status``.

    Each section that is valid on its own is kept; a broken one falls back to
    its defaults (``[deploy]`` to just its ``root``).  None when the file is
    not TOML or ``[deploy] root`` cannot be read.  Never raises.
    """
    try:
        raw = _read_toml(path)
    except ConfigError:
        return None
    sections = {}
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        table = table if isinstance(table, dict) else {}
        try:
            sections[name] = _build(cls, path, name, table)
        except ConfigError:
            try:
                fallback = {"root": table["root"]} if name == "deploy" and "root" in table else {}
                sections[name] = _build(cls, path, name, fallback)
            except ConfigError:
                return None
    return Settings(path=path, **sections)


def load_notify(path: Path) -> Notify | None:
    """Best effort: the ``[notify]`` section of ``path`` alone, or None if it is not usable.

    Lets a failure mail go out when the rest of the file is invalid.
    Never raises; touches nothing on disk.
    """
    try:
        raw = _read_toml(path).get("notify", {})
        cfg = _build(Notify, path, "notify", raw) if isinstance(raw, dict) else None
    except ConfigError:
        return None
    return cfg if cfg is not None and cfg.method != "none" and cfg.to else None


def _build(cls: type, path: Path, table: str, values: dict):
    """One dataclass from a TOML table; the field types say how each value is checked."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = {name: f.type for name, f in fields.items()}  # objects, not strings: see the imports
    toml_names = {next((t for (s, t), f in _RENAMED.items() if s == table and f == n), n) for n in fields}
    kwargs = {}
    # A field with metadata {"rest": True} takes the keys no other field names whose values are tables
    # (``[apps.NAME]`` beside the ``[apps]`` keys).
    rest = next((n for n, f in fields.items() if f.metadata.get("rest")), None)
    extra = {k: v for k, v in values.items() if rest and k not in fields and isinstance(v, dict)}
    if extra:
        values = {k: v for k, v in values.items() if k not in extra}
        if rest in values:
            raise ConfigError(f"{_Key(path, table, rest)}: reserved name (use [{table}.NAME] tables)")
        values[rest] = extra
    for key, value in values.items():
        name = _RENAMED.get((table, key), key)
        if name not in fields:
            raise ConfigError(f"{_Key(path, table, key)}: unknown key{_suggest(key, toml_names)}")
        where = _Key(path, table, "" if name == rest else key)  # [apps.NAME], not [apps.apps.NAME]
        kwargs[name] = _coerce(value, hints[name], where)
    for name, spec in fields.items():
        if name not in kwargs and spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_Key(path, table, name)}: missing required key")
    return cls(**kwargs)


def _coerce(value, hint, where: _Key):
    """Check ``value`` against the type ``hint`` and its rules; return it converted."""
    rules: tuple = ()
    if typing.get_origin(hint) is Annotated:
        hint, *rules = typing.get_args(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:  # optional: "" means not set
        if value == "":
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _coerce(value, hint, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected {_one_of(args)}, got {value!r}")
    elif origin is list:
        (item,) = args
        plain = typing.get_args(item)[0] if typing.get_origin(item) is Annotated else item
        if not isinstance(value, list) or not all(_is_type(v, plain) for v in value):
            raise ConfigError(f"{where}: expected a list of {plain.__name__}, got {value!r}")
        value = [_coerce(v, item, where) for v in value]
    elif origin is dict:  # a table of named sub-tables, e.g. [launcher.apps.NAME]
        table = f"{where.table}.{where.key}" if where.key else where.table
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"{where}: must be a table of [{table}.NAME] tables")
        value = {name: _build(args[1], where.path, f"{table}.{name}", spec) for name, spec in value.items()}
    elif hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a path, got {type(value).__name__} {value!r}")
        value = _resolve_path(value, where.path.parent)
    elif not _is_type(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    elif hint is float:
        value = float(value)
    for rule in rules:
        value = rule(value, where)
    return value


def _one_of(choices) -> str:
    quoted = [f"'{c}'" for c in choices]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _is_type(value, hint) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _resolve_path(value: str, base: Path) -> Path:
    return (base / Path(value).expanduser()).resolve()


def _suggest(word: str, choices) -> str:
    import difflib  # only for a mistake

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_together(s: Settings) -> None:
    """Rules that tie several keys together (single keys are checked by their types)."""
    p = s.path
    src = s.source
    if not s.front_only and bool(src.url) == bool(src.listing):  # a fleet front serves no release of its own
        raise ConfigError(f"{p}: [source] url: set either url, or listing with pattern (exactly one)")
    if src.pattern and not src.listing:
        raise ConfigError(f"{p}: [source] pattern: only used together with [source] listing")
    if src.listing and not src.pattern:
        raise ConfigError(f"{p}: [source] pattern: missing required key (needed with listing)")
    first, last = (s.launcher.port_range + [0, 0])[:2]
    if len(s.launcher.port_range) != 2 or first > last:
        raise ConfigError(f"{p}: [launcher] port_range: expected [first, last] ports in order, "
                          f"got {s.launcher.port_range}")
    b_first, b_last = (s.launcher.slot_b_range + [0, 0])[:2]
    if len(s.launcher.slot_b_range) != 2 or b_first > b_last or b_last > 65535:
        raise ConfigError(f"{p}: [launcher] second_port_range: expected [first, last] ports in order, "
                          f"got {s.launcher.slot_b_range}")
    if b_first <= last and first <= b_last:
        raise ConfigError(f"{p}: [launcher] second_port_range: {s.launcher.slot_b_range} overlaps port_range "
                          f"{s.launcher.port_range}; the two launcher slots need their own session ports")
    if s.launcher.slot_b_port == s.launcher.port or s.launcher.slot_b_port > 65535:
        raise ConfigError(f"{p}: [launcher] second_port: {s.launcher.slot_b_port} must differ from port "
                          f"and be at most 65535")
    for name, app in s.launcher.apps.items():
        if bool(app.script) == bool(app.module):
            raise ConfigError(f"{p}: [launcher.apps.{name}] script: set either script or module (exactly one)")
    for name, app in s.apps.apps.items():
        if sum(map(bool, (app.module, app.trame_app, app.script))) != 1:
            raise ConfigError(f"{p}: [apps.{name}] module: set exactly one of module, trame_app or script")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name == "index":
            raise ConfigError(f"{p}: [apps.{name}]: a trame app's name is letters, digits and _ (not 'index'); "
                              "it names its page www/<name>.html")
        if name in s.launcher.apps:
            raise ConfigError(f"{p}: [apps.{name}]: also in [launcher.apps]; one app, one name")
    if s.apps.apps and not (s.apps.requirements or any(a.requirements for a in s.apps.apps.values())):
        raise ConfigError(f"{p}: [apps] requirements: trame apps need requirements (trame, trame-vtk, ... pinned)")
    named = {**s.launcher.apps, **s.apps.apps}
    if s.launcher.apps and s.launcher.health_app and s.launcher.health_app not in named:
        raise ConfigError(f"{p}: [launcher] health_app: '{s.launcher.health_app}' is not in [launcher.apps]")
    if s.web.node_name and not s.web.public_url:
        raise ConfigError(f"{p}: [web] public_url: needed with node_name (the fleet front's URL users reach)")
    for name in s.fleet.hosts:
        if not re.fullmatch(NODE_NAME, name):
            raise ConfigError(f"{p}: [fleet.hosts.{name}]: a host's name is letters, digits, - and _ "
                              "(it is its node_name and its /node/<name>/ path on the front)")
    if bool(s.web.tls_certificate) != bool(s.web.tls_key):
        raise ConfigError(f"{p}: [web] tls_key: set both tls_certificate and tls_key, or neither")
    if s.notify.method != "none" and not s.notify.to:
        raise ConfigError(f"{p}: [notify] to: needs at least one address when method is '{s.notify.method}'")
    if s.notify.password_env and s.notify.password_file:
        raise ConfigError(f"{p}: [notify] password_file: set password_env or password_file, not both")
    if s.notify.user and not (s.notify.password_env or s.notify.password_file):
        raise ConfigError(f"{p}: [notify] user: needs password_env or password_file (never a password in the TOML)")


def current_user() -> str:
    """Name of the user running pvwtasks."""
    return pwd.getpwuid(os.getuid()).pw_name


def current_group() -> str:
    """Name of the primary group of the user running pvwtasks."""
    return grp.getgrgid(os.getgid()).gr_name


def example_text() -> str:
    """The documented config (``config/pvw.toml``) as text.

    pyproject.toml ships that one file in the wheel as
    ``pvwtasks/example/pvw.toml``; in a source tree it is read in place.
    """
    from importlib import resources

    shipped = resources.files(__package__).joinpath("example", "pvw.toml")
    return (shipped if shipped.is_file() else DEFAULT_CONFIG).read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m pvwtasks.config``: print the documented config (``--example``) or check one."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pvwtasks.config",
                                     description="Print the documented example config, or check a config file.")
    parser.add_argument("--example", action="store_true",
                        help="print the documented config, to copy to e.g. /etc/pvwtasks.toml and edit")
    parser.add_argument("config", nargs="?", help=f"config file to check (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})")
    args = parser.parse_args(argv)
    if args.example:
        sys.stdout.write(example_text())
        return 0
    path = config_path(args.config)
    try:
        load(path)
    except ConfigError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(f"{path}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
