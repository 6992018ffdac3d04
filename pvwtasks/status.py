"""Show the deployment's state (placeholder)."""

from __future__ import annotations

import json

from . import install
from .config import Settings


def show(settings: Settings, as_json: bool = False) -> None:
    live = install.live_release(settings.layout)
    data = {"live": live.to_json() if live else None}
    print(json.dumps(data, indent=2) if as_json else f"live: {live.name if live else 'none'}")
