"""Network namespaces: enter one reversibly in-process; named ones under /run/netns like ip-netns(8).

``with netns(path):`` is the one in-process namespace change labkit allows (STYLE C9),
modelled on pyroute2's pushns/popns: setns(2) into a network namespace works in a
multi-threaded process, but affects only the calling thread.

create_netns(name) does what ``ip netns add`` does: make /run/netns a shared mount point,
create an empty file, and bind-mount a network namespace onto it so it outlives every
process.  The namespace comes from a short-lived spawn()ed child (never from the caller).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.ns.spec import NamespaceSpec

# Imported eagerly by labkit.ns (so that labkit.ns.netns is the function, not this module),
# hence light: pathlib, shutil and spawn are imported where they are used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["NETNS_RUN_DIR", "create_netns", "list_netns", "netns", "netns_path", "remove_netns"]

NETNS_RUN_DIR = "/run/netns"
_Dir = str | os.PathLike[str]


@contextmanager
def netns(path: str | os.PathLike[str]) -> Iterator[None]:
    """setns(2) the calling THREAD into the network namespace at ``path``; restore on exit.

    Only the calling thread moves (other threads, and sockets already open, stay where they
    are); sockets opened inside the block belong to the entered namespace for good.

    Raises SyscallError (open / setns) if ``path`` is not a network namespace.

    Example::

        with netns("/run/netns/lk-a"):
            IPRoute().get_links()     # the links of lk-a
    """
    # thread-self, not self: /proc/self/ns/net is the main thread's namespace (proc(5)).
    saved = _open("/proc/thread-self/ns/net")
    try:
        target = _open(os.fspath(path))
        try:
            syscalls.setns(target, consts.CLONE_NEWNET, target=os.fspath(path))
        finally:
            os.close(target)
        try:
            yield
        finally:
            syscalls.setns(saved, consts.CLONE_NEWNET, target="/proc/thread-self/ns/net")
    finally:
        os.close(saved)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, "open", path) from None


def _check_name(name: str) -> None:
    if not name.startswith("lk") or "/" in name or name in (".", "..") or len(name) > 64:
        raise errors.InvalidArgumentError(
            "netns name", f"{name!r} is not allowed",
            hint="labkit names start with 'lk' and contain no '/' (e.g. lk-test-1)")


def netns_path(name: str, run_dir: _Dir = NETNS_RUN_DIR) -> Path:
    """The bind-mount file of named netns ``name`` (it may not exist)."""
    from pathlib import Path

    _check_name(name)
    return Path(run_dir) / name


def list_netns(run_dir: _Dir = NETNS_RUN_DIR) -> list[str]:
    """ip netns list: the names under ``run_dir``, sorted."""
    try:
        return sorted(os.listdir(run_dir))
    except FileNotFoundError:
        return []


def _make_shared(run_dir: _Dir) -> None:
    # ip-netns(8) does this so mounts under /run/netns reach other mount namespaces: if
    # run_dir is not a mount point yet (EINVAL), bind it onto itself first.
    d = os.fspath(run_dir)
    os.makedirs(d, mode=0o755, exist_ok=True)
    try:
        syscalls.mount("", d, "none", consts.MS_SHARED | consts.MS_REC)
    except errors.SyscallInvalidError:
        syscalls.mount(d, d, "none", consts.MS_BIND | consts.MS_REC)
        syscalls.mount("", d, "none", consts.MS_SHARED | consts.MS_REC)


def create_netns(name: str, run_dir: _Dir = NETNS_RUN_DIR) -> Path:
    """ip netns add NAME: a new, persistent network namespace at run_dir/NAME.

    Raises InvalidArgumentError for a name not starting with "lk", AlreadyExistsError if
    the name is taken, SyscallError if a mount fails (nothing is left behind then).
    """
    import shutil

    from labkit.ns._spawn import spawn

    path = netns_path(name, run_dir)
    _make_shared(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    except FileExistsError:
        raise errors.AlreadyExistsError("netns", name) from None
    os.close(fd)
    try:
        sleeper = shutil.which("sleep") or "/bin/sleep"
        with spawn(NamespaceSpec(new=frozenset({"net"})), [sleeper, "3600"]) as child:
            syscalls.mount(f"/proc/{child.pid}/ns/net", str(path), "none", consts.MS_BIND)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def remove_netns(name: str, run_dir: _Dir = NETNS_RUN_DIR) -> None:
    """ip netns delete NAME: detach the bind mount and remove the file.

    The namespace itself lives on while a process is still in it (network_namespaces(7)).
    Raises NotFoundError if there is no such named netns.
    """
    path = netns_path(name, run_dir)
    if not path.exists():
        raise errors.NotFoundError("netns", name)
    try:
        syscalls.umount2(str(path), consts.MNT_DETACH)
    except errors.SyscallInvalidError:
        pass  # not mounted (a half-created leftover): just remove the file
    path.unlink()
