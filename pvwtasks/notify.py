"""Mail the result of a run (placeholder)."""

from __future__ import annotations

import logging

from .config import Settings
from .runlog import RunRecord

log = logging.getLogger(__name__)


def run_finished(settings: Settings, record: RunRecord) -> None:
    log.info("notifications are not implemented yet")


def run_failed(settings: Settings, record: RunRecord) -> None:
    log.info("notifications are not implemented yet")


def send_test(settings: Settings) -> None:
    log.info("notifications are not implemented yet")
