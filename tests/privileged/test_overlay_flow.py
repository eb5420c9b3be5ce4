"""Real overlay mounts: the union-filesystem notebook's flow, whiteouts, opaque dirs, round trips.

Every mount is made under a temp dir named lk-ovl-<pid>-* and unmounted in teardown.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine import images as im

pytestmark = pytest.mark.privileged


def _mounted(target: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


class Lab:
    """A temp dir plus the mount points made in it, all undone in teardown."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"lk-ovl-{os.getpid()}-"))
        self.targets: list[str] = []

    def dir(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(parents=True)
        return p

    def mountpoint(self, name: str) -> Path:
        p = self.dir(name)
        self.targets.append(str(p))
        return p

    def close(self) -> None:
        for t in reversed(self.targets):
            while _mounted(t):
                im.unmount(t, detach=True)
        shutil.rmtree(self.root)


@pytest.fixture()
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def snapshot(root: Path) -> dict[str, tuple[str, object, int]]:
    """relpath -> (type, content or link target, permission bits); what a reader sees."""
    out: dict[str, tuple[str, object, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            kind = im.classify_mode(st.st_mode, st.st_rdev)
            content: object = None
            if kind == "file":
                content = Path(p).read_bytes()
            elif kind == "symlink":
                content = os.readlink(p)
            out[os.path.relpath(p, root)] = (kind, content, stat.S_IMODE(st.st_mode))
    return out


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("->"):
            os.symlink(text[2:], p)
        else:
            p.write_text(text)
    return root


def test_union_filesystem_flow(lab: Lab) -> None:
    # 1. three layers as directories, packed as layer tars, unpacked as overlay lowers
    src = {
        "base": {"etc/os-release": "base\n", "etc/motd": "hello\n", "bin/sh": "->busybox",
                 "bin/busybox": "elf", "app/cache/a": "1", "app/cache/b": "2"},
        "libs": {"lib/libc.so": "libc", "etc/motd": "hello from libs\n"},
        "app": {"app/main.py": "print('hi')\n", "app/cache/c": "3"},
    }
    lowers = []
    for i, (name, files) in enumerate(src.items()):
        d = im.write_layer(write_tree(lab.dir(f"src/{name}"), files), lab.root / f"{name}.tgz")
        lower = lab.root / f"L{i}"
        assert im.apply_layer(lab.root / f"{name}.tgz", lower) == d
        lowers.append(lower)
    upper, work, merged = lab.dir("upper"), lab.dir("work"), lab.mountpoint("merged")

    # 2. mount: the top-most layer first
    m = im.prepare(list(reversed(lowers)), upper, work, merged)
    assert m.options[0] == "lowerdir=" + ":".join(str(p) for p in reversed(lowers))
    im.mount(m)
    assert _mounted(str(merged))
    assert (merged / "etc/motd").read_text() == "hello from libs\n"  # upper layer wins
    assert sorted(os.listdir(merged / "app/cache")) == ["a", "b", "c"]  # dirs merge

    # 3. write and delete through the merged view
    with open(merged / "etc/os-release", "a") as f:
        f.write("patched\n")
    os.unlink(merged / "etc/motd")
    shutil.rmtree(merged / "app/cache")
    (merged / "app/cache").mkdir()
    (merged / "app/cache/fresh").write_text("new")
    (merged / "new.txt").write_text("new file\n")
    expected = snapshot(merged)

    # 4. the upper holds exactly the changes: a copy-up, a whiteout, an opaque dir, new files
    assert (upper / "etc/os-release").read_text() == "base\npatched\n"
    assert (lowers[0] / "etc/os-release").read_text() == "base\n"  # the lower is untouched
    st = os.lstat(upper / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(upper / "app/cache", "trusted.overlay.opaque") == b"y"
    kinds = {c.path: c.kind for c in im.changes(upper)}
    assert kinds["etc/os-release"] == "file"
    assert kinds["etc/motd"] == "whiteout"
    assert kinds["app/cache"] == "opaque"
    assert kinds["new.txt"] == "file"
    assert "bin/busybox" not in kinds

    # 5. the upper back into a layer tar
    im.unmount(merged)
    assert not _mounted(str(merged))
    d = im.write_layer(upper, lab.root / "changes.tgz", mtime=0)
    names = {e.member: e.kind for e in im.inspect_layer(lab.root / "changes.tgz").entries}
    assert names["etc/.wh.motd"] == "whiteout"
    assert names["app/cache/.wh..wh..opq"] == "opaque"

    # 6a. applied as a 4th lower: the read-only stack shows the same tree
    top = lab.root / "L3"
    assert im.apply_layer(lab.root / "changes.tgz", top) == d
    assert stat.S_ISCHR(os.lstat(top / "etc/motd").st_mode)
    view = lab.mountpoint("view")
    im.mount_overlay([top, *reversed(lowers)], None, None, view)
    assert snapshot(view) == expected
    im.unmount(view)

    # 6b. flattened onto a plain directory, base first: the same tree again
    rootfs = lab.dir("rootfs")
    for blob in ("base.tgz", "libs.tgz", "app.tgz", "changes.tgz"):
        im.apply_layer(lab.root / blob, rootfs, whiteouts=im.FLATTEN)
    assert snapshot(rootfs) == expected


def _tar(path: Path, members: list[tuple[str, bytes, bytes]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def test_layer_whiteouts_become_overlay_whiteouts(lab: Lab) -> None:
    base = write_tree(lab.dir("base"), {"etc/shadow": "x", "etc/keep": "k", "opt/a": "a",
                                        "opt/b": "b"})
    blob = _tar(lab.root / "w.tar", [
        ("etc", tarfile.DIRTYPE, b""), ("etc/.wh.shadow", tarfile.REGTYPE, b""),
        ("opt", tarfile.DIRTYPE, b""), ("opt/.wh..wh..opq", tarfile.REGTYPE, b""),
        ("opt/c", tarfile.REGTYPE, b"c"),
    ])
    top = lab.root / "top"
    im.apply_layer(blob, top)
    st = os.lstat(top / "etc/shadow")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(top / "opt", im.OPAQUE_XATTR) == b"y"
    assert not (top / "etc/.wh.shadow").exists()
    view = lab.mountpoint("view")
    im.mount_overlay([top, base], None, None, view)
    assert sorted(os.listdir(view / "etc")) == ["keep"]
    assert sorted(os.listdir(view / "opt")) == ["c"]


def test_read_only_view_refuses_writes(lab: Lab) -> None:
    a = write_tree(lab.dir("a"), {"f": "a"})
    b = write_tree(lab.dir("b"), {"g": "b"})
    view = lab.mountpoint("view")
    im.mount_overlay([a, b], None, None, view)
    assert sorted(os.listdir(view)) == ["f", "g"]
    with pytest.raises(OSError) as ei:
        (view / "new").write_text("x")
    assert ei.value.errno == errno.EROFS


def test_bind_mount_read_only_is_applied_by_the_remount(lab: Lab) -> None:
    src = write_tree(lab.dir("src"), {"f": "data"})
    dst = lab.mountpoint("dst")
    im.mount(im.Mount("bind", str(src), str(dst), ("bind", "ro", "nosuid")))
    assert (dst / "f").read_text() == "data"
    with pytest.raises(OSError) as ei:
        (dst / "g").write_text("x")
    assert ei.value.errno == errno.EROFS
    im.unmount(dst)
    (src / "g").write_text("writable again")


def test_kernel_refusal_is_a_syscall_error_with_a_hint(lab: Lab) -> None:
    target = lab.mountpoint("m")
    bad = im.Mount("overlay", "overlay", str(target), (f"lowerdir={lab.root}/missing",))
    with pytest.raises(errors.SyscallError) as ei:
        im.mount(bad)
    assert ei.value.syscall == "mount"
    assert not _mounted(str(target))


def test_mount_all_undoes_earlier_mounts_on_failure(lab: Lab) -> None:
    a, b = lab.mountpoint("a"), lab.mountpoint("b")
    good = im.Mount("tmpfs", "lk-tmpfs", str(a), ("size=1m",))
    bad = im.Mount("overlay", "overlay", str(b), (f"lowerdir={lab.root}/missing",))
    with pytest.raises(errors.SyscallError):
        im.mount_all([good, bad])
    assert not _mounted(str(a)) and not _mounted(str(b))


def test_busybox_rootfs_as_a_layer(lab: Lab) -> None:
    try:
        d = im.pack_rootfs_layer(lab.root / "busybox.tgz")
    except errors.UnsupportedError as err:
        pytest.skip(str(err))
    assert im.pack_rootfs_layer(lab.root / "again.tgz") == d  # reproducible (mtime 0)
    rootfs = lab.root / "rootfs"
    assert im.apply_layer(lab.root / "busybox.tgz", rootfs) == d
    assert os.path.islink(rootfs / "bin/sh")
    assert os.access(rootfs / "bin/busybox", os.X_OK)
    assert stat.S_IMODE(os.stat(rootfs / "tmp").st_mode) == 0o1777
