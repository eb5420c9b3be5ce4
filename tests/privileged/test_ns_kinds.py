"""Each of the eight namespace kinds, shown for real from inside a spawned command."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import labkit.ns._spawn as _spawn_mod
from labkit._sys import consts, syscalls
from labkit.ns import IdMap, NamespaceSpec, _forkserver, enter, run, spawn

pytestmark = pytest.mark.privileged


@pytest.fixture(autouse=True, params=["direct", "server", "helper"])
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test down the three paths: fork from this (single-threaded) process, the
    warm fork server multi-threaded callers get, and one ``python -m labkit.ns.child``
    helper per spawn (the fallback)."""
    monkeypatch.setattr(_spawn_mod, "DIRECT_FORK", request.param == "direct")
    monkeypatch.setattr(_spawn_mod, "FORK_SERVER", request.param == "server")
    return str(request.param)

BB = "/bin/busybox"
if not os.path.exists(BB):
    pytest.skip("needs /bin/busybox (busybox-static)", allow_module_level=True)

ROOT_MAP = (IdMap(0, 100000, 65536),)


@pytest.fixture(autouse=True)
def reaps_everything() -> Iterator[None]:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    _forkserver.shutdown()  # the warm server is meant to outlive spawns, not the test
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == [], f"left running: {left}"


def sh(script: str) -> list[str]:
    return [BB, "sh", "-c", script]


def test_uts_hostname_inside_only() -> None:
    name = f"lk-test-{os.getpid()}"
    host = socket.gethostname()
    res = run(NamespaceSpec(new=frozenset({"uts"}), hostname=name, domainname="lk.example"),
              sh("hostname; cat /proc/sys/kernel/domainname"))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{name}\nlk.example\n"
    assert socket.gethostname() == host != name


