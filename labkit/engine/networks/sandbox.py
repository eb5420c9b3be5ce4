"""A container's network namespace made by the daemon, kept as a bind-mounted file.

Why the daemon makes it (Docker's libnetwork does the same, /run/docker/netns/<id>): the
veth, the addresses, the routes and the embedded DNS's sockets must be in place *before*
the container's process runs, and the bundle names the namespace by path
(config.json linux.namespaces {"type": "network", "path": ...}, OCI runtime spec), so the
runtime joins it instead of making a new one.  The file keeps the namespace alive across
daemon restarts (live-restore) and lets the daemon reach it with no process of the
container's (teardown after the container died while no daemon ran).

How it is made cheaply: a short-lived thread unshare(2)s CLONE_NEWNET -- the network
namespace is per thread (network_namespaces(7), unshare(2): CLONE_NEWNET needs no
single-threaded process) -- sets ``lo`` up there with one netlink request from a socket
opened in that thread (a socket belongs to its creator's namespace for good), bind-mounts
/proc/thread-self/ns/net onto the file and exits, taking the namespace change with it.
No process is forked.  A small pool keeps a few namespaces ready (``Sandboxes.take``), so
the unshare's cost (the kernel sets up a whole network stack: ~1-3 ms here, and
``cleanup_net`` of old ones competes for the same lock) is paid off the start path.

The directory is bind-mounted onto itself and made private (mount_namespaces(7)): a
namespace file must not propagate into other mount namespaces (a container's, a
`ip netns exec` shell's), where a copy would keep the namespace alive after the daemon
unmounts its own; Docker does the same for /run/docker/netns.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import threading
from pathlib import Path

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.engine import paths

__all__ = ["Sandboxes", "release", "sandbox_dir"]

POOL = 2  # namespaces kept ready; a burst of starts beyond it makes them on the spot
MNT_DETACH = 2  # include/uapi/linux/fs.h (umount2(2) MNT_DETACH)


def sandbox_dir() -> Path:
    return paths.netns_dir()


def _is_mount(path: Path) -> bool:
    target = os.fspath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def _private_dir(d: Path) -> None:
    paths.make_dir(d, paths.PRIVATE_DIR_MODE)
    if not _is_mount(d):
        syscalls.mount(str(d), str(d), "none", consts.MS_BIND)
    syscalls.mount("", str(d), "none", consts.MS_PRIVATE)


def _make(path: Path) -> None:
    """The thread body: a new netns with lo up, bind-mounted onto ``path``."""
    from pyroute2 import IPRoute

    syscalls.unshare(consts.CLONE_NEWNET, target="netns")
    with IPRoute() as ipr:  # opened here: this socket talks to the new namespace
        ipr.link("set", index=1, state="up")  # lo is ifindex 1 in every netns
    syscalls.mount("/proc/thread-self/ns/net", str(path), "none", consts.MS_BIND)


def make_netns(path: Path) -> None:
    """Create the file and the namespace behind it; nothing is left on failure."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    os.close(fd)
    failure: list[BaseException] = []

    def body() -> None:
        try:
            _make(path)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            failure.append(err)

    t = threading.Thread(target=body, name="lk-netns", daemon=True)
    t.start()
    t.join()
    if failure:
        path.unlink(missing_ok=True)
        raise failure[0]


def release(path: str | os.PathLike[str]) -> None:
    """Unmount and remove a namespace file (idempotent).  The namespace dies with its last
    user; its veth pairs go with it (the kernel's netns cleanup)."""
    p = Path(path)
    with contextlib.suppress(errors.SyscallInvalidError, errors.SyscallNotFoundError):
        syscalls.umount2(str(p), MNT_DETACH)
    p.unlink(missing_ok=True)


class Sandboxes:
    """The daemon's namespace files under ``sandbox_dir()``; a few made ahead of need.

    Files are named ``lk<12 random hex>``; a container's record keeps its file's path
    (Docker's SandboxKey).  A mount point cannot be renamed (rename(2): EBUSY), so a spare
    is handed out under the name it was made with."""

    def __init__(self, root: Path | None = None, pool: int = POOL) -> None:
        self.dir = root or sandbox_dir()
        _private_dir(self.dir)
        self._ready: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._want = pool
        self._lock = threading.Lock()
        self._filling = False
        self._closed = False

    def sweep(self, keep: set[str]) -> list[str]:
        """Daemon start: release every namespace file no container holds (an earlier
        daemon's spares, a container that went while no daemon ran).  Returns them."""
        gone = []
        for f in self.dir.iterdir():
            if str(f) not in keep:
                release(f)
                gone.append(str(f))
        return gone

    def _new_path(self) -> Path:
        return self.dir / f"lk{secrets.token_hex(6)}"

    def take(self) -> Path:
        """A fresh namespace with lo up: a ready one, or one made now."""
        try:
            path = self._ready.get_nowait()
        except queue.Empty:
            path = self._new_path()
            make_netns(path)
        self.refill()
        return path

    def refill(self) -> None:
        """Top the pool up in the background (one filler thread at a time)."""
        with self._lock:
            if self._filling or self._closed or self._want <= 0:
                return
            self._filling = True
        threading.Thread(target=self._fill, name="lk-netns-pool", daemon=True).start()

    def _fill(self) -> None:
        try:
            while not self._closed and self._ready.qsize() < self._want:
                p = self._new_path()
                try:
                    make_netns(p)
                except (errors.LabkitError, OSError):
                    return  # the next take makes its own and says why
                if self._closed:
                    release(p)
                    return
                self._ready.put(p)
        finally:
            with self._lock:
                self._filling = False

    def close(self) -> None:
        """Daemon stop: drop the spares (containers' namespaces stay: live-restore); with
        none left, the directory's own bind mount goes too."""
        self._closed = True
        while True:
            try:
                release(self._ready.get_nowait())
            except queue.Empty:
                break
        with contextlib.suppress(OSError, errors.LabkitError):
            if not any(self.dir.iterdir()):
                syscalls.umount2(str(self.dir), MNT_DETACH)
