"""Apply a NamespaceSpec: the child's half (child_enter) and the parent's half (parent_serve).

The child runs between fork and exec, single-threaded (unshare(2): CLONE_NEWUSER and
setns(2) into a user or mount namespace fail with EINVAL in a multi-threaded process), so
this module imports only labkit._sys, labkit.errors, labkit.ns.spec and light stdlib, and
does nothing but system calls.

The order (namespaces(7), runc nsenter, youki ORDERED_NAMESPACES):

1. open every ``spec.join`` path first (after setns into a mount or user namespace the same
   path may resolve elsewhere or be unreadable), then setns(2) in NS_FLAGS order: user first,
   mnt last;
2. unshare(CLONE_NEWUSER) alone, so the new user namespace owns everything created after it;
   if id maps are wanted, ask the parent to write them (only a process outside the namespace
   with CAP_SETUID/CAP_SETGID there may, user_namespaces(7)) and wait for its answer;
3. unshare the remaining kinds at once; make "/" private in a new mount namespace (so mounts
   made inside never propagate to the host, as unshare(1) does); set hostname/domainname;
   write /proc/self/timens_offsets before any process enters the new time namespace.

Handshake on ``sock`` (a socket.socketpair() end; SOCK_STREAM or SOCK_SEQPACKET): frames are a
tag byte, a 4-byte big-endian length and a payload.  child -> parent ``M`` (write my maps);
parent -> child ``K`` (done) or ``E`` + pickled exception (the kernel refused a map).  The
child may also send ``E`` instead of ``M`` when it failed before asking; parent_serve then
raises the child's error.  EOF (the peer died) is an error on both sides, never a hang.
"""

from __future__ import annotations

import errno
import os

# Imported up front, never lazily: the runtime's container init reports its errors through
# error_payload() after pivot_root(2), when the host's Python library is out of reach.
import pickle

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.ns import frames
from labkit.ns.spec import KINDS, IdMap, NamespaceSpec

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "LinuxSyscalls",
    "Syscalls",
    "child_enter",
    "parent_serve",
    "recv_frame",
    "send_frame",
]

# Seconds either side waits for the other before giving up; a live peer answers in
# microseconds, so this only bounds a peer that is alive but stuck.
HANDSHAKE_TIMEOUT = 30.0

_PROPAGATION = {
    "private": consts.MS_PRIVATE,
    "slave": consts.MS_SLAVE,
    "shared": consts.MS_SHARED,
}

# time_namespaces(7): /proc/PID/timens_offsets takes "<clock-id> <secs> <nanosecs>", with
# clock ids CLOCK_MONOTONIC (1) and CLOCK_BOOTTIME (7); numbers work on every kernel >= 5.6.
_CLOCK_IDS = {"monotonic": 1, "boottime": 7}


class Syscalls:
    """The seam child_enter/parent_serve call through (STYLE C8, youki ``trait Syscall``).

    A plain base class rather than typing.Protocol: typing costs ~8 ms to import on the
    helper's start path.  LinuxSyscalls is the kernel; tests subclass it to record calls.
    """

    def open(self, path: str) -> int:
        raise NotImplementedError

    def close(self, fd: int) -> None:
        raise NotImplementedError

    def setns(self, fd: int, nstype: int, target: str) -> None:
        raise NotImplementedError

    def unshare(self, flags: int, target: str) -> None:
        raise NotImplementedError

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int) -> None:
        raise NotImplementedError

    def sethostname(self, name: str) -> None:
        raise NotImplementedError

    def setdomainname(self, name: str) -> None:
        raise NotImplementedError

    def setresgid(self, gid: int) -> None:
        raise NotImplementedError

    def setgroups(self, groups: list[int]) -> None:
        raise NotImplementedError

    def setresuid(self, uid: int) -> None:
        raise NotImplementedError

    def prctl(self, option: int, arg: int) -> None:
        raise NotImplementedError

    def write_file(self, path: str, data: str, syscall: str, target: str) -> None:
        raise NotImplementedError


