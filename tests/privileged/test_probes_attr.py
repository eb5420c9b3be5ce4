"""Container attribution on the real kernel: labkit-runtime containers with a known, prime
number of events, seen by the probes and put on the right container.

Each container runs ``sh -c 'loop N times: /bin/true ...'`` and is created first (init waits
on its exec fifo), so the probe can be pointed at it by name before it starts.  Every test
deletes its containers and checks that no cgroup is left in either hierarchy.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import probes
from labkit._sys import features
from labkit.engine.runtime import state as statemod
from labkit.probes import cgattach, lifecycle, nssyscalls, target
from tests.privileged.test_runtime import Bundle, cgroup_exists

pytestmark = pytest.mark.privileged

UNIFIED = Path("/sys/fs/cgroup/unified")


def loop(n: int, cmd: str = "/bin/true", code: int = 0) -> list[str]:
    """argv of a shell that runs ``cmd`` exactly ``n`` times (busybox ash forks + execs a
    command named by path), then exits with ``code``."""
    return ["sh", "-c", f"i=0; while [ $i -lt {n} ]; do {cmd}; i=$((i+1)); done; exit {code}"]


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.b = Bundle(tmp)

    def create(self, argv: list[str]) -> str:
        self.b.set_args(*argv, terminal=False)
        cid = self.b.new_id()
        self.b.cli("create", "--bundle", str(self.b.dir), cid, check=True)
        return cid

    def target(self, cid: str) -> target.Target:
        return target.resolve(cid, state_root=self.b.root)

    def start(self, *cids: str) -> None:
        for cid in cids:
            self.b.cli("start", cid, check=True)

    def wait(self, *cids: str, bound: float = 30.0) -> None:
        """Until each container's init has exited (a bound against a hang, not a timing)."""
        deadline = time.monotonic() + bound
        for cid in cids:
            while statemod.load(str(self.b.root), cid).alive():
                assert time.monotonic() < deadline, f"{cid} still running"
                time.sleep(0.02)

    def delete(self) -> None:
        self.b.cleanup()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lb = Lab(tmp_path)
    yield lb
    lb.delete()
    for cid in lb.b.ids:
        assert not cgroup_exists(cid), f"cgroup of {cid} left behind"
        assert not (UNIFIED / "lk" / cid).exists(), f"unified mirror of {cid} left behind"
        assert not (lb.b.root / cid).exists()


def execs(events: list[Any], container: str, filename: str = "/bin/true") -> list[Any]:
    return [e for e in events if e.kind == "exec" and e.container == container
            and e.filename == filename]


# --- the runtime publishes the ids ---------------------------------------------------------


def test_runtime_publishes_the_v2_cgroup_id_and_namespace_inodes(lab: Lab) -> None:
    cid = lab.create(["sleep", "30"])
    st = statemod.load(str(lab.b.root), cid)
    ids = st.kernel_ids
    cg_dir = (UNIFIED if UNIFIED.is_dir() else Path("/sys/fs/cgroup")) / "lk" / cid
    assert ids["cgroup_id"] == cg_dir.stat().st_ino
    assert ids["cgroup_path"] == f"/lk/{cid}"
    # init's own view agrees: its v2 line, and the namespace links
    lines = Path(f"/proc/{st.pid}/cgroup").read_text().splitlines()
    assert f"0::/lk/{cid}" in lines
    for kind, ino in ids["ns"].items():
        assert os.stat(f"/proc/{st.pid}/ns/{kind}").st_ino == ino
    # a new pid/net/mnt/uts/ipc namespace each (the default spec), so not the host's
    for kind in ("pid", "net", "mnt", "uts", "ipc"):
        assert ids["ns"][kind] != os.stat(f"/proc/self/ns/{kind}").st_ino
    t = lab.target(cid)
    assert (t.cgroup_id, t.pid, dict(t.ns)) == (ids["cgroup_id"], st.pid, ids["ns"])
    assert target.from_pid(st.pid, cid).cgroup_id == ids["cgroup_id"]
    assert cid in [x.name for x in target.running(state_root=lab.b.root)]


# --- lifecycle -----------------------------------------------------------------------------


