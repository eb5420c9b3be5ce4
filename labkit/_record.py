"""Frozen value records without dataclasses: labkit-runtime's start path cannot afford them.

``import dataclasses`` pulls in inspect (and with it ast, dis, tokenize, linecache: ~4.7 ms
measured at every `labkit-runtime run`).  The few value types on that path (NamespaceSpec,
IdMap, cgroups' Resources/Stats/IoLimit/Pressure) subclass Frozen instead and keep what a
``@dataclass(frozen=True, slots=True)`` gave their users:

* keyword or positional construction in field order, with the same defaults (each class
  writes its own typed ``__init__``, so mypy still checks callers);
* ``__slots__`` naming the fields in order (the shim reads ``s.__slots__``);
* frozen: setting or deleting an attribute raises FrozenInstanceError (an AttributeError,
  like dataclasses.FrozenInstanceError);
* ``__eq__`` (same class, equal fields), ``__hash__`` (of the field tuple: unhashable if a
  field is, like a frozen dataclass holding a dict), ``__repr__`` "Cls(a=1, b=None)",
  ``__match_args__``;
* ``replace(**changes)`` for dataclasses.replace and ``_asdict()`` for dataclasses.asdict
  (nested records, tuples, lists and dicts converted recursively, as asdict does);
* pickle and copy (``__reduce__`` rebuilds through the constructor, so validation reruns).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: typing costs ~1.5 ms on the start path
if TYPE_CHECKING:
    from typing import Any, Self

__all__ = ["Frozen", "FrozenInstanceError"]


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record (dataclasses.FrozenInstanceError's role)."""


_set = object.__setattr__


class Frozen:
    """Base of a frozen record; a subclass sets ``__slots__`` (its fields, in order)."""

    __slots__: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _astuple(self) -> tuple[Any, ...]:
        return tuple([getattr(self, f) for f in self.__slots__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            assert isinstance(other, Frozen)
            return self._astuple() == other._astuple()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._astuple())

    def __repr__(self) -> str:
        inner = ", ".join([f"{f}={getattr(self, f)!r}" for f in self.__slots__])
        return f"{self.__class__.__qualname__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self._astuple())

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated again (dataclasses.replace)."""
        for name in changes:
            if name not in self.__slots__:
                raise TypeError(f"{self.__class__.__qualname__} has no field {name!r}")
        kwargs = {f: getattr(self, f) for f in self.__slots__}
        kwargs.update(changes)
        return self.__class__(**kwargs)

    def _asdict(self) -> dict[str, Any]:
        """Field name -> value, records nested inside converted too (dataclasses.asdict)."""
        return {f: _plain(getattr(self, f)) for f in self.__slots__}


def _plain(value: Any) -> Any:
    if isinstance(value, Frozen):
        return value._asdict()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value