class LinuxSyscalls(Syscalls):
    """The real kernel, through labkit._sys.syscalls."""

    def open(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise errors.from_errno(err.errno or errno.EIO, "open", path) from None

    def close(self, fd: int) -> None:
        os.close(fd)

    def setns(self, fd: int, nstype: int, target: str) -> None:
        syscalls.setns(fd, nstype, target=target)

    def unshare(self, flags: int, target: str) -> None:
        syscalls.unshare(flags, target=target)

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int) -> None:
        syscalls.mount(source, target, fstype, flags)

    def sethostname(self, name: str) -> None:
        syscalls.sethostname(name)

    def setdomainname(self, name: str) -> None:
        syscalls.setdomainname(name)

    def setresgid(self, gid: int) -> None:
        syscalls.setresgid(gid, gid, gid)

    def setgroups(self, groups: list[int]) -> None:
        syscalls.setgroups(groups)

    def setresuid(self, uid: int) -> None:
        syscalls.setresuid(uid, uid, uid)

    def prctl(self, option: int, arg: int) -> None:
        syscalls.prctl(option, arg)

    def write_file(self, path: str, data: str, syscall: str, target: str) -> None:
        # /proc map files must be written in ONE write(2) (user_namespaces(7)): no buffering.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            raise errors.from_errno(err.errno or errno.EIO, syscall, target) from None
        try:
            os.write(fd, data.encode())
        except OSError as err:
            raise errors.from_errno(err.errno or errno.EIO, syscall, target) from None
        finally:
            os.close(fd)


LINUX = LinuxSyscalls()


# -- framing -------------------------------------------------------------------------------

def send_frame(sock: int, tag: bytes, payload: bytes = b"") -> None:
    """Write one frame (labkit.ns.frames) in a single write(2)."""
    data = frames.pack(tag, payload)
    try:
        while data:
            data = data[os.write(sock, data):]
    except OSError as err:
        raise errors.from_errno(
            err.errno or errno.EPIPE, "send", "namespace handshake",
            hint="the other side of the namespace handshake exited early") from None


def recv_frame(sock: int, timeout: float | None = HANDSHAKE_TIMEOUT) -> tuple[bytes, bytes]:
    """Read one frame; EOF or a timeout raises SyscallError (never blocks forever).

    Callers keep the protocol strictly alternating, so nothing past the frame is ever read.
    """
    frame = frames.Reader(sock, "namespace handshake").next(timeout)
    if frame is None:
        raise errors.from_errno(
            errno.EPIPE, "recv", "namespace handshake",
            hint="the other side closed the socket: it exited (see its stderr)")
    return frame


def _raise_pickled(payload: bytes) -> None:
    exc = pickle.loads(payload)
    if not isinstance(exc, BaseException):
        raise errors.from_errno(errno.EPROTO, "recv", "namespace handshake: not an exception")
    raise exc


def error_payload(exc: BaseException) -> bytes:
    """Pickle ``exc`` for an ``E`` frame; fall back to an OSError carrying its repr."""
    try:
        return pickle.dumps(exc)
    except Exception:  # noqa: BLE001 -- an unpicklable exception must still reach the other side
        return pickle.dumps(OSError(errno.EIO, f"namespace setup failed: {exc!r}"))


# -- the child -----------------------------------------------------------------------------

def _maps_zero(maps: tuple[IdMap, ...]) -> bool:
    return any(m.inside <= 0 < m.inside + m.count for m in maps)


def _become_root_joined(sc: Syscalls) -> None:
    # After setns(2) into a user namespace our ids are unchanged host ids, usually unmapped
    # there (shown as 65534).  Like nsenter(1) --user and runc's nsexec, switch to uid/gid
    # 0 of that namespace when it maps them; EINVAL means 0 is not mapped: keep our ids.
    try:
        sc.setresgid(0)
    except errors.SyscallInvalidError:
        return
    try:
        sc.setgroups([])
    except errors.SyscallPermissionError:
        pass  # /proc/PID/setgroups is "deny" in that namespace
    try:
        sc.setresuid(0)
    except errors.SyscallInvalidError:
        pass
    sc.prctl(consts.PR_SET_DUMPABLE, 1)  # see child_enter: keep /proc/self/* ours


