"""overlayfs mounts described, checked, then performed (containerd's overlay snapshotter shape).

Kernel doc: Documentation/filesystems/overlayfs.rst.  An overlay mount merges

* ``lowerdir=top:...:bottom`` read-only layers.  The doc says the lower directories "will be
  stacked beginning from the rightmost one and going left": the FIRST entry is the TOP-most
  layer, so an image's layers (listed base first in its config) go in *reverse* order;
* ``upperdir=``: the writable layer.  Writes land here; a file changed for the first time
  is copied up from the lower layer that has it; a deleted lower file becomes a *whiteout*
  (a character device 0:0 of the same name), and a directory re-created over a lower one
  becomes *opaque* (xattr ``trusted.overlay.opaque=y``);
* ``workdir=``: an empty directory on the *same filesystem* as upperdir, which overlayfs
  uses to prepare files before moving them into upperdir atomically.

Without upperdir/workdir the mount is a read-only view, and the kernel then wants at least
two lowers ("at least 2 lowerdir are needed while upperdir nonexistent" in dmesg).

Limits handled here, each refused *before* the syscall with a message that says why:
* ``:`` separates lowers and ``,`` separates options; the kernel accepts backslash escapes
  for them, but escaping is easy to get subtly wrong, so paths containing ``:``, ``,`` or
  ``\\`` are refused (InvalidArgumentError).  Layer directories are ours to name.
* mount(2) copies at most one page of option data (copy_mount_options), so a long lowerdir
  list is cut short and the mount then fails with a confusing error.  Rather than the
  chdir-and-relative-paths trick (the cwd is per process, so it races with other threads of
  a Jupyter kernel or the daemon) we measure the data and refuse it with a hint: keep layer
  directories short (e.g. /var/lib/labkit/l/<short id>, as Docker's overlay2 does) or use
  fewer layers.
* overlayfs stacks at most 500 lowers (OVL_MAX_STACK).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from labkit import errors
from labkit.engine.images import mounts
from labkit.engine.images.mounts import Mount

__all__ = ["MAX_LOWERS", "OPAQUE_XATTR", "mount_overlay", "prepare", "unmount"]

MAX_LOWERS = 500  # fs/overlayfs/params.h OVL_MAX_STACK
OPAQUE_XATTR = "trusted.overlay.opaque"
_FORBIDDEN = (":", ",", "\\")
# What overlayfs itself leaves in workdir after an unmount: mounting the same upper/work pair
# again is normal (a container restarted), and the kernel cleans these up on mount.
_KERNEL_WORK_ENTRIES = frozenset(("work", "index"))


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def _checked_dir(path: str | Path, role: str) -> str:
    p = os.path.abspath(os.fspath(path))
    for ch in _FORBIDDEN:
        if ch in p:
            raise errors.InvalidArgumentError(
                f"overlay {role}", f"{p!r} contains {ch!r}, which overlay mount options "
                "treat specially (a separator or an escape)", hint="choose a directory name without ':', ',' or '\\'")
    if not os.path.isdir(p):
        raise errors.NotFoundError(f"overlay {role} directory", p)
    return p


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def prepare(
    lowers: Sequence[str | Path],
    upper: str | Path | None = None,
    work: str | Path | None = None,
    target: str | Path = "",
    *,
    options: Sequence[str] = (),
) -> Mount:
    """Describe an overlay mount; check it the way the kernel will, without mounting.

    ``lowers`` are given TOP-most first (overlayfs.rst: stacked "beginning from the
    rightmost one and going left").  ``upper`` and ``work`` are both given (read-write
    mount) or both omitted (read-only view of at least two lowers).  ``options`` are added
    after the overlay's own (e.g. ``"ro"``, ``"redirect_dir=off"``).

    Raises InvalidArgumentError (a bad combination, separator characters in a path, workdir
    not empty or not on upperdir's filesystem, option data longer than a page) and
    NotFoundError (a directory that does not exist).

    Example::

        m = prepare([layer2, layer1], upper, work, "/run/lk/rootfs")
        mounts.mount(m)   # or mount_overlay(...) to do both
    """
    if not lowers:
        raise errors.InvalidArgumentError("overlay lowerdir", "at least one lower layer is needed")
    if len(lowers) > MAX_LOWERS:
        raise errors.InvalidArgumentError(
            "overlay lowerdir", f"{len(lowers)} layers; overlayfs stacks at most {MAX_LOWERS}",
            hint="squash some layers into one")
    lower_paths = [_checked_dir(p, "lowerdir") for p in lowers]
    parts = ["lowerdir=" + ":".join(lower_paths)]
    if (upper is None) != (work is None):
        raise errors.InvalidArgumentError(
            "overlay", "upperdir and workdir go together: give both or neither")
    if upper is not None and work is not None:
        up, wk = _checked_dir(upper, "upperdir"), _checked_dir(work, "workdir")
        if _nested(up, wk):
            raise errors.InvalidArgumentError(
                "overlay workdir", f"{wk} and upperdir {up} must be separate subtrees")
        if os.stat(up).st_dev != os.stat(wk).st_dev:
            raise errors.InvalidArgumentError(
                "overlay workdir", f"{wk} is not on the same filesystem as upperdir {up}",
                hint="overlayfs renames from workdir into upperdir, which needs one filesystem")
        leftovers = set(os.listdir(wk)) - _KERNEL_WORK_ENTRIES
        if leftovers:
            raise errors.InvalidArgumentError(
                "overlay workdir", f"{wk} is not empty (has {sorted(leftovers)[:3]})",
                hint="give overlayfs an empty directory of its own")
        parts += [f"upperdir={up}", f"workdir={wk}"]
    elif len(lower_paths) < 2:
        raise errors.InvalidArgumentError(
            "overlay lowerdir", "a read-only overlay (no upperdir) needs at least two lowers",
            hint="add an empty directory as a second lower, or give upper and work")
    m = Mount("overlay", "overlay", os.fspath(target), tuple(parts) + tuple(options))
    _, data = m.flags_and_data()
    limit = _page_size() - 1  # the data string and its NUL must fit in one page
    if len(os.fsencode(data)) > limit:
        raise errors.InvalidArgumentError(
            "overlay lowerdir", f"mount data is {len(os.fsencode(data))} bytes; mount(2) "
            f"copies at most {limit}",
            hint="use shorter layer directory paths (short symlink-free names under one "
                 "parent) or fewer layers")
    return m


def mount_overlay(
    lowers: Sequence[str | Path],
    upper: str | Path | None,
    work: str | Path | None,
    target: str | Path,
    *,
    options: Sequence[str] = (),
) -> Mount:
    """mount(2) an overlay at ``target``: ``prepare(...)`` then ``mounts.mount(...)``.

    Returns the Mount performed, so the caller can log it or unmount ``m.target``.
    """
    m = prepare(lowers, upper, work, target, options=options)
    mounts.mount(m)
    return m


def unmount(target: str | Path, *, detach: bool = False) -> None:
    """umount2(2) the overlay at ``target``."""
    mounts.unmount(os.fspath(target), detach=detach)
