"""Copy an image's content at a mount point into a new, empty volume (Docker's default).

moby (daemon/volumes_unix.go populateVolumes) copies what the image holds at the target
path into a volume that is still empty, with owners and modes, unless the mount says
``nocopy``.  The source is an open directory fd resolved inside the container's root
(openat2 RESOLVE_IN_ROOT), and the copy never follows a symlink: an image cannot point
the copy at a host path.
"""

from __future__ import annotations

import os
import shutil
import stat

__all__ = ["copy_tree", "is_empty"]


def is_empty(path: str) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def _copy_entry(src_dir: int, name: str, dst_dir: int) -> None:
    st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o700, dir_fd=dst_dir)
        sfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=src_dir)
        dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=dst_dir)
        try:
            copy_tree(sfd, dfd)
        finally:
            os.close(sfd)
            os.close(dfd)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src_dir), name, dir_fd=dst_dir)
    elif stat.S_ISREG(st.st_mode):
        sfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
        try:
            dfd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
            with os.fdopen(sfd, "rb", closefd=False) as fi, os.fdopen(dfd, "wb") as fo:
                shutil.copyfileobj(fi, fo)
        finally:
            os.close(sfd)
    else:  # devices, fifos, sockets: made as they are (root daemon, as Docker)
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_dir)
    os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):  # chown cleared setuid bits: the mode goes last
        os.chmod(name, mode, dir_fd=dst_dir)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """Copy the directory ``src_fd``'s entries into the directory ``dst_fd``."""
    for name in sorted(os.listdir(src_fd)):
        _copy_entry(src_fd, name, dst_fd)
    st = os.fstat(src_fd)
    os.fchown(dst_fd, st.st_uid, st.st_gid)
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