def test_lifecycle_sees_exactly_23_execs_in_the_container(lab: Lab) -> None:
    cid = lab.create(loop(23, code=7))
    t = lab.target(cid)
    with lifecycle.attach(lifecycle.Options(targets=(t,))) as probe:
        assert (probe.mode, probe.missing) == ("tracepoint", ())
        lab.start(cid)
        lab.wait(cid)
        events = probe.read()
        lost = probe.lost
    assert lost == 0
    assert {e.container for e in events} == {cid}
    assert len(execs(events, cid)) == 23
    assert len(execs(events, cid, "/bin/sh")) == 1  # init's exec of the process, at start
    forks = [e for e in events if e.kind == "fork"]
    assert len(forks) == 23 and all(e.ppid == t.pid for e in forks)
    exits = [e for e in events if e.kind == "exit"]
    assert Counter(e.comm for e in exits) == {"true": 23, "sh": 1}
    assert all(e.code == 0 for e in exits if e.comm == "true")
    assert [e.code for e in exits if e.comm == "sh"] == [7]  # exit_group's status
    # the pids the container itself sees: its init is 1 (in its own pid namespace)
    assert [e.ns_pid for e in exits if e.comm == "sh"] == [1]
    assert all(e.ns_pid is not None and e.ns_pid > 1 for e in execs(events, cid))
    # each exec'd child is one of the forks, and names init as its parent
    assert {e.pid for e in execs(events, cid)} == {e.pid for e in forks}
    assert all(e.ppid == t.pid for e in execs(events, cid))


def test_lifecycle_two_containers_at_once_each_event_on_its_container(lab: Lab) -> None:
    a = lab.create(loop(23))
    b = lab.create(loop(29, "/bin/echo x >/dev/null"))
    ta, tb = lab.target(a), lab.target(b)
    assert ta.cgroup_id != tb.cgroup_id
    with lifecycle.attach(lifecycle.Options(targets=(ta, tb))) as probe:
        lab.start(a, b)
        lab.wait(a, b)
        events = probe.read()
    assert len(execs(events, a)) == 23 and len(execs(events, b, "/bin/echo")) == 29
    # nothing of one container on the other
    assert execs(events, b) == [] and execs(events, a, "/bin/echo") == []
    pids = {a: {ta.pid}, b: {tb.pid}}
    for e in events:
        if e.kind == "fork":
            pids[e.container].add(e.pid)
    assert not pids[a] & pids[b]
    assert all(e.pid in pids[e.container] for e in events)


def test_lifecycle_without_targets_keeps_everything_as_host(lab: Lab) -> None:
    cid = lab.create(loop(23))
    with lifecycle.attach() as probe:
        lab.start(cid)
        lab.wait(cid)
        events = probe.read()
    assert {e.container for e in events} >= {"host"}
    assert len(execs(events, "host")) >= 23


def test_fork_into_cgroup_child_starts_in_the_cgroup(tmp_path: Path) -> None:
    from labkit._sys.clone3 import fork_into_cgroup

    if not UNIFIED.is_dir():
        pytest.skip("no hybrid unified mount here")
    d = UNIFIED / f"lk-attr-c3-{os.getpid()}"
    d.mkdir()
    try:
        fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            pid = fork_into_cgroup(fd)
            if pid == 0:
                ok = f"0::/{d.name}" in Path("/proc/self/cgroup").read_text().splitlines()
                os._exit(0 if ok else 1)
        finally:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        d.rmdir()


# --- nssyscalls ----------------------------------------------------------------------------


def _admin(lab: Lab) -> None:
    """CAP_SYS_ADMIN and no seccomp profile, so the container may unshare(2) and mount(2):
    Docker's profile admits them only for CAP_SYS_ADMIN, decided when the spec was made, and
    a call seccomp refuses never reaches the sys_enter tracepoint."""
    cfg = lab.b.config
    for key in ("bounding", "effective", "permitted"):
        cfg["process"]["capabilities"][key].append("CAP_SYS_ADMIN")
    cfg["linux"].pop("seccomp", None)
    lab.b.config = cfg


