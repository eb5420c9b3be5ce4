"""Resources validation, Resources.from_oci (config-linux.md) and cgroup names."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.cgroups import IoLimit, Resources, check_name, open_cgroup
from labkit.errors import InvalidArgumentError


def test_defaults_are_all_unset() -> None:
    r = Resources()
    assert r.memory_max is None and r.pids_max is None and r.io_limits == ()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"memory_max": "64m"}, "memory_max"), ({"memory_max": True}, "memory_max"),
     ({"memory_max": 0}, "memory_max"), ({"memory_max": -2}, "memory_max"),
     ({"cpu_weight": 0}, "cpu_weight"), ({"cpu_weight": 10001}, "cpu_weight"),
     ({"cpu_shares": 1}, "cpu_shares"), ({"cpu_shares": 1024, "cpu_weight": 100}, "cpu_shares"),
     ({"cpu_quota_us": 10}, "cpu_quota_us"), ({"cpu_period_us": 2_000_000}, "cpu_period_us"),
     ({"cpuset_cpus": "0-a"}, "cpuset_cpus"), ({"cpuset_mems": 0}, "cpuset_mems"),
     ({"pids_max": -5}, "pids_max"), ({"pids_max": 1 << 64}, "pids_max"),
     ({"io_weight": 5}, "io_weight"),
     ({"memory_swap_max": 100 << 20}, "memory_swap_max"),
     ({"memory_max": 64 << 20, "memory_swap_max": 32 << 20}, "memory_swap_max"),
     ({"io_limits": ("8:0",)}, "io_limits")],
)
def test_bad_values_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        Resources(**kwargs)
    assert exc.value.what == field
    assert field in str(exc.value)


def test_io_limit_validation_and_list_becomes_tuple() -> None:
    with pytest.raises(InvalidArgumentError):
        IoLimit(8, 0, rbps=-1)
    r = Resources(io_limits=[IoLimit(8, 0, rbps=1)])  # type: ignore[arg-type]
    assert r.io_limits == (IoLimit(8, 0, rbps=1),)


def test_effective_cpu_values() -> None:
    assert Resources(cpu_shares=1024).effective_cpu_weight == 100
    assert Resources(cpu_weight=100).effective_cpu_shares == 1024
    assert Resources(cpu_weight=250).effective_cpu_weight == 250


def test_from_oci_full() -> None:
    res = {
        "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 50},
        "blockIO": {
            "weight": 500,
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100},
                                        {"major": 253, "minor": 1, "rate": 7}],
        },
        "devices": [{"allow": False, "access": "rwm"}],
    }
    r = Resources.from_oci(res)
    assert r == Resources(
        memory_max=64 << 20, memory_swap_max=128 << 20, memory_reservation=32 << 20,
        cpu_shares=512, cpu_quota_us=20000, cpu_period_us=100000, cpuset_cpus="0-1",
        cpuset_mems="0", pids_max=50, io_weight=500,
        io_limits=(IoLimit(8, 0, rbps=1048576, wiops=100), IoLimit(253, 1, wiops=7)),
    )


@pytest.mark.parametrize(
    ("res", "expected"),
    [(None, Resources()), ({}, Resources()),
     ({"memory": {"limit": 0}, "cpu": {"shares": 0, "cpus": ""}}, Resources()),
     ({"pids": {"limit": 0}}, Resources()), ({"pids": {"limit": -1}}, Resources(pids_max=-1)),
     ({"memory": {"limit": -1}}, Resources(memory_max=-1))],
)
def test_from_oci_unset_and_unlimited(res: dict[str, Any] | None, expected: Resources) -> None:
    assert Resources.from_oci(res) == expected


@pytest.mark.parametrize(
    ("res", "what"),
    [({"memory": {"limit": "64m"}}, "memory.limit"), ({"memory": 5}, "memory"),
     ({"cpu": {"shares": 1.5}}, "cpu.shares"), ({"cpu": {"cpus": 3}}, "cpu.cpus"),
     ({"pids": {"limit": True}}, "pids.limit"), ("nope", "linux.resources"),
     ({"blockIO": {"throttleReadBpsDevice": {}}}, "blockIO.throttleReadBpsDevice"),
     ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
      "blockIO.throttleReadBpsDevice[0].minor")],
)
def test_from_oci_rejects_wrong_types(res: Any, what: str) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        Resources.from_oci(res)
    assert exc.value.what == what


def test_from_oci_range_errors_name_our_field() -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        Resources.from_oci({"cpu": {"quota": 5}})
    assert exc.value.what == "cpu_quota_us"


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "a/../b", "..", "a/.", "a/", 5, "a\0b"])
def test_bad_names(name: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        check_name(name)
    with pytest.raises(InvalidArgumentError):
        open_cgroup(name)


def test_good_name() -> None:
    assert check_name("lk-abc/ctr1") == "lk-abc/ctr1"


def test_from_oci_swappiness_and_oom_killer() -> None:
    r = Resources.from_oci({"memory": {"swappiness": 0, "disableOOMKiller": True}})
    assert r == Resources(memory_swappiness=0, oom_kill_disable=True)
    # -1 (and Go's uint64 of it) means unset, as does disableOOMKiller false (runc).
    unset = {"memory": {"swappiness": -1, "disableOOMKiller": False}}
    assert Resources.from_oci(unset) == Resources()
    assert Resources.from_oci({"memory": {"swappiness": (1 << 64) - 1}}) == Resources()
    with pytest.raises(InvalidArgumentError) as exc:
        Resources.from_oci({"memory": {"swappiness": 101}})
    assert exc.value.what == "memory_swappiness" and "0..100" in str(exc.value)
    with pytest.raises(InvalidArgumentError) as exc:
        Resources.from_oci({"memory": {"disableOOMKiller": 1}})
    assert exc.value.what == "memory.disableOOMKiller"


def test_kernel_memory_limits_only_warn() -> None:
    from labkit.cgroups._oci import warnings

    assert warnings(None) == [] and warnings({"memory": {"limit": 1 << 20}}) == []
    got = warnings({"memory": {"kernel": 1 << 20, "kernelTCP": 1 << 20}})
    assert [w.split(" ")[0] for w in got] == ["linux.resources.memory.kernel",
                                              "linux.resources.memory.kernelTCP"]
    assert all("ignored" in w for w in got)
    with pytest.raises(InvalidArgumentError):
        warnings({"memory": {"kernel": "1m"}})
