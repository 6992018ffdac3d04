"""``Frozen``: the base of pvwtasks' frozen dataclasses (config sections, records), cheap to define.

``class Deploy(Frozen): ...`` makes ``Deploy`` a dataclass whose instances
cannot be changed once built, like ``@dataclass(frozen=True)``: same
fields, defaults, ``dataclasses.fields``/``replace``/``asdict``, ``==``,
``hash`` and ``repr``, and ``FrozenInstanceError`` on assigning or deleting
an attribute.  The difference is the price of the definition:
``@dataclass(frozen=True)`` compiles six generated methods per class, on
every start (about 0.7 ms a class, 20 ms for the three dozen a no-op
``doit update`` imports); here only ``__init__`` is generated, and
equality, hashing, repr and immutability are the shared methods below.
Lowest layer: imports only the standard library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError
from typing import ClassVar, dataclass_transform


@dataclass_transform(eq_default=True, frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
class Frozen:
    """Base class: each subclass is a dataclass with only its ``__init__`` generated; instances are read-only."""

    _field_names: ClassVar[frozenset[str]] = frozenset()
    _compared: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "__doc__" not in cls.__dict__ or cls.__doc__ is None:
            cls.__doc__ = cls.__name__  # else dataclass computes a signature for it (inspect, slow)
        dataclasses.dataclass(cls, repr=False, eq=False)  # in place; eq, hash, repr come from Frozen
        fields = dataclasses.fields(cls)
        cls._field_names = frozenset(f.name for f in fields)
        cls._compared = tuple(f.name for f in fields if f.compare)
        cls._shown = tuple(f.name for f in fields if f.repr)

    def __setattr__(self, name: str, value) -> None:
        # The generated __init__ sets each field once; nothing else may.
        if name in self.__dict__ or name not in self._field_names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

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