def test_nssyscalls_three_containers_at_once_each_syscall_on_its_own(lab: Lab) -> None:
    _admin(lab)
    a = lab.create(loop(7, "busybox unshare -u true"))
    b = lab.create(loop(11, "busybox unshare -i true"))
    c = lab.create(loop(13, "mount -t tmpfs lk /tmp"))  # the root is read-only: /tmp exists
    ta, tb, tc = (lab.target(x) for x in (a, b, c))
    with nssyscalls.attach(nssyscalls.Options(targets=(ta, tb, tc))) as probe:
        assert probe.mode == "tracepoint" and probe.missing == ()
        lab.start(a, b, c)
        lab.wait(a, b, c)
        summary = probe.summary()
        events = probe._seen
    unshares = Counter((e.container, e.ns_flags, e.ret) for e in events if e.syscall == "unshare")
    assert unshares == {(a, ("CLONE_NEWUTS",), 0): 7, (b, ("CLONE_NEWIPC",), 0): 11}
    mounts = [e for e in events if e.syscall == "mount"]
    assert len(mounts) == 13 and {e.container for e in mounts} == {c}
    assert [(e.arg, e.fstype, e.ret) for e in mounts] == [("/tmp", "tmpfs", 0)] * 13
    assert summary[(a, "unshare")].count == 7 and summary[(b, "unshare")].count == 11
    assert summary[(c, "mount")].count == 13
    assert (c, "unshare") not in summary and (a, "mount") not in summary
    s = summary[(a, "unshare")]
    assert 0 < s.p50_ns <= s.p95_ns and s.failed == 0
    # each loop forks its 7 / 11 / 13 children, whose execs are the container's too
    assert [summary[(x, "clone")].count for x in (a, b, c)] == [7, 11, 13]


def test_nssyscalls_traces_a_runtime_start_from_its_first_fork(lab: Lab) -> None:
    with nssyscalls.attach(nssyscalls.Options(pids_under=os.getpid())) as probe:
        cid = lab.create(["true"])
        lab.start(cid)
        lab.wait(cid)
        events = probe.read()
    mine = f"pids under {os.getpid()}"
    assert {e.container for e in events} == {mine}
    by = Counter(e.syscall for e in events)
    assert by["unshare"] == 1 and by["pivot_root"] == 1
    unshare = next(e for e in events if e.syscall == "unshare")
    assert set(unshare.ns_flags) == {"CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC",
                                     "CLONE_NEWPID", "CLONE_NEWNET"}
    # the runtime forks its intermediate straight into the container's v2 cgroup
    into = [e for e in events if e.syscall == "clone3" and e.flags & 0x200000000]
    assert len(into) == 1 and into[0].ret > 0
    assert next(e for e in events if e.syscall == "pivot_root").arg == "."
    execs_ = [e for e in events if e.syscall == "execve" and e.arg == "/bin/true"]
    assert len(execs_) == 1 and execs_[0].ret == 0


# --- cgattach ------------------------------------------------------------------------------


def test_cgattach_sees_the_start_into_the_containers_cgroup(lab: Lab) -> None:
    with cgattach.attach() as probe:
        assert probe.mode == "tracepoint" and probe.missing == (cgattach.LATENCY_MISSING,)
        cid = lab.create(["sleep", "30"])
        events = probe.read()
    t = lab.target(cid)
    into = [e for e in events if e.kind == "clone_into" and e.dst_id == t.cgroup_id]
    assert len(into) == 1  # the intermediate, born in the container's v2 cgroup
    intermediate = into[0].pid
    v1 = [e for e in events if e.kind == "attach" and e.dst_path == f"/lk/{cid}"]
    # then it moves itself into each v1 hierarchy (one per mounted controller hierarchy)
    hierarchies = {e.dst_root for e in v1}
    assert len(v1) == len(hierarchies) >= 1 and 0 not in hierarchies
    assert all(e.pid == e.by_pid == intermediate for e in v1)
    assert all(e.lat_ns is None for e in v1)


def test_cgattach_exec_into_a_running_container_is_attributed(lab: Lab) -> None:
    a = lab.create(["sleep", "30"])
    b = lab.create(["sleep", "30"])
    lab.start(a, b)
    ta, tb = lab.target(a), lab.target(b)
    with cgattach.attach(cgattach.Options(targets=(ta, tb))) as probe:
        lab.b.cli("exec", a, "true", check=True)
        events = probe.read()
    assert events and {e.container for e in events} == {a}
    # exec's middle child is born in a's v2 cgroup (clone3 CLONE_INTO_CGROUP, like create's
    # intermediate), then moves itself into each v1 hierarchy of a's cgroup
    into = [e for e in events if e.kind == "clone_into"]
    assert len(into) == 1 and into[0].dst_id == ta.cgroup_id and into[0].dst_root == 0
    v1 = [e for e in events if e.kind == "attach"]
    assert v1 and all(e.dst_root != 0 and e.dst_path == f"/lk/{a}" for e in v1)
    assert all(e.pid == into[0].pid for e in v1)