def test_pid_namespace_is_pid_1_and_sees_only_itself_with_its_own_proc() -> None:
    host_proc = Path("/proc/1/cmdline").read_bytes()
    res = run(NamespaceSpec(new=frozenset({"pid", "mnt"})),
              sh(f"mount -t proc proc /proc && echo $$ && {BB} ps -o pid"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0] == "1"
    pids = {int(x) for x in lines[2:]}  # after "1" and the "PID" header
    assert 1 in pids and max(pids) < 10  # sh and ps, not the host's hundreds
    # the host's /proc was not replaced (new mnt ns, private propagation)
    assert Path("/proc/1/cmdline").read_bytes() == host_proc
    assert os.getpid() in {int(p) for p in os.listdir("/proc") if p.isdigit()}


def test_pid_namespace_without_new_proc_still_shows_host_proc() -> None:
    # pid_namespaces(7): /proc shows the pid namespace of the procfs mount, not ours.
    res = run(NamespaceSpec(new=frozenset({"pid"})), sh("echo $$; ls /proc | grep -c '^[0-9]'"))
    first, count = res.stdout.split()
    assert first == "1" and int(count) > 10


def test_net_namespace_has_only_lo_and_it_is_down() -> None:
    res = run(NamespaceSpec(new=frozenset({"net"})), [BB, "ip", "-o", "link"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    flags = lines[0].split("<", 1)[1].split(">", 1)[0].split(",")
    assert ": lo:" in lines[0] and "LOOPBACK" in flags and "UP" not in flags
    assert len(socket.if_nameindex()) > 1  # the host has more than lo


def test_ipc_namespace_has_its_own_sysv_objects() -> None:
    ipcmk = shutil.which("ipcmk")
    if ipcmk is None:
        pytest.skip("needs ipcmk (util-linux)")
    out = subprocess.run([ipcmk, "-Q"], check=True, capture_output=True, text=True).stdout
    msqid = out.strip().split()[-1]
    try:
        host = Path("/proc/sysvipc/msg").read_text().splitlines()[1:]
        assert any(line.split()[1] == msqid for line in host)
        res = run(NamespaceSpec(new=frozenset({"ipc"})),
                  sh(f"cat /proc/sysvipc/msg; {ipcmk} -Q >/dev/null; cat /proc/sysvipc/msg"))
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        headers = [i for i, line in enumerate(lines) if "msqid" in line]
        assert len(headers) == 2
        assert headers[1] == headers[0] + 1  # empty at first (the host's queue is not here)
        assert len(lines) == headers[1] + 2  # then only the queue made inside
        after = Path("/proc/sysvipc/msg").read_text().splitlines()[1:]
        assert len(after) == len(host)  # the inside queue died with its namespace
    finally:
        subprocess.run(["ipcrm", "-q", msqid], check=True)


def test_user_namespace_root_inside_is_100000_outside() -> None:
    spec = NamespaceSpec(new=frozenset({"user"}), uid_map=ROOT_MAP, gid_map=ROOT_MAP)
    res = run(spec, sh("id -u; id -g; cat /proc/self/uid_map"))
    assert res.returncode == 0, res.stderr
    uid, gid, *umap = res.stdout.split()
    assert (uid, gid, umap) == ("0", "0", ["0", "100000", "65536"])
    with spawn(spec, [BB, "sleep", "60"]) as child:
        status = Path(f"/proc/{child.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == ["100000"] * 4
        assert Path(f"/proc/{child.pid}/uid_map").read_text().split() == ["0", "100000", "65536"]
        assert enter(child.pid, argv=[BB, "id", "-u"]).stdout == "0\n"


def test_user_namespace_setgroups_deny() -> None:
    spec = NamespaceSpec(new=frozenset({"user"}), uid_map=ROOT_MAP, gid_map=ROOT_MAP,
                         setgroups_deny=True)
    res = run(spec, [BB, "cat", "/proc/self/setgroups"])
    assert res.stdout.strip() == "deny"


def test_cgroup_namespace_shows_root() -> None:
    host = Path("/proc/self/cgroup").read_text().splitlines()
    if all(line.endswith(":/") for line in host):
        pytest.skip("this process sits in every hierarchy's root: nothing to hide")
    res = run(NamespaceSpec(new=frozenset({"cgroup"})), [BB, "cat", "/proc/self/cgroup"])
    inside = res.stdout.splitlines()
    assert len(inside) == len(host)
    assert all(line.endswith(":/") for line in inside), inside


def test_time_namespace_shifts_uptime() -> None:
    offset = 100_000
    spec = NamespaceSpec(new=frozenset({"time"}), time_offsets={"boottime": offset, "monotonic": 50})
    before = float(Path("/proc/uptime").read_text().split()[0])
    res = run(spec, sh("cat /proc/uptime; cat /proc/self/timens_offsets"))
    after = float(Path("/proc/uptime").read_text().split()[0])
    lines = res.stdout.splitlines()
    inside = float(lines[0].split()[0])
    # /proc/uptime has two decimals and 24298.46 + 100000 is 124298.45999... in binary
    # floating point: compare in hundredths (failed once on an exact tie)
    assert round((before + offset) * 100) <= round(inside * 100) <= round((after + offset) * 100)
    assert [line.split() for line in lines[1:]] == [["monotonic", "50", "0"],
                                                    ["boottime", str(offset), "0"]]


def _mounted(tag: str) -> bool:
    return any(tag in line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines())


def test_mnt_namespace_tmpfs_invisible_outside(tmp_path: Path) -> None:
    tag = f"lk-test-{os.getpid()}-mnt"
    res = run(NamespaceSpec(new=frozenset({"mnt"})),
              sh(f"mount -t tmpfs {tag} {tmp_path} && touch {tmp_path}/inside && "
                 f"grep -c ' {tag} ' /proc/self/mountinfo"))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "1\n"
    assert not _mounted(tag)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    # A shared mount point of our own, so propagation is really exercised (/ may be private).
    d = tmp_path / "shared"
    d.mkdir()
    syscalls.mount(str(d), str(d), None, consts.MS_BIND)
    try:
        syscalls.mount(None, str(d), None, consts.MS_SHARED)
        yield d
    finally:
        syscalls.umount2(str(d), consts.MNT_DETACH)


def test_mnt_propagation_private_by_default_unchanged_on_request(shared_dir: Path) -> None:
    tag = f"lk-test-{os.getpid()}-prop"
    script = sh(f"mkdir -p {shared_dir}/sub && mount -t tmpfs {tag} {shared_dir}/sub")
    assert run(NamespaceSpec(new=frozenset({"mnt"})), script).returncode == 0
    assert not _mounted(tag)
    # Control: with propagation left alone, the same mount reaches the host's peer group.
    res = run(NamespaceSpec(new=frozenset({"mnt"}), propagation="unchanged"), script)
    assert res.returncode == 0, res.stderr
    try:
        assert _mounted(tag)
    finally:
        syscalls.umount2(str(shared_dir / "sub"), consts.MNT_DETACH)
