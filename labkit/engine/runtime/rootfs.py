"""The container's filesystem view: mounts, /dev, pivot_root, masked and read-only paths.

Runs in the container init (already in its own mount namespace), in runc's order
(libcontainer/rootfs_linux.go prepareRootfs/finalizeRootfs):

1. "/" becomes rslave (or linux.rootfsPropagation when pivot_root allows it) so nothing we
   mount reaches the host, while host unmounts still reach us; the rootfs is bind-mounted onto itself so it is a
   mount point, which pivot_root(2) requires;
2. config "mounts" in order, each destination resolved inside the rootfs without following
   symlinks out of it;
3. /dev: the standard device nodes (mknod, or bind-mounted from the host inside a user
   namespace, where mknod is not allowed), /dev/fd & co, /dev/ptmx -> pts/ptmx;
4. pivot_root(".", "."), then the old root, now stacked under the new one, is detached;
5. sysctls, maskedPaths, readonlyPaths, and finally root.readonly;
6. linux.rootfsPropagation on the new "/" (apply_propagation, after init's last mount).
"""

from __future__ import annotations

import errno
import os
import stat

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import consts as C
from labkit._sys import syscalls
from labkit.engine.images import mountopts

# The devices every container gets (runc AllowedDevices / config-linux.md "Default Devices").
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx"),
)

# Propagations that pivot_root(2) and the rootfs self-bind accept on "/" (see prepare).
_PIVOT_SAFE = ("private", "rprivate", "slave", "rslave")

# statvfs(3) ST_* -> MS_* : a bind remount must repeat the flags the kernel locked on the
# mount (nosuid/nodev/noexec/atime in a user namespace), or it fails with EPERM.
_LOCKED = ((os.ST_RDONLY, C.MS_RDONLY), (os.ST_NOSUID, C.MS_NOSUID), (os.ST_NODEV, C.MS_NODEV),
           (os.ST_NOEXEC, C.MS_NOEXEC), (os.ST_NOATIME, C.MS_NOATIME),
           (os.ST_NODIRATIME, C.MS_NODIRATIME), (os.ST_RELATIME, C.MS_RELATIME))


def secure_join(root: str, unsafe: str) -> str:
    """``root``/``unsafe`` with every symlink resolved as if ``root`` were "/".

    A rootfs is untrusted: /dev -> /etc/host must not make us mount over the host's /etc.
    (runc uses filepath-securejoin for the same reason.)
    """
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        cur = os.path.join(root, *done, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:  # MAXSYMLINKS, path_resolution(7)
                raise errors.from_errno(errno.ELOOP, "resolve", unsafe)
            target = os.readlink(cur)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return os.path.join(root, *done)


def _mkdirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, "mkdir", path) from None


def _touch(path: str) -> None:
    _mkdirs(os.path.dirname(path))
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, "open", path) from None


def locked_flags(path: str) -> int:
    """The MS_* flags the mount at ``path`` has now (to repeat in a remount)."""
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _LOCKED if f & st)


def _do_mount(typ: str, source: str, dest: str, opts: tuple[str, ...]) -> None:
    for src, target, fstype, flags, data in mountopts.calls(typ, source, dest, opts):
        syscalls.mount(src, target, fstype, flags, data)


def mount_entry(entry: dict[str, Any], rootfs: str, cgroup_paths: dict[str, str]) -> None:
    """Perform one config.json mounts[] entry under ``rootfs``."""
    typ = entry.get("type") or "none"
    opts = tuple(entry.get("options") or ())
    source = entry.get("source") or typ
    dest = secure_join(rootfs, entry["destination"])
    is_bind = "bind" in opts or "rbind" in opts or typ == "bind"
    if is_bind:
        if not os.path.exists(source):
            raise errors.from_errno(errno.ENOENT, "mount", source,
                                    hint=f"bind mount source for {entry['destination']} is missing")
        (_mkdirs if os.path.isdir(source) else _touch)(dest)
        if typ == "bind" and not ("bind" in opts or "rbind" in opts):
            opts = ("rbind",) + opts
    else:
        _mkdirs(dest)
    if typ == "cgroup":
        _mount_cgroups(dest, opts, cgroup_paths)
        return
    if typ == "mqueue" and not os.path.exists("/proc/sys/fs/mqueue"):
        return  # kernel built without POSIX message queues
    _do_mount(typ, source, dest, opts)