def test_an_execd_process_is_in_the_containers_v2_cgroup(lab: Lab) -> None:
    """exec joins every hierarchy of the container's cgroup, the unified one included (this
    bundle has no cgroup namespace, so /proc/self/cgroup shows the host's paths)."""
    a = lab.create(["sleep", "30"])
    lab.start(a)
    out = lab.b.cli("exec", a, "cat", "/proc/self/cgroup", check=True).stdout
    assert f"0::/lk/{a}\n" in out and f"memory:/lk/{a}\n" in out, out


# --- the procfs stand-in -------------------------------------------------------------------


def test_without_bcc_the_lifecycle_falls_back_to_polling(lab: Lab,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_bcc", lambda: False)
    cid = lab.create(loop(3, "sleep 0.5"))
    t = lab.target(cid)
    with probes.open("lifecycle", targets=[cid], state_root=str(lab.b.root),
                     poll_interval=0.02) as probe:
        assert probe.mode == "procfs" and "exit codes" in probe.missing
        lab.start(cid)
        lab.wait(cid)
        events = probe.read()
    assert events and {e.container for e in events} == {cid}
    sleeps = {e.pid for e in events if e.kind == "fork" and e.comm == "sleep"}
    assert sleeps  # 0.5 s each against a 20 ms poll
    assert sleeps <= {e.pid for e in events if e.kind == "exit"}
    assert all(e.ppid == t.pid for e in events if e.kind == "fork" and e.pid in sleeps)
    with probes.open("syscalls", targets=[cid], state_root=str(lab.b.root)) as nothing:
        assert nothing.mode == "procfs" and nothing.read() == []


def test_delete_removes_the_cgroup_from_both_hierarchies(lab: Lab) -> None:
    cid = lab.create(["sleep", "30"])
    lab.start(cid)
    mirror = UNIFIED / "lk" / cid
    v1 = [Path(f"/sys/fs/cgroup/{c}/lk/{cid}") for c in ("pids", "memory", "freezer")]
    assert mirror.is_dir() and all(d.is_dir() for d in v1)
    assert int((mirror / "cgroup.procs").read_text().split()[0]) > 0
    lab.b.cli("delete", "--force", cid, check=True)
    assert not mirror.exists() and not any(d.exists() for d in v1)
    assert not [d for d in (UNIFIED / "lk").iterdir() if d.is_dir() and d.name == cid]


# --- the engine's path: supervisor -> shim -> runtime ----------------------------------------


def test_a_container_started_by_the_supervisor_is_attributed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.engine.supervisor.harness import Harness

    h = Harness(tmp_path)
    try:
        h.start()
        # the engine's state roots: where target.resolve looks for runtime containers
        monkeypatch.setenv("LABKIT_RUN", str(h.run))
        monkeypatch.setenv("LABKIT_ROOT", str(h.root))
        cid = h.new_id("attr")
        h.client.create(cid, str(h.bundle(cid, loop(23))))
        t = target.resolve(cid)
        assert t.cgroup_path == f"/lk/{cid}" and t.cgroup_id == (UNIFIED / "lk" / cid).stat().st_ino
        with lifecycle.attach(lifecycle.Options(targets=(t,))) as probe:
            h.client.start(cid)
            assert h.client.wait(cid).exit_status == 0
            events = probe.read()
        assert len(execs(events, cid)) == 23
        h.client.delete(cid)
    finally:
        h.cleanup()
    assert h.leftover_cgroups() == []
    assert not (UNIFIED / "lk" / cid).exists()


def test_cgattach_kprobe_mode_program_compiles_here() -> None:
    """The kprobe mode's program is compiled and loaded (its tracepoint part attaches) even
    on this kprobe-less host, so a C error in it fails here, not only in the VM."""
    from labkit.probes import base

    bpf = base.load_bpf(cgattach.render(cgattach.Options(), kprobes=True), "cgattach")
    try:
        assert bpf.load_func(b"lk_write_enter", bpf.KPROBE) is not None
    finally:
        bpf.cleanup()
