"""The tests' TOML writer: what it writes, tomllib reads back unchanged."""

from __future__ import annotations

import tomllib

import pytest

from support import tomlfile

TRICKY = {
    "deploy": {"root": "/srv/50%off/pvw", "keep": 2, "require_programs": False},
    "source": {"url": 'quote " back\\slash\ttab\nnewline \x7f del \u00e9 \U0001f600', "backoff": 1.5,
               "timeout": float("inf")},
    "launcher": {
        "port_range": [9001, 9003],
        "python_flags": ["-dr"],
        "apps": {"my app": {"script": "a.py", "args": ["--x", "1"]}, "b": {"script": "b.py"}},
    },
    "empty": {},
}


def test_what_dumps_writes_reads_back_the_same():
    assert tomllib.loads(tomlfile.dumps(TRICKY)) == TRICKY


def test_update_merges_into_the_file_and_keeps_the_rest(tmp_path):
    path = tmp_path / "pvw.toml"
    path.write_text(tomlfile.dumps(TRICKY))
    tomlfile.update(path, {"deploy": {"keep": 3}, "cron": {"update": "30 2 * * *"}})
    data = tomllib.loads(path.read_text())
    assert data["deploy"] == {**TRICKY["deploy"], "keep": 3}
    assert data["cron"] == {"update": "30 2 * * *"}
    assert data["launcher"] == TRICKY["launcher"]


def test_a_value_toml_cannot_hold_is_refused():
    with pytest.raises(TypeError, match="NoneType"):
        tomlfile.dumps({"web": {"tls_key": None}})
