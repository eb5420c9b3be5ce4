"""isolation.measure on the real kernel: each kind isolates exactly its own aspect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.measure import isolation

pytestmark = pytest.mark.privileged


def _sysv_ids() -> set[tuple[str, str]]:
    out = set()
    for table in ("shm", "msg"):
        lines = Path(f"/proc/sysvipc/{table}").read_text().splitlines()[1:]
        out |= {(table, line.split()[1]) for line in lines}
    return out


def test_each_kind_isolates_its_own_aspect_and_nothing_else() -> None:
    name = f"lk-test-iso-{os.getpid()}"
    ipc_before = _sysv_ids()
    tmp_before = set(Path("/tmp").glob("lk-iso-*"))
    rows = isolation.measure(cgroup=name)
    assert len(rows) == 8 * 8
    got = {(r.kind, r.aspect) for r in rows if r.isolated}
    assert got == set(isolation.PROMISES.items()) | {("pid", "mounts")}  # pid came with mnt
    by = {(r.kind, r.aspect): r for r in rows}
    assert by["uts", "hostname"].inside == "lk-iso-uts"
    assert by["pid", "processes"].inside == "1 pids, its own is 1"
    assert by["net", "interfaces"].inside == "lo"
    assert by["user", "users"].inside == "uid 0, uid_map 0 100000 65536"
    assert by["user", "users"].outside.endswith("the insider is uid 100000")
    assert by["ipc", "ipc"].inside == "shm not seen, msg not seen"
    assert by["uts", "ipc"].inside == "shm seen, msg seen"
    assert by["time", "clocks"].inside == "monotonic +86400 s, boottime +172800 s"
    assert by["cgroup", "cgroup"].inside == "/" and by["cgroup", "cgroup"].outside == f"/{name}"
    assert by["mnt", "mounts"].outside.count("sees its tmpfs") == 0
    # Everything made is gone: SysV objects, the cgroup, the scratch directory.
    assert _sysv_ids() == ipc_before
    assert list(Path("/sys/fs/cgroup").glob(f"*/{name}")) == []
    assert set(Path("/tmp").glob("lk-iso-*")) == tmp_before


def test_one_kind_alone() -> None:
    rows = isolation.measure(["uts"], cgroup=f"lk-test-iso1-{os.getpid()}")
    assert [r.aspect for r in rows if r.isolated] == ["hostname"]
    df = isolation.to_dataframe(rows)
    assert list(df.columns) == list(isolation.ASPECTS) and bool(df.loc["uts", "hostname"])
