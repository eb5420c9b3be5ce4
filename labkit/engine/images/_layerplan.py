"""Turn tar members into checked layer entries: the pure half of applying a layer.

Nothing here writes to disk.  ``classify`` maps one tar member to a ``LayerEntry`` (or
refuses it); ``Checker`` follows the whole archive and refuses what is only unsafe in
context (a path through a symlink this layer made, a hardlink to nothing).  Every refusal is
an InvalidArgumentError whose ``what`` is the member's name as written in the tar.

Rules (OCI image-spec layer.md, "Changesets" and "Whiteouts"):
* ``.wh.NAME`` (a regular file) deletes NAME from the layers below; ``.wh..wh..opq`` makes
  its directory opaque (hides everything below it).  Other ``.wh..wh.`` names are aufs
  bookkeeping and are skipped, as Docker does.  A character device 0:0 is overlayfs' own
  spelling of a whiteout and is accepted as one.
* Names are relative to the layer root.  Absolute names and names that climb out with
  ``..`` are refused, not silently re-rooted: a layer that writes them is broken or hostile.
* Symlink targets may be absolute (they are read inside the container's root, e.g.
  ``/etc/localtime -> /usr/share/zoneinfo/UTC``); a *relative* target that climbs above the
  root is refused, because a host-side tool following it would leave the root.
* Device nodes and fifos are refused: labkit layers carry files, not access to devices.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from labkit import errors

# The kinds of LayerEntry, what applying it does.
DIR, FILE, SYMLINK, HARDLINK, WHITEOUT, OPAQUE = (
    "dir", "file", "symlink", "hardlink", "whiteout", "opaque")

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
WH_META = ".wh..wh."
XATTR_PAX = "SCHILY.xattr."
# overlayfs keeps its own bookkeeping in trusted.overlay.* (opaque, redirect, origin...).
# A layer that carries them could steer the overlay (redirect to another lower path), so
# they are dropped; whiteouts and opaque dirs come from .wh. names only.
OVERLAY_XATTR_PREFIX = "trusted.overlay."


@dataclass(frozen=True, slots=True)
class LayerEntry:
    """One checked tar member: what it will do to the layer directory.

    ``path`` is normalized and relative ("usr/bin/sh"; "." is the root).  For a whiteout it
    is the path being deleted; for an opaque marker, the directory made opaque.  ``link`` is
    a symlink's target (as written) or a hardlink's normalized target path.
    """

    member: str
    path: str
    kind: str
    link: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    size: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()


def _refuse(member: str, problem: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        f"layer member {member!r}", problem,
        hint="the layer tar is malformed or hostile; nothing was extracted")


def normalize(name: str, member: str) -> str:
    """A member name as a clean relative path; refuse absolute and escaping names."""
    if "\x00" in name:
        raise _refuse(member, "name contains a NUL byte")
    if name.startswith("/"):
        raise _refuse(member, "absolute path; layer paths are relative to the root")
    norm = posixpath.normpath(name) if name else "."
    if norm == ".." or norm.startswith("../"):
        raise _refuse(member, "path escapes the layer root through '..'")
    return norm


def _xattrs(ti: tarfile.TarInfo) -> tuple[tuple[str, bytes], ...]:
    out = []
    for key, value in sorted(ti.pax_headers.items()):
        if not key.startswith(XATTR_PAX):
            continue
        name = key[len(XATTR_PAX):]
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        # tarfile decodes pax values as UTF-8 with surrogateescape: undo it for raw bytes.
        out.append((name, value.encode("utf-8", "surrogateescape")))
    return tuple(out)


def _mk(ti: tarfile.TarInfo, path: str, kind: str, *, link: str = "", size: int = 0,
        xattrs: tuple[tuple[str, bytes], ...] = ()) -> LayerEntry:
    return LayerEntry(ti.name, path, kind, link, ti.mode & 0o7777, ti.uid, ti.gid,
                      float(ti.mtime), size, xattrs)


def classify(ti: tarfile.TarInfo) -> LayerEntry | None:
    """The LayerEntry for one tar member, None for members to skip; refuse bad ones."""
    member = ti.name
    path = normalize(ti.name, member)
    parent, base = posixpath.split(path)
    if base.startswith(WH_PREFIX):
        if not ti.isreg():
            raise _refuse(member, "a '.wh.' name must be a regular file (a whiteout marker)")
        if base == WH_OPAQUE:
            return _mk(ti, parent or ".", OPAQUE)
        if base.startswith(WH_META):
            return None  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the tree
        victim = base[len(WH_PREFIX):]
        if victim in ("", ".", ".."):
            raise _refuse(member, f"whiteout of {victim!r} would delete the directory itself")
        return _mk(ti, posixpath.join(parent, victim), WHITEOUT)
    if path == ".":
        if ti.isdir():
            return None  # the root entry: the root directory is the caller's, not the layer's
        raise _refuse(member, "only a directory may stand for the layer root")
    xattrs = _xattrs(ti)
    if ti.isdir():
        return _mk(ti, path, DIR, xattrs=xattrs)
    if ti.isreg():
        return _mk(ti, path, FILE, size=ti.size, xattrs=xattrs)
    if ti.issym():
        target = ti.linkname
        if not target or "\x00" in target:
            raise _refuse(member, "symlink with an empty or NUL-containing target")
        if not target.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(parent, target))
            if resolved == ".." or resolved.startswith("../"):
                raise _refuse(member, f"symlink target {target!r} escapes the layer root")
        return _mk(ti, path, SYMLINK, link=target, xattrs=xattrs)
    if ti.islnk():
        if ti.linkname.startswith("/"):
            raise _refuse(member, f"hardlink to absolute path {ti.linkname!r}")
        try:
            target = normalize(ti.linkname, member)
        except errors.InvalidArgumentError:
            raise _refuse(member, f"hardlink target {ti.linkname!r} escapes the layer root") \
                from None
        if target == ".":
            raise _refuse(member, "hardlink to the layer root")
        return _mk(ti, path, HARDLINK, link=target)
    if ti.ischr() and ti.devmajor == 0 and ti.devminor == 0:
        # overlayfs.rst: "A whiteout is created as a character device with 0/0 device number".
        return _mk(ti, path, WHITEOUT)
    if ti.ischr() or ti.isblk() or ti.isfifo():
        kind = "fifo" if ti.isfifo() else "device node"
        raise _refuse(member, f"{kind} refused: layers may carry files, not devices or fifos")
    raise _refuse(member, f"unsupported tar member type {ti.type!r}")


class Checker:
    """Follow a whole archive and refuse entries that are unsafe in context.

    ``existing`` answers whether a path already exists in the destination (flattened
    apply onto a rootfs); hardlinks may point there as well as to earlier members.
    """

    def __init__(self, existing: Callable[[str], bool] | None = None) -> None:
        self.symlinks: set[str] = set()
        self.linkable: set[str] = set()
        self.existing = existing

    def _through_symlink(self, path: str) -> str | None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self.symlinks:
                return prefix
        return None

    def check(self, e: LayerEntry) -> None:
        """Refuse ``e`` if it is unsafe given everything checked before it."""
        via = self._through_symlink(e.path)
        if via is not None:
            # Writing through a symlink this same layer made is how a tar reaches outside
            # its root (symlink etc -> /etc, then etc/passwd); no real layer needs it.
            raise _refuse(e.member, f"path goes through symlink {via!r} made by this layer")
        if e.kind == HARDLINK:
            via = self._through_symlink(e.link)
            if via is not None:
                raise _refuse(e.member, f"hardlink target goes through symlink {via!r}")
            known = e.link in self.linkable or (
                self.existing is not None and self.existing(e.link))
            if not known:
                raise _refuse(e.member, f"hardlink target {e.link!r} is not an earlier "
                                        "file of this layer")
        if e.kind == SYMLINK:
            self.symlinks.add(e.path)
        else:
            self.symlinks.discard(e.path)
        if e.kind in (FILE, SYMLINK, HARDLINK):
            self.linkable.add(e.path)
        else:
            self.linkable.discard(e.path)


def file_type(mode: int) -> str:
    """A short name for a stat mode's file type, for messages."""
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "char device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown"
