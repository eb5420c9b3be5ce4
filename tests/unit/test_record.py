"""Frozen records (labkit/_record.py) behave like the frozen slots dataclasses they replaced.

Each record is checked against a dataclass built here with the same fields and defaults:
the same repr, equality, hash, frozenness, asdict and replace results.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from labkit._record import Frozen, FrozenInstanceError
from labkit.cgroups import IoLimit, Pressure, PressureLine, Resources, Stats
from labkit.cgroups._ops import Write
from labkit.errors import InvalidArgumentError
from labkit.ns.spec import IdMap, NamespaceSpec


def twin(rec: Frozen) -> Any:
    """A frozen slots dataclass with ``rec``'s class name, fields and values."""
    cls = dataclasses.make_dataclass(
        type(rec).__qualname__, [(f, object) for f in rec.__slots__], frozen=True, slots=True)
    return cls(*[_twin_value(getattr(rec, f)) for f in rec.__slots__])


def _twin_value(v: Any) -> Any:
    if isinstance(v, Frozen):
        return twin(v)
    if isinstance(v, tuple):
        return tuple(_twin_value(x) for x in v)
    return v


SAMPLES: list[Frozen] = [
    IdMap(0, 1000),
    IdMap(inside=0, outside=100000, count=65536),
    NamespaceSpec(),
    NamespaceSpec(new=frozenset({"user", "uts"}), hostname="lk-h",
                  uid_map=(IdMap(0, 1000),), gid_map=(IdMap(0, 1000, 2),),
                  setgroups_deny=True, propagation="slave"),
    Resources(),
    Resources(memory_max=64 << 20, cpu_shares=512, cpuset_cpus="0-1", pids_max=-1,
              io_limits=(IoLimit(8, 0, rbps=1 << 20),)),
    Stats(),
    Stats(memory_current=1, oom_kills=0, pids_max=-1),
    Pressure(PressureLine(0.5, 0.25, 0.0, 123), None),
    Write("/x/pids.max", "10", "max"),
]


@pytest.mark.parametrize("rec", SAMPLES, ids=lambda r: type(r).__name__)
def test_same_repr_eq_asdict_as_a_dataclass(rec: Frozen) -> None:
    dc = twin(rec)
    assert repr(rec) == repr(dc)
    assert rec._asdict() == dataclasses.asdict(dc)
    assert rec.__slots__ == tuple(f.name for f in dataclasses.fields(dc))
    same = rec.replace()
    assert same == rec and same is not rec
    assert rec != dc  # another class: NotImplemented both ways, then identity
    assert pickle.loads(pickle.dumps(rec)) == rec
    assert copy.deepcopy(rec) == rec


@pytest.mark.parametrize("rec", SAMPLES, ids=lambda r: type(r).__name__)
def test_frozen(rec: Frozen) -> None:
    name = rec.__slots__[0]
    with pytest.raises(FrozenInstanceError):
        setattr(rec, name, 1)
    with pytest.raises(AttributeError):  # FrozenInstanceError is one, like dataclasses'
        delattr(rec, name)
    with pytest.raises(AttributeError):
        rec.not_a_field = 1


def test_hash_like_a_frozen_dataclass() -> None:
    assert hash(IdMap(0, 1)) == hash(IdMap(0, 1)) == hash(twin(IdMap(0, 1)))
    assert len({Resources(pids_max=5), Resources(pids_max=5), Resources()}) == 2
    assert hash(Stats(oom_kills=1)) == hash(twin(Stats(oom_kills=1)))
    with pytest.raises(TypeError):  # holds dicts (join, time_offsets), as before
        hash(NamespaceSpec())


def test_defaults_and_keywords() -> None:
    a, b = NamespaceSpec(), NamespaceSpec()
    assert a.join == {} and a.time_offsets == {} and a.join is not b.join  # default_factory
    assert a.propagation == "private" and a.new == frozenset() and a.uid_map == ()
    assert IdMap(1, 2).count == 1
    assert Resources().io_limits == () and Resources(io_limits=[IoLimit(1, 2)]).io_limits == (  # type: ignore[arg-type]
        IoLimit(1, 2),)
    assert Stats(pids_current=3) == Stats(None, None, None, None, None, None, None, None, None,
                                          None, None, 3)


def test_replace_validates_and_names_unknown_fields() -> None:
    r = Resources(memory_max=1 << 20)
    assert r.replace(pids_max=7) == Resources(memory_max=1 << 20, pids_max=7)
    with pytest.raises(InvalidArgumentError):
        r.replace(memory_max="lots")
    with pytest.raises(InvalidArgumentError):
        NamespaceSpec().replace(hostname="h")  # needs a new uts namespace
    with pytest.raises(TypeError):
        r.replace(memory=1)
