"""NamespaceSpec validation and serialization (no root)."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.ns.spec import KINDS, IdMap, NamespaceSpec


def test_kinds_order_user_first_mnt_last() -> None:
    assert KINDS[0] == "user" and KINDS[-1] == "mnt"
    assert sorted(KINDS) == sorted(["mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time"])


@pytest.mark.parametrize(
    ("kw", "what", "needle"),
    [
        ({"new": frozenset({"netw"})}, "namespace", "netw"),
        ({"join": {"bogus": "/proc/1/ns/net"}}, "namespace", "bogus"),
        ({"new": frozenset({"net"}), "join": {"net": "/proc/1/ns/net"}}, "namespace", "net"),
        ({"hostname": "lk"}, "hostname", "UTS"),
        ({"domainname": "lk"}, "hostname", "UTS"),
        ({"uid_map": (IdMap(0, 100000, 10),)}, "uid_map", "user namespace"),
        ({"gid_map": (IdMap(0, 100000, 10),)}, "uid_map", "user namespace"),
        ({"time_offsets": {"monotonic": 5}}, "time_offsets", "time namespace"),
        ({"new": frozenset({"time"}), "time_offsets": {"realtime": 5}}, "time_offsets", "realtime"),
        ({"new": frozenset({"user"}), "uid_map": (IdMap(0, 1, 0),)}, "uid_map", "0 1 0"),
        ({"new": frozenset({"mnt"}), "propagation": "rprivate"}, "propagation", "rprivate"),
        ({"join": {"net": ""}}, "join", "net"),
    ],
)
def test_invalid_specs_name_the_problem(kw: dict[str, object], what: str, needle: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        NamespaceSpec(**kw)  # type: ignore[arg-type]
    assert info.value.what == what
    assert needle in str(info.value)


def test_flags_and_derived_properties() -> None:
    spec = NamespaceSpec(new=frozenset({"uts", "net"}))
    assert spec.flags == 0x04000000 | 0x40000000
    assert not spec.needs_fork and not spec.wants_maps
    assert NamespaceSpec(new=frozenset({"pid"})).needs_fork
    assert NamespaceSpec(new=frozenset({"time"})).needs_fork
    assert NamespaceSpec(join={"pid": "/proc/1/ns/pid"}).needs_fork
    assert not NamespaceSpec(new=frozenset({"user"})).wants_maps
    assert NamespaceSpec(new=frozenset({"user"}), setgroups_deny=True).wants_maps
    assert NamespaceSpec(new=frozenset({"user"}), uid_map=(IdMap(0, 100000, 65536),)).wants_maps


def test_dict_round_trip() -> None:
    spec = NamespaceSpec(
        new=frozenset({"user", "uts", "time", "mnt"}),
        join={"net": "/proc/1/ns/net"},
        hostname="lk-a",
        domainname="lk.dom",
        uid_map=(IdMap(0, 100000, 65536),),
        gid_map=(IdMap(0, 100000, 65536), IdMap(65536, 300000, 1)),
        setgroups_deny=True,
        time_offsets={"monotonic": -5, "boottime": 3600},
        propagation="slave",
    )
    assert NamespaceSpec.from_dict(spec.to_dict()) == spec
    assert IdMap(0, 100000, 65536).line() == "0 100000 65536\n"
