"""What every part of the control API shares: the store's interface, typed field checks,
references by id / name / id prefix, and Docker's list filters.

Field checks name the field the way the Engine API spells it
(``TaskTemplate.ContainerSpec.Image``), so a refusal says exactly what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from labkit import errors
from labkit.engine.swarm.store import NAMES

__all__ = ["Obj", "Store", "check_filters", "empty", "find", "labels_match", "name_key",
           "not_found", "obj", "strlist", "strmap", "text", "uint", "unknown"]

Obj = dict[str, Any]
_MAX_I64 = 2**63 - 1


class Store(Protocol):
    """ClusterStore's methods the control API uses (tests: fakes.swarm_store.MemoryStore)."""

    async def get(self, key: str) -> tuple[Obj, int] | None: ...
    async def must_get(self, key: str, what: str) -> tuple[Obj, int]: ...
    async def create(self, key: str, obj: Obj) -> None: ...
    async def put(self, key: str, obj: Obj, lease: int = 0) -> None: ...
    async def cas(self, key: str, obj: Obj, version: int) -> None: ...
    async def list(self, prefix: str) -> list[tuple[Obj, int]]: ...
    async def delete(self, key: str) -> bool: ...
    async def alive(self) -> set[str]: ...


def empty(value: Any) -> bool:
    """Go's zero value: what the CLI sends for a field it did not set (false, 0, "", {}, [],
    or a struct of zero values, e.g. ``"Privileges": {"CredentialSpec": null, ...}``)."""
    if isinstance(value, dict):
        return all(empty(v) for v in value.values())
    if isinstance(value, list):
        return not value
    return value is None or value is False or value == 0 or value == ""


def unknown(d: dict[str, Any], where: str, accepted: tuple[str, ...],
            refused: tuple[str, ...] = ()) -> None:
    """Refuse keys outside ``accepted``.  ``refused`` are Docker fields labkit cannot apply:
    their zero value passes (the CLI sends ``"Init": false``), any other is refused by name.

    A key that matches a known one but for case is renamed to it in place: Go's
    encoding/json accepts a case-insensitive match, and docker-py relies on it
    (ServiceMode sends ``{"replicated": {...}}``)."""
    known = {k.lower(): k for k in (*accepted, *refused)}
    for key in list(d):
        if key not in known.values() and key.lower() in known:
            if known[key.lower()] in d:
                raise errors.InvalidArgumentError(
                    f"{where}.{key}" if where else key,
                    f"{key} and {known[key.lower()]} are the same field")
            d[known[key.lower()]] = d.pop(key)
    for key, value in d.items():
        if key in accepted:
            continue
        name = f"{where}.{key}" if where else key
        if key in refused:
            if empty(value):
                continue
            raise errors.InvalidArgumentError(
                name, f"{name} is not supported by labkit's swarm (its task executor cannot "
                      "apply it)")
        raise errors.InvalidArgumentError(name, f"unknown field {name}")


def obj(value: Any, where: str) -> Obj:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidArgumentError(where, f"{where} must be a JSON object")
    return value


def text(d: Mapping[str, Any], key: str, where: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise errors.InvalidArgumentError(f"{where}.{key}", f"{where}.{key} must be a string")
    return v


def uint(d: Mapping[str, Any], key: str, where: str, maximum: int = _MAX_I64) -> int | None:
    """A non-negative integer field (Go uint64 / a Duration in ns); None when absent."""
    v = d.get(key)
    if v is None:
        return None
    name = f"{where}.{key}"
    if isinstance(v, bool) or not isinstance(v, int):
        raise errors.InvalidArgumentError(name, f"{name} must be an integer, not {v!r}")
    if not 0 <= v <= maximum:
        raise errors.InvalidArgumentError(name, f"{name} must be between 0 and {maximum}")
    return v


def strlist(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise errors.InvalidArgumentError(where, f"{where} must be a list of strings")
    return list(value)


def strmap(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise errors.InvalidArgumentError(where, f"{where} must map strings to strings")
    return dict(value)


def name_key(kind: str, name: str) -> str:
    """The reservation key of a name; swarmkit compares names case-insensitively."""
    return f"{NAMES}{kind}/{name.lower()}"


def not_found(what: str, ref: str) -> errors.NotFoundError:
    """NotFoundError with moby's words (daemon/cluster/helpers.go): "service x not found"."""
    err = errors.NotFoundError(what, ref)
    err.message = f"{what} {ref} not found"  # type: ignore[attr-defined]
    return err


async def find(store: Store, prefix: str, ref: str, what: str,
               name_of: Callable[[Obj], str]) -> tuple[Obj, int]:
    """An object by full id, exact name, or unique id prefix (moby's lookup order)."""
    if not ref or "/" in ref:
        raise not_found(what, ref)
    got = await store.get(prefix + ref)
    if got is not None:
        return got
    items = await store.list(prefix)
    for o, v in items:
        if name_of(o) == ref:
            return o, v
    hits = [(o, v) for o, v in items if str(o.get("ID", "")).startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:  # moby: an InvalidParameter (400)
        raise errors.InvalidArgumentError(what, f"{what} {ref} is ambiguous ({len(hits)} "
                                          "matches found)")
    raise not_found(what, ref)


def check_filters(filters: Mapping[str, list[str]], allowed: tuple[str, ...]) -> None:
    """Docker's 400 "invalid filter 'x'" for a name the list does not know."""
    for key in filters:
        if key not in allowed:
            raise errors.InvalidArgumentError("filter", f"invalid filter '{key}'")


def labels_match(labels: Mapping[str, str], wanted: list[str]) -> bool:
    """Every ``key`` or ``key=value`` holds (swarmkit filterMatchLabels)."""
    for item in wanted:
        k, eq, v = item.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True