def _mount_cgroups(dest: str, opts: tuple[str, ...], cgroup_paths: dict[str, str]) -> None:
    # A "cgroup" mount on a v1/hybrid host is a tmpfs with each hierarchy bind-mounted from
    # the container's own cgroup directory (runc mountCgroupV1); on a v2 host it is one
    # cgroup2 mount.  In a cgroup namespace, /proc/self/cgroup says "/" and a bind would
    # expose the host's whole tree: there each hierarchy is mounted afresh instead, and the
    # kernel roots a new mount at the namespace's root, the container's cgroup
    # (cgroup_namespaces(7)).  Values "fresh:<fstype>:<options>" ask for that.
    flags, _, _ = mountopts.parse(opts)
    ro = flags & C.MS_RDONLY
    base = flags & (C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC)
    if set(cgroup_paths) == {""}:
        syscalls.mount("cgroup2", dest, "cgroup2", base | ro, None)
        return
    syscalls.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for name, host_dir in sorted(cgroup_paths.items()):
        sub = os.path.join(dest, name)
        _mkdirs(sub)
        if host_dir.startswith("fresh:"):
            _, fstype, data = host_dir.split(":", 2)
            syscalls.mount("cgroup", sub, fstype, base | ro, data or None)
        elif os.path.isdir(host_dir):
            syscalls.mount(host_dir, sub, None, C.MS_BIND | C.MS_REC, None)
            syscalls.mount(None, sub, None, C.MS_BIND | C.MS_REMOUNT | base | ro, None)
    if ro:
        syscalls.mount(None, dest, None, C.MS_REMOUNT | base | C.MS_RDONLY, "mode=755")


