"""Session-wide pieces for trame tests: one pip cache, one demo venv (the cone viewer) and its client.

pytest would build a session fixture once per module that imports it, so the
expensive demo venv is cached here by hand, keyed on the session's base temp
folder: the suite downloads the wheels and builds the venv once.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pvwtasks import appvenv, demo_apps, webclient
from pvwtasks.layout import Layout

HOST_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
_built: dict[Path, "DemoSite"] = {}


@dataclass
class DemoSite:
    """A deployment root holding the demo venv and the demo app's page."""

    layout: Layout
    venv: appvenv.VenvResult
    client: webclient.ClientResult
    venv_seconds: float  # wall time of ensure_venv, cold
    client_seconds: float  # wall time of ensure_client + write_app_page, cold
    python: list[str]


def pip_cache_dir(factory: pytest.TempPathFactory) -> Path:
    folder = factory.getbasetemp() / "pip-cache"
    folder.mkdir(exist_ok=True)
    return folder


def host_interpreter_path() -> str:
    """A PATH where ``python<host minor>`` is this test run's own interpreter (a venv's bin has it)."""
    return str(Path(sys.executable).parent)


def demo_site(factory: pytest.TempPathFactory) -> DemoSite:
    """The cone viewer's venv (host minor, real venv, vtk allowed) and client, built once per session."""
    base = factory.getbasetemp()
    if base in _built:
        return _built[base]
    layout = Layout(base / "demo-root")
    spec = appvenv.VenvSpec(HOST_MINOR, demo_apps.cone_viewer_requirements(), allow_vtk=True)
    started = time.monotonic()
    venv = appvenv.ensure_venv(layout, spec, search_path=host_interpreter_path(), cache_dir=pip_cache_dir(factory))
    venv_seconds = time.monotonic() - started
    python = [venv.record.launcher_python]
    started = time.monotonic()
    client = webclient.ensure_client(layout, python, demo_apps.CONE_VIEWER_CLIENT, demo_apps.CONE_VIEWER_WWW_MODULES,
                                     venv.record.packages)
    webclient.write_app_page(layout, client, demo_apps.CONE_VIEWER_APP, python)
    site = DemoSite(layout, venv, client, venv_seconds, time.monotonic() - started, python)
    _built[base] = site
    return site


@pytest.fixture
def pip_cache(tmp_path_factory) -> Path:
    """pip's cache shared by the whole session, so a wheel is downloaded once."""
    return pip_cache_dir(tmp_path_factory)


@pytest.fixture
def demo(tmp_path_factory) -> DemoSite:
    return demo_site(tmp_path_factory)


class SubprocessAudit:
    """Counts the processes this Python starts while ``active`` (a sys.audit hook; hooks cannot be removed)."""

    def __init__(self) -> None:
        self.active = False
        self.started: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args) -> None:
        if self.active and event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork"):
            self.started.append(f"{event} {args[0] if args else ''}")

    def __enter__(self) -> "SubprocessAudit":
        self.started.clear()
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False


_audit: SubprocessAudit | None = None


def subprocess_audit() -> SubprocessAudit:
    """The one audit hook of this process (installed on first use)."""
    global _audit
    if _audit is None:
        _audit = SubprocessAudit()
    return _audit
