"""Named network namespaces under /run/netns, and the reversible in-process ``with netns(path)``."""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from labkit import errors
from labkit.ns import NamespaceSpec, namespaces, run
from labkit.ns.netns import create_netns, list_netns, netns, remove_netns

pytestmark = pytest.mark.privileged

BB = "/bin/busybox"
_n = itertools.count()


@pytest.fixture
def nsname() -> Iterator[str]:
    """A unique lk-prefixed netns name, removed afterwards whatever the test did (pyroute2 nsname)."""
    name = f"lk-test-{os.getpid()}-{next(_n)}"
    yield name
    if name in list_netns():
        remove_netns(name)


def _my_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_create_join_remove(nsname: str) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    path = create_netns(nsname)
    assert path == Path("/run/netns") / nsname
    assert nsname in list_netns()
    # the namespace outlives the process that made it: bind mount only
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before
    assert os.stat(path).st_ino != namespaces()["net"].inode
    res = run(NamespaceSpec(join={"net": str(path)}), [BB, "ip", "-o", "link"])
    assert res.stdout.count("\n") == 1 and ": lo:" in res.stdout
    with pytest.raises(errors.AlreadyExistsError):
        create_netns(nsname)
    remove_netns(nsname)
    assert nsname not in list_netns() and not path.exists()
    assert not any(str(path) in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    with pytest.raises(errors.NotFoundError):
        remove_netns(nsname)


def test_bad_name_creates_nothing() -> None:
    before = list_netns()
    with pytest.raises(errors.InvalidArgumentError):
        create_netns("test-not-lk")
    assert list_netns() == before


def test_with_netns_is_reversible_and_per_thread(nsname: str) -> None:
    path = create_netns(nsname)
    home = _my_netns_inode()
    seen_by_other_thread: list[int] = []
    go = threading.Event()

    def other() -> None:
        go.wait(30)
        seen_by_other_thread.append(_my_netns_inode())

    # started before the block: a thread created inside would inherit the namespace (clone(2))
    t = threading.Thread(target=other)
    t.start()
    with netns(path):
        assert _my_netns_inode() == os.stat(path).st_ino
        assert socket.if_nameindex() == [(1, "lo")]
        go.set()
        t.join()
    assert seen_by_other_thread == [home]  # setns(2) moved only this thread
    assert _my_netns_inode() == home
    assert len(socket.if_nameindex()) > 1


def test_with_netns_restores_after_an_exception(nsname: str) -> None:
    path = create_netns(nsname)
    home = _my_netns_inode()
    with pytest.raises(ZeroDivisionError), netns(path):
        1 / 0  # noqa: B018
    assert _my_netns_inode() == home


def test_with_netns_on_a_non_netns_path_fails_typed(tmp_path: Path) -> None:
    home = _my_netns_inode()
    with pytest.raises(errors.SyscallInvalidError) as info, netns("/proc/self/ns/uts"):
        pass
    assert info.value.syscall == "setns"
    with pytest.raises(errors.SyscallNotFoundError), netns(tmp_path / "missing"):
        pass
    assert _my_netns_inode() == home