def host_cgroup_dirs(procfs: str = "/proc", *, cgroupns: bool = False) -> dict[str, str]:
    """hierarchy name -> host directory of *our* cgroup in it (mountinfo + /proc/self/cgroup).

    Keys are the mount point's last component ("memory", "cpu", "systemd", "unified"); the
    single key "" means a pure cgroup2 host.  Read before pivot_root, in the host's view.
    With ``cgroupns`` the values are "fresh:<fstype>:<options>" (see _mount_cgroups).
    """
    own: dict[str, str] = {}
    with open(f"{procfs}/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                own[c] = path
    out: dict[str, str] = {}
    with open(f"{procfs}/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3]
            mnt, mroot = fields[4], fields[3]
            if fstype == "cgroup2":
                rel = own.get("", "/")
            elif fstype == "cgroup":
                ctrl = next((o for o in superopts.split(",") if o in own), None)
                if ctrl is None:
                    continue
                rel = own[ctrl]
            else:
                continue
            if mroot != "/" and rel.startswith(mroot):
                rel = rel[len(mroot):]
            name = "" if fstype == "cgroup2" and mnt == "/sys/fs/cgroup" else os.path.basename(mnt)
            if cgroupns:
                # The hierarchy's identity: its controllers or name=, without rw/ro.
                data = ",".join(o for o in superopts.split(",") if o not in ("rw", "ro"))
                out[name] = f"fresh:{fstype}:{data if fstype == 'cgroup' else ''}"
            else:
                out[name] = mnt + rel if rel != "/" else mnt
    return out


def make_devices(rootfs: str, devices: list[dict[str, Any]], in_userns: bool) -> None:
    """Create the default devices plus linux.devices in the container's /dev."""
    for name, major, minor in DEFAULT_DEVICES:
        _device(os.path.join(rootfs, "dev", name), "c", major, minor, 0o666, 0, 0, in_userns)
    for d in devices:
        _device(secure_join(rootfs, d["path"]), d["type"], d.get("major", 0), d.get("minor", 0),
                d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0), in_userns)
    dev = os.path.join(rootfs, "dev")
    for target, link in DEV_SYMLINKS:
        try:
            os.symlink(target, os.path.join(dev, link))
        except FileExistsError:
            pass


def _device(path: str, typ: str, major: int, minor: int, mode: int, uid: int, gid: int,
            in_userns: bool) -> None:
    _mkdirs(os.path.dirname(path))
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[typ]
    if in_userns and typ != "p":
        # mknod(2) of a device needs CAP_MKNOD in the *initial* user namespace: bind the
        # host's node instead, as runc does for rootless containers.
        host = f"/dev/{os.path.basename(path)}"
        if os.path.exists(host):
            _touch(path)
            syscalls.mount(host, path, None, C.MS_BIND, None)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    syscalls.mknod(path, kind | (mode & 0o7777), os.makedev(major, minor))
    os.chmod(path, mode & 0o7777)  # mknod's mode is filtered by the umask
    os.chown(path, uid, gid)


def prepare(cfg: Any, cgroup_paths: dict[str, str]) -> None:
    """Steps 1-3 of the module docstring; ``cfg`` is a validated runtime.config.Config."""
    linux = cfg.linux
    rootfs = cfg.rootfs
    # Until pivot_root, "/" is made (recursively) rslave, or private/slave as asked.  Not
    # shared: pivot_root(2) fails with EINVAL when new_root, its parent mount or the
    # current root is MS_SHARED, and the rootfs bind below would propagate to the host's
    # peers.  Not unbindable: the bind of the rootfs onto itself would then fail (EINVAL,
    # mount(2)).  Shared and unbindable are applied to the new root afterwards
    # (apply_propagation), as crun and runc do.
    word = linux.get("rootfsPropagation") or "rslave"
    prop = mountopts.parse((word if word in _PIVOT_SAFE else "rslave",))[1]
    syscalls.mount(None, "/", None, prop | C.MS_REC, None)
    syscalls.mount(rootfs, rootfs, None, C.MS_BIND | C.MS_REC, None)
    mounted_dev = False
    for entry in cfg.raw.get("mounts") or []:
        mount_entry(entry, rootfs, cgroup_paths)
        mounted_dev = mounted_dev or entry["destination"].rstrip("/") == "/dev"
    in_userns = "user" in cfg.namespaces.new or "user" in cfg.namespaces.join
    if mounted_dev or linux.get("devices"):
        make_devices(rootfs, linux.get("devices") or [], in_userns)
    cwd = secure_join(rootfs, cfg.process.get("cwd", "/"))
    if not os.path.isdir(cwd):
        _mkdirs(cwd)  # runc creates a missing cwd (while the rootfs is still writable)


def apply_propagation(cfg: Any) -> None:
    """linux.rootfsPropagation on the container's "/" (after pivot_root and every mount of
    ours: under runbindable, later bind mounts from the tree would fail)."""
    word = cfg.linux.get("rootfsPropagation")
    if word:
        syscalls.mount(None, "/", None, mountopts.parse((word,))[1], None)


def pivot(rootfs: str) -> None:
    """pivot_root(".", "."): the new root stacks over the old one, which we then detach.

    This avoids a put_old directory in the rootfs (runc pivotRoot; pivot_root(2) NOTES).
    """
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(rootfs)
        syscalls.pivot_root(".", ".")
        # "." is now the old root, but say so explicitly (runc does the same fchdir).
        os.fchdir(oldroot)
        # Make the old root rslave so that detaching it does not propagate to the host.
        syscalls.mount(None, ".", None, C.MS_SLAVE | C.MS_REC, None)
        syscalls.umount2(".", C.MNT_DETACH)
    finally:
        os.close(oldroot)
    os.chdir("/")


def _sysctls(linux: dict[str, Any]) -> None:
    # /proc/sys/net and /proc/sys/kernel (ipc, uts) show the namespaces of the writer.
    for key, value in (linux.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            raise errors.from_errno(err.errno or errno.EIO, "write sysctl", f"{key}={value}") from None


def enter_chroot(cfg: Any) -> None:
    """No mount namespace of its own (config.own_mounts): sysctls through the runtime's
    /proc, then chroot(2) into the rootfs.  No mount is made (config.py refuses what needs
    one).  A chroot is weaker than pivot_root: a process keeping CAP_SYS_CHROOT can leave
    it (chroot(2) NOTES), which is why a mount namespace is the default."""
    _sysctls(cfg.linux)
    try:
        os.chroot(cfg.rootfs)
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, "chroot", cfg.rootfs) from None
    os.chdir("/")


def finalize(cfg: Any) -> None:
    """Step 5: sysctls, masked paths, read-only paths, read-only root (after pivot_root)."""
    linux = cfg.linux
    _sysctls(linux)
    for path in linux.get("readonlyPaths") or []:
        if not os.path.exists(path):
            continue
        syscalls.mount(path, path, None, C.MS_BIND | C.MS_REC, None)
        syscalls.mount(None, path, None,
                       C.MS_BIND | C.MS_REMOUNT | C.MS_RDONLY | locked_flags(path), None)
    for path in linux.get("maskedPaths") or []:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            syscalls.mount("tmpfs", path, "tmpfs", C.MS_RDONLY, None)
        else:
            syscalls.mount("/dev/null", path, None, C.MS_BIND, None)
    if (cfg.raw.get("root") or {}).get("readonly"):
        syscalls.mount(None, "/", None, C.MS_BIND | C.MS_REMOUNT | C.MS_RDONLY | locked_flags("/"),
                       None)


__all__ = ["apply_propagation", "enter_chroot", "finalize", "host_cgroup_dirs", "pivot", "prepare", "secure_join"]
