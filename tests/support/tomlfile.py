"""Edit test configs as data: read them with tomllib, change the dict, write TOML back.

Only what pvwtasks configs hold: tables, strings, ints, floats, booleans,
paths and lists of those.  Comments are not kept.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, Path)):
        return _string(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _table(data: dict, path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append(f"[{'.'.join(_key(part) for part in path)}]")
    lines.extend(f"{_key(key)} = {_value(value)}" for key, value in scalars.items())
    for key, table in tables.items():
        _table(table, [*path, key], lines)


def dumps(data: dict) -> str:
    """``data`` (section -> keys, tables nested as dicts) as TOML text."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines) + "\n"


def _merge(into: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def update(path: Path, changes: dict) -> dict:
    """Merge ``changes`` (e.g. ``{"web": {"server_name": "x"}}``) into the TOML file ``path``; the new data."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    _merge(data, changes)
    path.write_text(dumps(data), encoding="utf-8")
    return data
