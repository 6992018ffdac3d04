"""``Frozen`` behaves as ``@dataclass(frozen=True)`` does, for the classes pvwtasks builds on it."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import field
from pathlib import Path

import pytest

from pvwtasks import config
from pvwtasks.frozen import Frozen
from pvwtasks.layout import HashRecord, LastRun, Layout, Record


class Point(Frozen):
    """A point, with a list and a field left out of ==, hash and repr."""

    x: int
    y: int = 0
    tags: list = field(default_factory=list)
    note: str = field(default="", compare=False, repr=False)


# The same fields, made by @dataclass(frozen=True), to compare with.
Reference = dataclasses.make_dataclass("Point", [
    ("x", int), ("y", int, 0), ("tags", list, field(default_factory=list)),
    ("note", str, field(default="", compare=False, repr=False))], frozen=True)


def test_fields_defaults_and_dataclass_functions_are_those_of_a_dataclass():
    assert dataclasses.is_dataclass(Point)
    assert [f.name for f in dataclasses.fields(Point)] == [f.name for f in dataclasses.fields(Reference)]
    point = Point(1, tags=["a"])
    assert (point.x, point.y, point.tags, point.note) == (1, 0, ["a"], "")
    assert Point(1).tags is not Point(1).tags  # a fresh default per instance
    assert dataclasses.asdict(point) == dataclasses.asdict(Reference(1, tags=["a"]))
    moved = dataclasses.replace(point, y=5)
    assert moved == Point(1, 5, ["a"]) and point.y == 0
    assert Point(1, 2, ["t"], "n") == Point(x=1, y=2, tags=["t"], note="n")
    for bad in (lambda: Point(), lambda: Point(1, z=2), lambda: Point(1, x=1), lambda: Point(1, 2, [], "n", 5)):
        with pytest.raises(TypeError):  # missing, unknown, twice, too many: as a generated __init__ says
            bad()
    assert LastRun.from_dict({"started": 1.0}) is None  # a record missing a required key is no record


def test_equality_hash_and_repr_match_a_frozen_dataclass():
    assert Point(1, 2) == Point(1, 2, note="ignored") and Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != Reference(1, 2)  # another class is never equal, as with dataclasses
    assert hash(Point(1, 2, ())) == hash(Reference(1, 2, ())) == hash(Point(1, 2, (), note="x"))
    with pytest.raises(TypeError):
        hash(Point(1, tags=[]))  # a list field is unhashable, as in a frozen dataclass
    assert repr(Point(1, 2, ["a"], "n")) == repr(Reference(1, 2, ["a"], "n")) == "Point(x=1, y=2, tags=['a'])"
    assert {Layout(Path("/r")): 1}[Layout(Path("/r"))] == 1


def test_instances_cannot_change():
    point = Point(1)
    for change in (lambda: setattr(point, "x", 2), lambda: setattr(point, "other", 2),
                   lambda: delattr(point, "y")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            change()
    assert (point.x, point.y, vars(point).get("other")) == (1, 0, None)
    assert copy.deepcopy(point) == point and copy.copy(point) == point


def test_pvwtasks_classes_keep_their_records_and_checks(tmp_path):
    assert HashRecord.file_mode == 0o644 and "file_mode" not in {f.name for f in dataclasses.fields(HashRecord)}
    run = LastRun(started=1.0, finished=2.0, result="ok")
    run.save(tmp_path / "last-run.json")
    assert LastRun.load(tmp_path / "last-run.json") == run and issubclass(LastRun, Record)
    settings = config.parse({"deploy": {"root": "r"}, "source": {"url": "https://example.org/a.tar.gz"}},
                            tmp_path / "pvw.toml")
    assert settings.deploy.root == tmp_path / "r" and settings.layout == Layout(tmp_path / "r")
    assert settings.section("launcher")["port"] == 8081
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.web.http_port = 8080
