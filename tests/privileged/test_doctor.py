"""labkit doctor on the real host: truthful rows, live checks run, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labkit import doctor
from labkit._sys import features

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def rows() -> dict[str, doctor.Check]:
    return {r.name: r for r in doctor.check()}


def test_bpf_tracepoint_attach_works_here(rows: dict[str, doctor.Check]) -> None:
    row = rows["BPF tracepoint attach"]
    assert row.ok is True, row
    assert row.detail.startswith("23/23 getpid calls")
    assert rows["bcc import"].ok is True


def test_kprobes_row_matches_the_kernel(rows: dict[str, doctor.Check]) -> None:
    row = rows["kprobes"]
    assert row.ok is features.has_kprobes()
    if not row.ok:
        assert row.hint is not None and "labkit vm" in row.hint


def test_link_rows_match_a_real_attempt(rows: dict[str, doctor.Check]) -> None:
    # Cross-check with iproute2 in a netns of our own.
    ns = f"lk-test-{os.getpid()}-links"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "lkp0", "type", "veth", "peer", "lkp1"],
                       check=True)
        cmds = {"vxlan": ["type", "vxlan", "id", "7", "dstport", "4789"],
                "macvlan": ["link", "lkp0", "type", "macvlan", "mode", "bridge"],
                "ipvlan": ["link", "lkp0", "type", "ipvlan", "mode", "l2"]}
        for kind, args in cmds.items():
            ok = subprocess.run(["ip", "-n", ns, "link", "add", f"lkt-{kind}", *args],
                                capture_output=True, check=False).returncode == 0
            assert rows[kind].ok is ok, (kind, rows[kind])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_no_doctor_netns_left_behind(rows: dict[str, doctor.Check]) -> None:
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert f"lk-doctor-{os.getpid()}" not in names


def test_cgroup_rows_match_mountinfo(rows: dict[str, doctor.Check]) -> None:
    types = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            types[left.split()[4]] = right.split()[0]
    root, unified = types.get("/sys/fs/cgroup"), types.get("/sys/fs/cgroup/unified")
    expect = ("unified" if root == "cgroup2" else
              "hybrid" if unified == "cgroup2" else "legacy")
    assert rows["cgroup mode"].detail.split()[0] == expect


def test_cli_doctor_exits_zero_and_strict_reflects_missing() -> None:
    out = subprocess.run([sys.executable, "-m", "labkit.cli.main", "doctor", "--no-live"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "kprobes" in out.stdout
    strict = subprocess.run([sys.executable, "-m", "labkit.cli.main", "doctor", "--json",
                             "--strict", "--no-live"], capture_output=True, text=True,
                            check=False)
    missing = '"ok": false' in strict.stdout
    assert strict.returncode == (1 if missing else 0)
