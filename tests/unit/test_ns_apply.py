"""child_enter/parent_serve through a recording Syscalls seam (STYLE C8): order and handshake."""

from __future__ import annotations

import errno
import os
import pickle
import socket
import threading
from collections.abc import Iterator

import pytest

from labkit import errors
from labkit._sys import consts
from labkit.ns import apply
from labkit.ns.spec import KINDS, IdMap, NamespaceSpec


class RecordingSyscalls(apply.Syscalls):
    """Records every call; ``fail`` maps a call name to the errno it should fail with."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail or {}
        self._fd = 100

    def _rec(self, name: str, *args: object, target: str = "") -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise errors.from_errno(self.fail[name], name, target or None)

    def open(self, path: str) -> int:
        self._fd += 1
        self._rec("open", path)
        return self._fd

    def close(self, fd: int) -> None:
        self._rec("close", fd)

    def setns(self, fd: int, nstype: int, target: str) -> None:
        self._rec("setns", fd, nstype, target)

    def unshare(self, flags: int, target: str) -> None:
        self._rec("unshare", flags)

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int) -> None:
        self._rec("mount", source, target, fstype, flags)

    def sethostname(self, name: str) -> None:
        self._rec("sethostname", name)

    def setdomainname(self, name: str) -> None:
        self._rec("setdomainname", name)

    def setresgid(self, gid: int) -> None:
        self._rec("setresgid", gid)

    def setgroups(self, groups: list[int]) -> None:
        self._rec("setgroups", tuple(groups))

    def setresuid(self, uid: int) -> None:
        self._rec("setresuid", uid)

    def prctl(self, option: int, arg: int) -> None:
        self._rec("prctl", option, arg)

    def write_file(self, path: str, data: str, syscall: str, target: str) -> None:
        self._rec(syscall, path, data, target=target)

    def names(self) -> list[str]:
        return [str(c[0]) for c in self.calls]


@pytest.fixture
def pair() -> Iterator[tuple[int, int]]:
    a, b = socket.socketpair()
    with a, b:
        yield a.fileno(), b.fileno()


ALL_JOIN = {k: f"/proc/42/ns/{k}" for k in reversed(KINDS)}  # deliberately out of order


def test_joins_open_everything_first_then_setns_user_first_mnt_last() -> None:
    rec = RecordingSyscalls(fail={"setresgid": errno.EINVAL})  # 0 unmapped: keep our ids
    apply.child_enter(NamespaceSpec(join=ALL_JOIN), -1, sys=rec)
    names = rec.names()
    assert names[:8] == ["open"] * 8
    setns = [c for c in rec.calls if c[0] == "setns"]
    assert [c[2] for c in setns] == [consts.NS_FLAGS[k] for k in KINDS]
    assert setns[0][2] == consts.CLONE_NEWUSER and setns[-1][2] == consts.CLONE_NEWNS
    assert [c[3] for c in setns] == [f"/proc/42/ns/{k}" for k in KINDS]
    # every fd opened is closed, after the last setns
    assert sorted(int(str(c[1])) for c in rec.calls if c[0] == "close") == list(range(101, 109))
    assert names.index("close") > max(i for i, n in enumerate(names) if n == "setns")
    # joined a user ns: tried to become its root (nsenter -U), gave up on EINVAL
    assert names[-1] == "setresgid"


def test_joined_user_ns_becomes_root_when_mapped() -> None:
    rec = RecordingSyscalls()
    apply.child_enter(NamespaceSpec(join={"user": "/proc/42/ns/user"}), -1, sys=rec)
    assert rec.calls[-4:] == [("setresgid", 0), ("setgroups", ()), ("setresuid", 0),
                              ("prctl", consts.PR_SET_DUMPABLE, 1)]


def test_failed_setns_closes_all_fds_and_raises_typed() -> None:
    rec = RecordingSyscalls(fail={"setns": errno.EINVAL})
    with pytest.raises(errors.SyscallInvalidError) as info:
        apply.child_enter(NamespaceSpec(join={"net": "/x/net", "uts": "/x/uts"}), -1, sys=rec)
    assert info.value.syscall == "setns" and info.value.errno == errno.EINVAL
    assert info.value.hint and "multi-threaded" in info.value.hint
    assert rec.names().count("close") == 2


def test_new_user_alone_first_then_the_rest_at_once() -> None:
    spec = NamespaceSpec(new=frozenset(KINDS), hostname="lk-h", domainname="lk-d",
                         time_offsets={"boottime": 3600, "monotonic": -1})
    rec = RecordingSyscalls()
    apply.child_enter(spec, -1, sys=rec)
    unshares = [c[1] for c in rec.calls if c[0] == "unshare"]
    rest = 0
    for k in KINDS[1:]:
        rest |= consts.NS_FLAGS[k]
    assert unshares == [consts.CLONE_NEWUSER, rest]
    assert rec.calls[2:] == [
        ("mount", None, "/", None, consts.MS_REC | consts.MS_PRIVATE),
        ("sethostname", "lk-h"),
        ("setdomainname", "lk-d"),
        ("write timens_offsets", "/proc/self/timens_offsets", "7 3600 0\n1 -1 0\n"),
    ]


def test_propagation_unchanged_mounts_nothing() -> None:
    rec = RecordingSyscalls()
    apply.child_enter(NamespaceSpec(new=frozenset({"mnt"}), propagation="unchanged"), -1, sys=rec)
    assert rec.names() == ["unshare"]


def _threaded(fn: object, *args: object, **kw: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def body() -> None:
        try:
            out.append(fn(*args, **kw))  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            out.append(exc)

    t = threading.Thread(target=body)
    t.start()
    return t, out


MAPPED = NamespaceSpec(
    new=frozenset({"user", "uts"}), hostname="lk-u",
    uid_map=(IdMap(0, 100000, 65536),), gid_map=(IdMap(0, 100000, 65536),), setgroups_deny=True)


def test_handshake_parent_writes_setgroups_gid_then_uid_before_child_goes_on(
    pair: tuple[int, int],
) -> None:
    child_rec, parent_rec = RecordingSyscalls(), RecordingSyscalls()
    t, out = _threaded(apply.child_enter, MAPPED, pair[0], sys=child_rec)
    apply.parent_serve(4242, MAPPED, pair[1], sys=parent_rec, procfs="/fakeproc")
    t.join(5)
    assert out == [None]
    assert [c[:3] for c in parent_rec.calls] == [
        ("write setgroups", "/fakeproc/4242/setgroups", "deny"),
        ("write gid_map", "/fakeproc/4242/gid_map", "0 100000 65536\n"),
        ("write uid_map", "/fakeproc/4242/uid_map", "0 100000 65536\n"),
    ]
    # root of the new ns (no setgroups: denied), then the remaining namespaces
    assert child_rec.names() == ["unshare", "setresgid", "setresuid", "prctl", "unshare",
                                 "sethostname"]


def test_refused_map_raises_on_both_sides_naming_the_map(pair: tuple[int, int]) -> None:
    spec = NamespaceSpec(new=frozenset({"user"}),
                         uid_map=(IdMap(0, 100000, 10), IdMap(5, 200000, 10)))
    child_rec = RecordingSyscalls()
    t, out = _threaded(apply.child_enter, spec, pair[0], sys=child_rec)
    with pytest.raises(errors.SyscallInvalidError) as info:
        apply.parent_serve(7, spec, pair[1], sys=RecordingSyscalls(fail={"write uid_map": 22}))
    t.join(5)
    err = info.value
    assert err.syscall == "write uid_map"
    assert "0 100000 10; 5 200000 10" in str(err)
    assert err.hint and "overlap" in err.hint
    assert isinstance(out[0], errors.SyscallInvalidError) and out[0].syscall == "write uid_map"
    assert child_rec.names() == ["unshare"]  # it went no further


def test_parent_raises_child_error_sent_instead_of_m(pair: tuple[int, int]) -> None:
    exc = errors.from_errno(errno.EINVAL, "setns", "/proc/1/ns/user")
    apply.send_frame(pair[0], b"E", pickle.dumps(exc))
    with pytest.raises(errors.SyscallInvalidError) as info:
        apply.parent_serve(7, MAPPED, pair[1], sys=RecordingSyscalls())
    assert info.value.syscall == "setns" and info.value.filename == "/proc/1/ns/user"


def test_dead_peer_is_an_error_not_a_hang() -> None:
    a, b = socket.socketpair()
    with b:
        a.close()
        with pytest.raises(errors.SyscallError) as info:
            apply.parent_serve(7, MAPPED, b.fileno(), sys=RecordingSyscalls())
        assert info.value.errno == errno.EPIPE and "closed" in (info.value.hint or "")
    a, b = socket.socketpair()
    with a:
        b.close()
        with pytest.raises(errors.SyscallError):
            apply.child_enter(MAPPED, a.fileno(), sys=RecordingSyscalls())


def test_silent_peer_times_out(pair: tuple[int, int]) -> None:
    with pytest.raises(errors.SyscallError) as info:
        apply.parent_serve(7, MAPPED, pair[1], sys=RecordingSyscalls(), timeout=0.05)
    assert info.value.errno == errno.ETIMEDOUT


def test_no_maps_means_no_handshake(pair: tuple[int, int]) -> None:
    rec = RecordingSyscalls()
    apply.parent_serve(7, NamespaceSpec(new=frozenset({"user"})), pair[1], sys=rec)
    apply.child_enter(NamespaceSpec(new=frozenset({"user"})), pair[0], sys=rec)
    assert rec.names() == ["unshare"]


def test_frames_survive_split_writes(pair: tuple[int, int]) -> None:
    payload = os.urandom(70000)  # larger than one read
    t, out = _threaded(apply.recv_frame, pair[1])
    apply.send_frame(pair[0], b"E", payload)
    t.join(5)
    assert out == [(b"E", payload)]


def test_error_payload_falls_back_for_unpicklable() -> None:
    class Local(Exception):
        pass

    exc = pickle.loads(apply.error_payload(Local("boom")))
    assert isinstance(exc, OSError) and "boom" in str(exc)
