"""spawn/run/enter on the real kernel: errors come back typed, children are reaped, inspect agrees."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import labkit.ns._spawn as _spawn_mod
from labkit import errors
from labkit.ns import (
    IdMap,
    NamespaceSpec,
    _forkserver,
    compare,
    enter,
    list_namespaces,
    namespaces,
    run,
    spawn,
)

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


def _children() -> set[int]:
    """Our descendants, without the warm fork server (it outlives spawns by design)."""
    server = _forkserver.server_pid()
    return {p.pid for p in psutil.Process().children(recursive=True) if p.pid != server}


@pytest.fixture(autouse=True)
def reaps_everything() -> Iterator[None]:
    before = _children()
    yield
    _forkserver.shutdown()  # the warm server is meant to outlive spawns, not the test
    left = _children() - before
    assert not left, f"left running: {left}"


def test_refused_uid_map_raises_typed_error_naming_the_map_and_leaves_nothing() -> None:
    spec = NamespaceSpec(new=frozenset({"user"}),
                         uid_map=(IdMap(0, 100000, 10), IdMap(5, 200000, 10)))
    before = _children()
    with pytest.raises(errors.SyscallInvalidError) as info:
        spawn(spec, [BB, "sleep", "60"])
    err = info.value
    assert err.syscall == "write uid_map" and err.errno == errno.EINVAL
    assert "0 100000 10; 5 200000 10" in str(err)
    assert err.hint and "overlap" in err.hint
    assert _children() == before


def test_unknown_binary_is_execve_enoent_from_spawn() -> None:
    for spec in (NamespaceSpec(new=frozenset({"uts"})), NamespaceSpec(new=frozenset({"pid"}))):
        with pytest.raises(errors.SyscallNotFoundError) as info:
            run(spec, ["/nonexistent/lk-binary"])
        assert info.value.syscall == "execve" and info.value.errno == errno.ENOENT
        assert info.value.filename == "/nonexistent/lk-binary"


def test_join_wrong_kind_is_setns_einval_with_hint() -> None:
    with pytest.raises(errors.SyscallInvalidError) as info:
        run(NamespaceSpec(join={"net": "/proc/self/ns/uts"}), [BB, "true"])
    assert info.value.syscall == "setns" and info.value.hint


def test_join_missing_path_is_open_enoent() -> None:
    with pytest.raises(errors.SyscallNotFoundError) as info:
        run(NamespaceSpec(join={"net": "/proc/999999999/ns/net"}), [BB, "true"])
    assert info.value.syscall == "open"


def test_child_pid_is_the_command_and_status_comes_back(spawn_path: str) -> None:
    for spec in (NamespaceSpec(new=frozenset({"uts"})),
                 NamespaceSpec(new=frozenset({"pid", "uts"}))):
        with spawn(spec, [BB, "sleep", "60"]) as child:
            assert Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")[1] == b"sleep"
            if spec.needs_fork or spawn_path == "server":  # the helper is argv's parent
                assert psutil.Process(child.pid).ppid() == child.helper_pid
                helper_cmd = psutil.Process(child.helper_pid).cmdline()
                assert ("labkit.ns.child" in helper_cmd) == (spawn_path != "direct")
            else:
                assert child.pid == child.helper_pid
            assert child.returncode is None
            child.kill(signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        assert run(spec, [BB, "sh", "-c", "exit 7"]).returncode == 7


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_context_manager_kills_and_reaps() -> None:
    with spawn(NamespaceSpec(new=frozenset({"pid"})), [BB, "sleep", "60"]) as child:
        pid, helper = child.pid, child.helper_pid
    assert child.returncode == -signal.SIGKILL
    assert _gone(helper)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != "sleeping"


def test_run_timeout_kills_the_command() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        run(NamespaceSpec(new=frozenset({"uts"})), [BB, "sleep", "60"], timeout=0.5)


def test_env_cwd_stdin_and_pass_fds(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        res = run(NamespaceSpec(new=frozenset({"uts", "mnt"})),
                  [BB, "sh", "-c", f"pwd; echo $LK_VAR; cat; echo fd >&{w}"],
                  env={"LK_VAR": "lk-value", "PATH": "/bin"}, cwd=tmp_path, input="from stdin\n",
                  pass_fds=(w,))
        assert res.stdout == f"{tmp_path}\nlk-value\nfrom stdin\n"
        assert os.read(r, 10) == b"fd\n"
    finally:
        os.close(r)
        os.close(w)


def test_enter_sees_the_spawned_hostname() -> None:
    name = f"lk-test-{os.getpid()}-enter"
    with spawn(NamespaceSpec(new=frozenset({"uts", "pid", "mnt"}), hostname=name),
               [BB, "sleep", "60"]) as child:
        res = enter(child.pid, argv=[BB, "sh", "-c", "hostname; echo $$"])
        host, pid = res.stdout.split()
        assert host == name and int(pid) > 1  # joined pid ns: 1 is the sleeper
        only_uts = enter(child.pid, kinds=["uts"], argv=[BB, "hostname"])
        assert only_uts.stdout == f"{name}\n"
    with pytest.raises(errors.NotFoundError):
        enter(999_999_999, argv=[BB, "true"])
    with pytest.raises(errors.InvalidArgumentError):
        enter(os.getpid(), kinds=["netw"], argv=[BB, "true"])


def test_inspect_and_compare_live_processes() -> None:
    with spawn(NamespaceSpec(new=frozenset({"uts", "net"})), [BB, "sleep", "60"]) as child:
        theirs = namespaces(child.pid)
        ours = namespaces()
        for kind in ("uts", "net"):
            st = os.stat(f"/proc/{child.pid}/ns/{kind}")
            assert (theirs[kind].inode, theirs[kind].dev) == (st.st_ino, st.st_dev)
        same = compare(child.pid)
        assert {k for k, v in same.items() if not v} == {"uts", "net"}
        assert ours["mnt"] == theirs["mnt"]
        rows = {(r.kind, r.inode): r for r in list_namespaces()}
        row = rows[("uts", theirs["uts"].inode)]
        # argv, plus the helper when it forked argv (fork-server mode always does)
        members = {child.pid} if child.helper_pid == child.pid else {child.pid, child.helper_pid}
        if namespaces(child.helper_pid)["uts"] != theirs["uts"]:
            members = {child.pid}
        assert (row.nprocs, row.pid) == (len(members), min(members))
        assert "sleep" in row.command if row.pid == child.pid else "labkit.ns.child" in row.command


def test_spawn_from_a_multithreaded_caller() -> None:
    # STYLE C9: unshare(CLONE_NEWUSER) would fail with EINVAL here; the helper does it.
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert len(os.listdir("/proc/self/task")) > 1
        spec = NamespaceSpec(new=frozenset({"user", "mnt"}),
                             uid_map=(IdMap(0, 100000, 65536),), gid_map=(IdMap(0, 100000, 65536),))
        assert run(spec, [BB, "id", "-u"]).stdout == "0\n"
    finally:
        stop.set()
        t.join()


def test_all_eight_at_once() -> None:
    spec = NamespaceSpec(new=frozenset({"user", "pid", "net", "ipc", "uts", "cgroup", "time", "mnt"}),
                         hostname="lk-all", uid_map=(IdMap(0, 100000, 65536),),
                         gid_map=(IdMap(0, 100000, 65536),), time_offsets={"boottime": 10})
    with spawn(spec, [BB, "sleep", "60"]) as child:
        assert not any(compare(child.pid).values())
        assert enter(child.pid, argv=[BB, "sh", "-c", "hostname; id -u"]).stdout == "lk-all\n0\n"


def test_cwd_is_inherited_like_popen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "lk-cwd"
    sub.mkdir()
    monkeypatch.chdir(sub)
    res = run(NamespaceSpec(new=frozenset({"uts"})), [BB, "pwd"])
    assert res.stdout == f"{sub}\n"


def test_stderr_to_stdout_and_devnull() -> None:
    script = [BB, "sh", "-c", "echo out; echo err >&2"]
    spec = NamespaceSpec(new=frozenset({"uts"}))
    res = run(spec, script, stderr=subprocess.STDOUT)
    assert sorted(res.stdout.split()) == ["err", "out"] and res.stderr is None
    res = run(spec, script, stdout=subprocess.DEVNULL)
    assert res.stdout is None and res.stderr == "err\n"
