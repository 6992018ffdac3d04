"""Load and validate the pvwtasks TOML configuration.

Every section is a frozen dataclass; the dataclass fields *are* the schema,
so an unknown section, a misspelled key or a wrong type is reported as one
line naming the file and the key.  Relative paths resolve against the
folder of the config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import grp
import os
import pwd
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .layout import Layout

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "pvw.toml"
CONFIG_ENV = "PVW_CONFIG"

# Keys whose value is a path (or a URL that may be a plain path).
_PATH_KEYS = {"root", "tls_certificate", "tls_key", "password_file", "ca_file", "sites_dir", "enabled_dir"}
_URL_KEYS = {"url", "listing", "checksums", "docs_url", "data_url"}


@dataclass(frozen=True)
class Deploy:
    root: Path
    keep: int = 2
    require_programs: bool = True


@dataclass(frozen=True)
class Source:
    url: str = ""
    listing: str = ""
    pattern: str = ""
    sha256: str = ""
    checksums: str = ""
    docs_url: str = ""
    data_url: str = ""
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 1.0
    ca_file: str = ""  # PEM bundle trusted for https instead of the system's CAs
    allow_http_redirect: bool = False  # follow https -> http redirects and listing entries
    allow_other_hosts: bool = False  # listing entries on other hosts or outside the listing's folder
    transfer_deadline: float = 0.0  # seconds one transfer may take in all (0: no deadline)
    min_speed: int = 1024  # bytes/s, averaged over each `timeout` seconds (0: no minimum)
    max_size_mib: int = 16384  # largest archive accepted, when the server announces no size
    max_listing_mib: int = 32  # largest listing or checksum manifest read


@dataclass(frozen=True)
class Web:
    server_name: str = "localhost"
    server_admin: str = "webmaster@localhost"
    http_port: int = 80
    https_port: int = 443
    tls_certificate: str = ""
    tls_key: str = ""
    proxy_timeout: int = 3600
    user: str = "www-data"
    site_name: str = "pvw-vhost.conf"
    sites_dir: str = "/etc/apache2/sites-available"
    enabled_dir: str = "/etc/apache2/sites-enabled"
    apachectl: str = "apache2ctl"

    @property
    def tls(self) -> bool:
        return bool(self.tls_certificate and self.tls_key)


@dataclass(frozen=True)
class App:
    script: str
    args: list[str] = field(
        default_factory=lambda: ["--port", "${port}", "--data-dir", "${data}", "-f", "--authKey", "${secret}"]
    )
    ready_line: str = "Starting factory"


def _seed_apps() -> dict[str, App]:
    return {
        "pipeline": App("paraview/web/pv_web_visualizer.py"),
        "visualizer": App("paraview/web/pv_web_visualizer.py"),
        "loader": App("paraview/web/pv_web_file_loader.py"),
        "data_prober": App("paraview/web/pv_web_data_prober.py"),
    }


@dataclass(frozen=True)
class Launcher:
    host: str = "localhost"
    port: int = 8081
    endpoint: str = "paraview"
    timeout: int = 25
    port_range: list[int] = field(default_factory=lambda: [9104, 9204])
    display: str = ""
    user: str = ""
    proxy_group: str = "mappingfileusers"
    python_flags: list[str] = field(default_factory=lambda: ["-dr"])
    stop_grace: float = 10.0
    start_timeout: float = 30.0
    health_app: str = "visualizer"
    apps: dict[str, App] = field(default_factory=_seed_apps)


@dataclass(frozen=True)
class Logrotate:
    size: str = "5M"
    rotate: int = 10
    compress: bool = True
    create_mode: str = "0660"
    owner: str = ""
    group: str = ""


@dataclass(frozen=True)
class Cron:
    update: str = "0 4 * * 1"
    logrotate: str = "55 3 * * 1"
    crontab: str = "crontab"


@dataclass(frozen=True)
class Notify:
    method: str = "none"
    host: str = "localhost"
    port: int = 25
    security: str = "none"
    user: str = ""
    password_env: str = ""
    password_file: str = ""
    ca_file: str = ""
    sender: str = "pvwtasks@localhost"
    to: list[str] = field(default_factory=list)
    subject_prefix: str = "[pvwtasks]"
    on_unchanged: bool = True
    on_success: bool = False
    sendmail: str = "/usr/sbin/sendmail"
    timeout: float = 30.0
    log_tail_lines: int = 40


_SECTIONS: dict[str, type] = {
    "deploy": Deploy,
    "source": Source,
    "web": Web,
    "launcher": Launcher,
    "logrotate": Logrotate,
    "cron": Cron,
    "notify": Notify,
}
# TOML key -> dataclass field, where a TOML name is a Python keyword.
_RENAMED = {("notify", "from"): "sender"}


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration of one deployment."""

    path: Path
    deploy: Deploy
    source: Source
    web: Web
    launcher: Launcher
    logrotate: Logrotate
    cron: Cron
    notify: Notify

    @property
    def layout(self) -> Layout:
        return Layout(self.deploy.root)

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


