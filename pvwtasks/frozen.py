"""``Frozen``: the base of pvwtasks' frozen dataclasses (config sections, records), cheap to define.

``class Deploy(Frozen): ...`` makes ``Deploy`` a dataclass whose instances
cannot be changed once built, like ``@dataclass(frozen=True)``: the same
fields, defaults and default factories, ``dataclasses.fields``,
``replace`` and ``asdict``, ``==``, ``hash`` and ``repr``, and
``FrozenInstanceError`` on assigning or deleting an attribute.  The
difference is the price of the definition: ``@dataclass(frozen=True)``
writes and compiles six methods per class on every start (about 0.7 ms a
class; a no-op ``doit update`` imports three dozen).  Here dataclasses
only collects the fields, and the methods below serve every subclass.
Lowest layer: imports only the standard library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, FrozenInstanceError
from typing import ClassVar, dataclass_transform


@dataclass_transform(eq_default=True, frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
class Frozen:
    """Base class: each subclass is a frozen dataclass whose methods are shared, not generated."""

    # Per subclass, from its fields: (name, default, default factory) in __init__ order, and the rest.
    _init_fields: ClassVar[tuple[tuple[str, object, object], ...]] = ()
    _init_names: ClassVar[frozenset[str]] = frozenset()
    _other_fields: ClassVar[tuple[tuple[str, object, object], ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("__doc__"):
            cls.__doc__ = cls.__name__  # dataclass would otherwise build one from inspect.signature
        dataclasses.dataclass(cls, init=False, repr=False, eq=False)  # in place: collects the fields
        fields = dataclasses.fields(cls)
        cls._init_fields = tuple((f.name, f.default, f.default_factory) for f in fields if f.init)
        cls._init_names = frozenset(f.name for f in fields if f.init)
        cls._other_fields = tuple((f.name, f.default, f.default_factory) for f in fields if not f.init)
        cls._compared = tuple(f.name for f in fields if f.compare)
        cls._shown = tuple(f.name for f in fields if f.repr)

    def __init__(self, *args, **kwargs) -> None:
        name = self.__class__.__qualname__
        if len(args) > len(self._init_fields):
            raise TypeError(f"{name}() takes {len(self._init_fields)} positional arguments but {len(args)} were given")
        values = dict(zip((field[0] for field in self._init_fields), args))
        for key, value in kwargs.items():
            if key in values:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            if key not in self._init_names:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            values[key] = value
        missing = [field[0] for field in self._init_fields
                   if field[0] not in values and field[1] is MISSING and field[2] is MISSING]
        if missing:
            raise TypeError(f"{name}() missing required argument(s): {', '.join(map(repr, missing))}")
        for key, default, factory in self._init_fields + self._other_fields:
            if key in values:
                value = values[key]
            elif default is not MISSING:
                value = default
            elif factory is not MISSING:
                value = factory()
            else:
                continue  # a field left out of __init__ without a default: unset, as with dataclasses
            object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in self._compared)

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)
        return f"{self.__class__.__qualname__}({shown})"
