"""Start, stop, find and health-check the wslink launcher (placeholder)."""

from __future__ import annotations

import logging

from .config import Settings
from .fsutil import atomic_write_text

log = logging.getLogger(__name__)


def ensure_proxy_file(settings: Settings) -> None:
    path = settings.layout.proxy_file
    if not path.exists():
        atomic_write_text(path, "", 0o660)


def proxy_file_ok(settings: Settings) -> bool:
    return settings.layout.proxy_file.exists()


def running_as_deployed(settings: Settings) -> bool:
    return False


def ensure_running(settings: Settings) -> None:
    log.warning("launcher management is not implemented yet")


def start(settings: Settings) -> None:
    log.warning("launcher management is not implemented yet")


def stop(settings: Settings) -> None:
    log.warning("launcher management is not implemented yet")


def restart(settings: Settings) -> None:
    log.warning("launcher management is not implemented yet")