def config_path(explicit: str | None = None) -> Path:
    """Return the config file to use: ``explicit``, then ``$PVW_CONFIG``, then the default."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG)
    return Path(chosen).expanduser().resolve()


def load(path: Path) -> Settings:
    """Read and validate the TOML file at ``path``.

    Raises ConfigError with a one-line message naming the file and the key.
    Touches nothing on disk.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (set {CONFIG_ENV} or config=PATH)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return parse(raw, path)


def parse(raw: dict, path: Path) -> Settings:
    """Validate the already-parsed TOML ``raw`` that came from ``path``."""
    for name in raw:
        if name not in _SECTIONS:
            raise ConfigError(f"{path}: [{name}]: unknown section{_suggest(name, _SECTIONS)}")
        if not isinstance(raw[name], dict):
            raise ConfigError(f"{path}: {name}: must be a [{name}] table")
    base = path.parent
    sections = {name: _build(cls, name, raw.get(name, {}), path, base) for name, cls in _SECTIONS.items()}
    settings = Settings(path=path, **sections)
    _check_semantics(settings)
    return settings


def load_notify(path: Path) -> Notify | None:
    """Best effort: the ``[notify]`` section of ``path`` alone, or None if it is not usable.

    Lets a failure mail go out when the rest of the file is invalid.
    Never raises; touches nothing on disk.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8")).get("notify", {})
        cfg = _build(Notify, "notify", raw, path, path.parent) if isinstance(raw, dict) else None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):
        return None
    if cfg is None or cfg.method not in ("smtp", "sendmail") or cfg.security not in ("none", "starttls", "tls"):
        return None
    return cfg if cfg.to else None


def _build(cls: type, section: str, values: dict, path: Path, base: Path):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    toml_names = {next((t for (s, t), f in _RENAMED.items() if s == section and f == n), n) for n in fields}
    kwargs = {}
    for key, value in values.items():
        name = _RENAMED.get((section, key), key)
        if name not in fields:
            raise ConfigError(f"{path}: [{section}] {key}: unknown key{_suggest(key, toml_names)}")
        where = f"{path}: [{section}] {key}"
        if section == "launcher" and name == "apps":
            kwargs[name] = _build_apps(value, path)
            continue
        kwargs[name] = _coerce(value, hints[name], where)
        if key in _PATH_KEYS and kwargs[name]:
            kwargs[name] = _resolve_path(str(kwargs[name]), base)
        elif key in _URL_KEYS and kwargs[name]:
            kwargs[name] = _resolve_url(kwargs[name], base, where)
    for name, spec in fields.items():
        if name not in kwargs and spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: [{section}] {name}: missing required key")
    return cls(**kwargs)


def _build_apps(value, path: Path) -> dict[str, App]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [launcher] apps: must be a table of [launcher.apps.NAME] tables")
    hints = typing.get_type_hints(App)
    known = {f.name for f in dataclasses.fields(App)}
    apps = {}
    for name, spec in value.items():
        where = f"{path}: [launcher.apps.{name}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: must be a table with script, args and ready_line")
        for key in spec:
            if key not in known:
                raise ConfigError(f"{where} {key}: unknown key{_suggest(key, known)}")
        if "script" not in spec:
            raise ConfigError(f"{where} script: missing required key")
        apps[name] = App(**{k: _coerce(v, hints[k], f"{where} {k}") for k, v in spec.items()})
        if not apps[name].ready_line:
            raise ConfigError(f"{where} ready_line: must not be empty (the launcher answers 503 without one)")
    return apps


def _coerce(value, hint, where: str):
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(_is_type(v, item) for v in value):
            raise ConfigError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return list(value)
    if hint is Path:
        hint = str
    if not _is_type(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if hint is float else value


def _is_type(value, hint) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _resolve_path(value: str, base: Path) -> Path:
    return (base / Path(value).expanduser()).resolve()


def _resolve_url(value: str, base: Path, where: str) -> str:
    """Keep http(s)/file URLs; turn a plain path into an absolute one."""
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("http", "https", "file"):
        return value
    if scheme:
        raise ConfigError(f"{where}: unsupported URL scheme '{scheme}' (use http, https, file or a path)")
    return str(_resolve_path(value, base))


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_semantics(s: Settings) -> None:
    p = s.path
    src = s.source
    if bool(src.url) == bool(src.listing):
        raise ConfigError(f"{p}: [source] url: set either url, or listing with pattern (exactly one)")
    if src.pattern and not src.listing:
        raise ConfigError(f"{p}: [source] pattern: only used together with [source] listing")
    if src.listing and not src.pattern:
        raise ConfigError(f"{p}: [source] pattern: missing required key (needed with listing)")
    if src.pattern:
        try:
            re.compile(src.pattern)
        except re.error as err:
            raise ConfigError(f"{p}: [source] pattern: not a valid regex: {err}") from None
    if src.sha256 and (len(src.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in src.sha256)):
        raise ConfigError(f"{p}: [source] sha256: expected 64 hex digits")
    if src.retries < 0 or src.timeout <= 0:
        raise ConfigError(f"{p}: [source] timeout/retries: must be positive")
    if s.deploy.keep < 1:
        raise ConfigError(f"{p}: [deploy] keep: must be at least 1")
    lo_hi = s.launcher.port_range
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] < 65536:
        raise ConfigError(f"{p}: [launcher] port_range: expected [first, last] ports")
    if not 0 < s.launcher.port < 65536:
        raise ConfigError(f"{p}: [launcher] port: expected a port number")
    if s.launcher.health_app and s.launcher.health_app not in s.launcher.apps:
        raise ConfigError(f"{p}: [launcher] health_app: '{s.launcher.health_app}' is not in [launcher.apps]")
    if bool(s.web.tls_certificate) != bool(s.web.tls_key):
        raise ConfigError(f"{p}: [web] tls_key: set both tls_certificate and tls_key, or neither")
    if s.notify.method not in ("none", "smtp", "sendmail"):
        raise ConfigError(f"{p}: [notify] method: expected 'none', 'smtp' or 'sendmail'")
    if s.notify.security not in ("none", "starttls", "tls"):
        raise ConfigError(f"{p}: [notify] security: expected 'none', 'starttls' or 'tls'")
    if s.notify.method != "none" and not s.notify.to:
        raise ConfigError(f"{p}: [notify] to: needs at least one address when method is '{s.notify.method}'")
    if s.notify.password_env and s.notify.password_file:
        raise ConfigError(f"{p}: [notify] password_file: set password_env or password_file, not both")
    if s.notify.user and not (s.notify.password_env or s.notify.password_file):
        raise ConfigError(f"{p}: [notify] user: needs password_env or password_file (never a password in the TOML)")
    try:
        int(s.logrotate.create_mode, 8)
    except ValueError:
        raise ConfigError(f"{p}: [logrotate] create_mode: expected an octal mode like '0660'") from None
    for key in ("update", "logrotate"):
        if len(getattr(s.cron, key).split()) != 5:
            raise ConfigError(f"{p}: [cron] {key}: expected 5 schedule fields like '0 4 * * 1'")


def current_user() -> str:
    """Name of the user running pvwtasks."""
    return pwd.getpwuid(os.getuid()).pw_name


def current_group() -> str:
    """Name of the primary group of the user running pvwtasks."""
    return grp.getgrgid(os.getgid()).gr_name
