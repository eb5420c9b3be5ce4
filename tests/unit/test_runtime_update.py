"""labkit-runtime update's parsing without root: runc's flags and -r JSON to OCI
linux.resources, and the refusal of what update would not apply."""

from __future__ import annotations

from typing import Any

import pytest

from labkit import errors
from labkit.engine.runtime import update as U
from labkit.engine.runtime.cli import UsageError, dispatch, parse
from labkit.engine.runtime.exec import console_size


@pytest.mark.parametrize(("text", "n"), [("1048576", 1 << 20), ("512m", 512 << 20),
                                         ("1G", 1 << 30), ("64kb", 64 << 10),
                                         ("2MiB", 2 << 20), ("-1", -1)])
def test_sizes_like_go_units(text: str, n: int) -> None:
    assert U.parse_bytes("memory", text) == n


@pytest.mark.parametrize("bad", ["", "m", "1.5g", "-2", "12x", "--1"])
def test_bad_sizes_name_the_flag(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="--memory-swap"):
        U.parse_bytes("memory_swap", bad)


def test_flags_become_oci_resources() -> None:
    res = U.resources_from_flags({"memory": "96m", "memory_swap": "-1", "pids_limit": "42",
                                  "cpu_quota": "-1", "cpuset_cpus": "0-1", "blkio_weight": "300"})
    assert res == {"memory": {"limit": 96 << 20, "swap": -1}, "pids": {"limit": 42},
                   "cpu": {"quota": -1, "cpus": "0-1"}, "blockIO": {"weight": 300}}
    with pytest.raises(errors.InvalidArgumentError, match="--pids-limit"):
        U.resources_from_flags({"pids_limit": "1-2"})


@pytest.mark.parametrize(("res", "named"), [
    ({"devices": []}, "linux.resources.devices"),
    ({"memory": {"limit": 1, "kernel": 5}}, "linux.resources.memory.kernel"),
    ({"cpu": {"realtimeRuntime": 5}}, "linux.resources.cpu.realtimeRuntime"),
    ({"hugepageLimits": []}, "linux.resources.hugepageLimits"),
])
def test_what_update_does_not_apply_is_refused_by_name(res: dict[str, Any], named: str) -> None:
    with pytest.raises(errors.UnsupportedError, match=named.replace(".", r"\.")):
        U.check_applied(res)


def test_merge_keeps_what_zero_leaves_alone() -> None:
    old = {"memory": {"limit": 10, "swap": 20}, "devices": [{"allow": False}]}
    new = U._merge(old, {"memory": {"limit": 30, "swap": 0}, "pids": {"limit": -1}})
    assert new == {"memory": {"limit": 30, "swap": 20}, "devices": [{"allow": False}],
                   "pids": {"limit": -1}}
    assert old["memory"] == {"limit": 10, "swap": 20}  # the old dict is not changed


def test_cli_refuses_flags_with_resources_and_flags_elsewhere(tmp_path: Any) -> None:
    cmd, opts, args = parse(["update", "-r", "x.json", "--memory", "1m", "c1"])
    with pytest.raises(UsageError, match="not both"):
        dispatch(cmd, {**opts, "root": str(tmp_path)}, args)
    cmd, opts, args = parse(["kill", "--pids-limit", "3", "c1"])
    with pytest.raises(UsageError, match="--pids-limit is an option of update only"):
        dispatch(cmd, {**opts, "root": str(tmp_path)}, args)
    cmd, opts, args = parse(["update", "--pids-limit", "-1", "c1"])
    assert opts["pids_limit"] == "-1" and args == ["c1"]  # a negative value is a value


def test_console_size_from_the_process() -> None:
    assert console_size({"consoleSize": {"height": 20, "width": 90}}) == (20, 90)
    assert console_size({}) is None
    for bad in ({"height": -1, "width": 3}, {"height": 1 << 16, "width": 3},
                {"height": "20", "width": 3}):
        with pytest.raises(errors.InvalidArgumentError, match="process.consoleSize.height"):
            console_size({"consoleSize": bad})