def child_enter(spec: NamespaceSpec, sock: int, *, sys: Syscalls | None = None) -> None:
    """setns(2) + unshare(2): put the calling process into ``spec``'s namespaces.

    Run in a single-threaded child between fork and exec.  When id maps are wanted, the
    parent must run parent_serve(pid, spec, other_end) at the same time.  After the maps
    are written and uid/gid 0 are mapped, the child becomes root inside the user namespace
    (setresgid/setgroups/setresuid 0, as unshare(1) --map-root-user leaves it); otherwise
    its ids stay unmapped (shown as the overflow id 65534).  After joining a user namespace
    the child likewise becomes its uid/gid 0 when those are mapped (nsenter(1) --user).

    New ``pid`` and ``time`` namespaces (and a joined ``pid``) apply only to the caller's
    next child (spec.needs_fork): fork once more and exec there.

    Raises SyscallError (errno, syscall, target, hint) for the first failing call, or the
    parent's error (``write uid_map``/``write gid_map``) when the kernel refused a map.
    """
    sc = sys if sys is not None else LINUX
    # 1. Join.  Open everything first (runc nsenter does the same), then setns in order.
    opened: list[tuple[str, int, str]] = []
    try:
        for kind in KINDS:
            if kind in spec.join:
                path = spec.join[kind]
                opened.append((kind, sc.open(path), path))
        for kind, fd, path in opened:
            sc.setns(fd, consts.NS_FLAGS[kind], path)
    finally:
        for _, fd, _ in opened:
            sc.close(fd)
    if "user" in spec.join:
        _become_root_joined(sc)

    # 2. The user namespace alone, first: it owns the namespaces unshared after it.
    if "user" in spec.new:
        sc.unshare(consts.CLONE_NEWUSER, "user")
        if spec.wants_maps:
            send_frame(sock, b"M")
            tag, payload = recv_frame(sock)
            if tag == b"E":
                _raise_pickled(payload)
            if tag != b"K":
                raise errors.from_errno(errno.EPROTO, "recv", f"namespace handshake: {tag!r}")
            # Become root of the new namespace when root is mapped: gid first (setgroups needs
            # CAP_SETGID, which dropping the uid first could cost), then groups, then uid.
            if _maps_zero(spec.gid_map):
                sc.setresgid(0)
                if not spec.setgroups_deny:
                    sc.setgroups([])
            if _maps_zero(spec.uid_map):
                sc.setresuid(0)
            if _maps_zero(spec.uid_map) or _maps_zero(spec.gid_map):
                # prctl(2): changing ids clears "dumpable", which makes /proc/self/* owned
                # by host root, so /proc/self/timens_offsets could not be written (EACCES).
                sc.prctl(consts.PR_SET_DUMPABLE, 1)

    # 3. Everything else at once.
    rest = [k for k in KINDS if k in spec.new and k != "user"]
    flags = 0
    for kind in rest:
        flags |= consts.NS_FLAGS[kind]
    if flags:
        sc.unshare(flags, ",".join(rest))
    if "mnt" in spec.new and spec.propagation in _PROPAGATION:
        # mount_namespaces(7): a new mount ns copies the parent's propagation; with shared
        # mounts (systemd's default) a mount inside would appear on the host.
        sc.mount(None, "/", None, consts.MS_REC | _PROPAGATION[spec.propagation])
    if spec.hostname is not None:
        sc.sethostname(spec.hostname)
    if spec.domainname is not None:
        sc.setdomainname(spec.domainname)
    if "time" in spec.new and spec.time_offsets:
        # Must precede the first process entering the namespace (EACCES afterwards).
        text = "".join(f"{_CLOCK_IDS[c]} {int(s)} 0\n" for c, s in sorted(spec.time_offsets.items()))
        sc.write_file("/proc/self/timens_offsets", text, "write timens_offsets", text.strip())


# -- the parent ----------------------------------------------------------------------------

def _map_text(maps: tuple[IdMap, ...]) -> str:
    return "".join(m.line() for m in maps)


def parent_serve(
    pid: int,
    spec: NamespaceSpec,
    sock: int,
    *,
    sys: Syscalls | None = None,
    procfs: str = "/proc",
    timeout: float | None = HANDSHAKE_TIMEOUT,
) -> None:
    """user_namespaces(7): write ``pid``'s setgroups, gid_map and uid_map when it asks.

    No-op unless spec.wants_maps.  Waits for the child's ``M``; writes
    /proc/PID/setgroups ("deny" when spec.setgroups_deny), gid_map, uid_map; replies ``K``.
    If the kernel refuses a map, sends the error to the child and raises it here: a
    SyscallError with syscall "write uid_map"/"write gid_map" and the map text in its target.
    If the child sends ``E`` instead (it failed before asking), raises the child's error.
    EOF (the child died) raises SyscallError(EPIPE, "recv").

    Keep no other copy of the child's socket end open in the parent, or EOF never comes.
    """
    if not spec.wants_maps:
        return
    sc = sys if sys is not None else LINUX
    tag, payload = recv_frame(sock, timeout)
    if tag == b"E":
        _raise_pickled(payload)
    if tag != b"M":
        raise errors.from_errno(errno.EPROTO, "recv", f"namespace handshake: {tag!r}")
    base = f"{procfs}/{pid}"
    try:
        if spec.setgroups_deny:
            sc.write_file(f"{base}/setgroups", "deny", "write setgroups", f"{base}/setgroups")
        for name, maps in (("gid_map", spec.gid_map), ("uid_map", spec.uid_map)):
            if maps:
                text = _map_text(maps)
                # The target names the file and the map, so the error says what was refused.
                target = f"{base}/{name} <- {text.strip().replace(chr(10), '; ')}"
                sc.write_file(f"{base}/{name}", text, f"write {name}", target)
    except BaseException as exc:
        try:
            send_frame(sock, b"E", error_payload(exc))
        except errors.SyscallError:
            pass  # the child is gone already; our own error is the one to report
        raise
    send_frame(sock, b"K")
