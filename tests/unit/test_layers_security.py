"""Hostile layer tars are refused by name, and nothing outside (or inside) the destination changes.

Every attack targets a sentinel file in the test's own tmp_path, never a real /etc file, so
a regression cannot damage the machine running the tests.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images import layers

SENTINEL = b"untouched\n"
Member = tuple[tarfile.TarInfo, bytes | None]


def reg(name: str, data: bytes = b"pwned\n") -> Member:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def typed(name: str, kind: bytes, link: str = "", major: int = 0, minor: int = 0) -> Member:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.devmajor, ti.devminor = kind, link, major, minor
    return ti, None


def make_tar(path: Path, members: list[Member], mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    out: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            content: bytes | str = b""
            if os.path.islink(p):
                content = os.readlink(p)
            elif os.path.isfile(p):
                content = Path(p).read_bytes()
            out[os.path.relpath(p, root)] = (st.st_mode, content)
    return out


@pytest.fixture()
def world(tmp_path: Path) -> Path:
    """tmp_path/outside/sentinel (the target) and tmp_path/etc/passwd (for ../ attacks)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/sentinel").write_bytes(SENTINEL)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_bytes(SENTINEL)
    (tmp_path / "root").mkdir()
    (tmp_path / "root/keep").write_bytes(b"lower layer\n")
    return tmp_path


def attacks(world: Path) -> dict[str, tuple[list[Member], str]]:
    outside = str(world / "outside")
    return {
        "dotdot": ([reg("ok"), reg("../etc/passwd")], "../etc/passwd"),
        "dotdot-deep": ([reg("a/../../etc/passwd")], "a/../../etc/passwd"),
        "absolute": ([reg(outside + "/sentinel")], outside + "/sentinel"),
        "symlink-then-through": (
            [typed("evil", tarfile.SYMTYPE, outside), reg("evil/sentinel")], "evil/sentinel"),
        "symlink-dir-then-through": (
            [typed("a/evil", tarfile.SYMTYPE, "/"), reg("a/evil/etc/x")], "a/evil/etc/x"),
        "hardlink-absolute": ([typed("h", tarfile.LNKTYPE, outside + "/sentinel")], "h"),
        "hardlink-dotdot": ([typed("h", tarfile.LNKTYPE, "../outside/sentinel")], "h"),
        "hardlink-through-symlink": (
            [typed("evil", tarfile.SYMTYPE, outside), typed("h", tarfile.LNKTYPE, "evil/sentinel")],
            "h"),
        "hardlink-to-nothing": ([typed("h", tarfile.LNKTYPE, "nope")], "h"),
        "symlink-relative-escape": ([typed("a/up", tarfile.SYMTYPE, "../../outside")], "a/up"),
        "char-device": ([typed("dev/mem", tarfile.CHRTYPE, major=1, minor=1)], "dev/mem"),
        "block-device": ([typed("dev/sda", tarfile.BLKTYPE, major=8, minor=0)], "dev/sda"),
        "fifo": ([reg("fine"), typed("tmp/fifo", tarfile.FIFOTYPE)], "tmp/fifo"),
        "whiteout-of-dotdot": ([reg("a/.wh..")], "a/.wh.."),
        "whiteout-of-self": ([reg("a/.wh.")], "a/.wh."),
        "whiteout-not-a-file": ([typed(".wh.x", tarfile.DIRTYPE)], ".wh.x"),
        "file-as-root": ([reg("./")], "./"),
        "dir-replaced-by-symlink-then-through": (
            [typed("bin", tarfile.DIRTYPE), reg("bin/ok"),
             typed("bin", tarfile.SYMTYPE, outside), reg("bin/sentinel")], "bin/sentinel"),
    }


CASES = sorted(attacks(Path("/x")))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("whiteouts", [layers.OVERLAY, layers.FLATTEN])
def test_hostile_tar_is_refused_by_member_and_changes_nothing(
    world: Path, case: str, whiteouts: str
) -> None:
    members, bad = attacks(world)[case]
    blob = make_tar(world / "layer.tar", members)
    dest = world / ("root" if whiteouts == layers.FLATTEN else "new-layer")
    before = snapshot(world)
    with pytest.raises(errors.InvalidArgumentError) as ei:
        layers.apply_layer(blob, dest, whiteouts=whiteouts)
    assert repr(bad) in str(ei.value)  # the error names the member as written in the tar
    assert snapshot(world) == before  # nothing outside, nor inside dest, changed
    assert (world / "outside/sentinel").read_bytes() == SENTINEL


@pytest.mark.parametrize("case", CASES)
def test_inspect_refuses_the_same_without_a_destination(world: Path, case: str) -> None:
    members, bad = attacks(world)[case]
    blob = make_tar(world / "layer.tar.gz", members, "w:gz")
    with pytest.raises(errors.InvalidArgumentError, match="layer member") as ei:
        layers.inspect_layer(blob)
    assert repr(bad) in str(ei.value)


def test_refusal_halfway_leaves_no_partial_layer(world: Path) -> None:
    good = [reg(f"ok/{i}") for i in range(20)]
    blob = make_tar(world / "l.tar", [*good, reg("../etc/passwd")])
    with pytest.raises(errors.InvalidArgumentError):
        layers.apply_layer(blob, world / "L")
    assert sorted(os.listdir(world)) == ["etc", "l.tar", "outside", "root"]


def test_absolute_symlinks_are_fine_and_stay_inside_when_flattened(world: Path) -> None:
    """Layer 1 leaves evil -> <outside>; layer 2 writes evil/sentinel: it lands in the root."""
    outside = str(world / "outside")
    rootfs = world / "root"
    l1 = make_tar(world / "l1.tar", [typed("evil", tarfile.SYMTYPE, outside)])
    l2 = make_tar(world / "l2.tar", [reg("evil/sentinel")])
    layers.apply_layer(l1, rootfs, whiteouts=layers.FLATTEN)
    layers.apply_layer(l2, rootfs, whiteouts=layers.FLATTEN)
    assert (world / "outside/sentinel").read_bytes() == SENTINEL
    inside = rootfs / outside.lstrip("/") / "sentinel"
    assert inside.read_bytes() == b"pwned\n"
    assert os.readlink(rootfs / "evil") == outside


def test_relative_symlink_loop_in_rootfs_is_clamped_at_the_root(world: Path) -> None:
    rootfs = world / "root"
    os.symlink("../../../../..", rootfs / "up")  # planted by someone else, not by a layer
    layers.apply_layer(make_tar(world / "l.tar", [reg("up/etc/passwd")]), rootfs,
                       whiteouts=layers.FLATTEN)
    assert (world / "etc/passwd").read_bytes() == SENTINEL
    assert (rootfs / "etc/passwd").read_bytes() == b"pwned\n"


def test_whiteout_in_flatten_does_not_follow_a_symlinked_parent(world: Path) -> None:
    rootfs = world / "root"
    os.symlink(str(world / "outside"), rootfs / "evil")
    layers.apply_layer(make_tar(world / "l.tar", [reg("evil/.wh.sentinel", b"")]), rootfs,
                       whiteouts=layers.FLATTEN)
    assert (world / "outside/sentinel").read_bytes() == SENTINEL


def test_existing_symlink_as_final_component_is_replaced_not_written_through(world: Path) -> None:
    rootfs = world / "root"
    os.symlink(str(world / "outside/sentinel"), rootfs / "f")
    layers.apply_layer(make_tar(world / "l.tar", [reg("f")]), rootfs, whiteouts=layers.FLATTEN)
    assert (world / "outside/sentinel").read_bytes() == SENTINEL
    assert not (rootfs / "f").is_symlink() and (rootfs / "f").read_bytes() == b"pwned\n"


@pytest.mark.parametrize(
    ("rel", "expect"),
    [("a/b", "a/b"), ("abs/x", "target/x"), ("rel/x", "target/x"), ("dotdot/x", "x"),
     ("../../x", "x"), ("loopy/../y", "y")],
)
def test_scoped_path_never_leaves_the_root(tmp_path: Path, rel: str, expect: str) -> None:
    (tmp_path / "target").mkdir()
    os.symlink("/target", tmp_path / "abs")
    os.symlink("target", tmp_path / "rel")
    os.symlink("../../..", tmp_path / "dotdot")
    os.symlink("/loopy", tmp_path / "loopy")
    if rel.startswith("loopy/"):
        with pytest.raises(errors.InvalidArgumentError, match="too many levels"):
            layers.scoped_path(tmp_path, rel)
        return
    assert layers.scoped_path(tmp_path, rel) == str(tmp_path / expect)


def test_reader_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"this is not a tar" * 100)
    with pytest.raises(errors.InvalidArgumentError):
        layers.inspect_layer(tmp_path / "junk")


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    blob = make_tar(tmp_path / "l.tgz", [reg("a", b"x" * 100000)], "w:gz")
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.InvalidArgumentError):
        layers.apply_layer(blob, tmp_path / "L")
    assert not (tmp_path / "L").exists()




# --- metadata and data writes never follow a symlink out of the root ----------------------
# Each case below leaves a path in the destination that is, by the time a write happens, a
# symlink to tmp_path/outside.  Whatever the entry asked for (mode 4777, owner 1234, mtime,
# an xattr, data, a hard link), the files outside must keep mode, owner, content and links.

EVIL_MODE = 0o4777


def host_state(world: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for p in [world / "outside", *sorted((world / "outside").rglob("*"))]:
        st = os.lstat(p)
        data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        xattrs = sorted(os.listxattr(p, follow_symlinks=False))
        out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns, data, xattrs)
    return out


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the kernel's openat2 resolution and with the O_NOFOLLOW fallback."""
    from labkit._sys import openat2
    from labkit.engine.images import _rootdir
    if request.param == "openat2" and not openat2.supported():
        pytest.skip("this kernel has no openat2(2)")
    monkeypatch.setattr(_rootdir, "USE_OPENAT2", request.param == "openat2")
    return str(request.param)


def evil_dir(name: str) -> Member:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = tarfile.DIRTYPE, EVIL_MODE, 1234, 1234, 12345
    return ti, None


def evil_file(name: str) -> Member:
    ti, data = reg(name)
    ti.mode, ti.uid, ti.gid, ti.mtime = EVIL_MODE, 1234, 1234, 12345
    ti.pax_headers = {"SCHILY.xattr.user.lk": "evil"}
    return ti, data


def dest_for(world: Path, whiteouts: str) -> Path:
    return world / ("root" if whiteouts == layers.FLATTEN else "new-layer")


@pytest.mark.parametrize("target", ["outside", "outside/sentinel"])
@pytest.mark.parametrize("whiteouts", [layers.OVERLAY, layers.FLATTEN])
def test_directory_replaced_by_symlink_keeps_its_mode_inside(
    world: Path, resolver: str, whiteouts: str, target: str
) -> None:
    """issue 8: dir bin/ (mode 4777), then bin -> host path: the deferred chmod of bin must
    not land on the host path the symlink now names."""
    (world / "outside").chmod(0o755)
    (world / "outside/sentinel").chmod(0o644)
    before = host_state(world)
    blob = make_tar(world / "l.tar", [evil_dir("bin"), reg("bin/x"),
                                      typed("bin", tarfile.SYMTYPE, str(world / target)),
                                      reg("other")])
    dest = dest_for(world, whiteouts)
    layers.apply_layer(blob, dest, whiteouts=whiteouts)
    assert host_state(world) == before
    assert os.readlink(dest / "bin") == str(world / target)  # the layer's last word stands


def test_opaque_directory_under_a_later_symlink_is_not_made_outside(
    world: Path, resolver: str
) -> None:
    """An opaque marker for d/sub, then d -> outside: making d/sub at the end must not
    create outside/sub (nor set trusted.overlay.opaque on anything outside)."""
    before = host_state(world)
    blob = make_tar(world / "l.tar", [reg("d/sub/.wh..wh..opq", b""),
                                      typed("d", tarfile.SYMTYPE, str(world / "outside"))])
    with pytest.raises(errors.InvalidArgumentError, match="d/sub"):
        layers.apply_layer(blob, world / "new-layer")
    assert host_state(world) == before
    assert not (world / "new-layer").exists()


def _swap_parent_during_write(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a file's data is copied, move its directory away and put a symlink to
    tmp_path/outside in its place (what a concurrent writer, or a race, could do)."""
    real = shutil.copyfileobj

    def copy_then_swap(src: object, dst: object, length: int = 0) -> None:
        real(src, dst, length)  # type: ignore[arg-type]
        fd = dst.fileno()  # type: ignore[attr-defined]
        parent = os.path.dirname(os.readlink(f"/proc/self/fd/{fd}"))
        if os.path.basename(parent) == "a":
            os.rename(parent, parent + ".moved")
            os.symlink(str(world / "outside"), parent)

    monkeypatch.setattr(shutil, "copyfileobj", copy_then_swap)


@pytest.mark.parametrize("whiteouts", [layers.OVERLAY, layers.FLATTEN])
def test_parent_swapped_for_symlink_mid_entry_gets_no_chmod_chown_utime_xattr(
    world: Path, resolver: str, whiteouts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = host_state(world)
    _swap_parent_during_write(world, monkeypatch)
    dest = dest_for(world, whiteouts)
    blob = make_tar(world / "l.tar", [evil_file("a/sentinel"), reg("z")])
    layers.apply_layer(blob, dest, whiteouts=whiteouts)
    assert host_state(world) == before
    moved = dest / "a.moved/sentinel"  # the file written keeps what the entry asked for
    st = os.lstat(moved)
    assert stat.S_IMODE(st.st_mode) == EVIL_MODE and st.st_mtime == 12345
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 1234)
    assert os.getxattr(moved, "user.lk") == b"evil"


@pytest.mark.parametrize("whiteouts", [layers.OVERLAY, layers.FLATTEN])
def test_parent_swapped_between_entries_is_never_written_through(
    world: Path, resolver: str, whiteouts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a/f is written, a becomes a symlink to outside, then a/sentinel and a hard link to
    a/sentinel come: nothing is written, linked or changed outside."""
    before = host_state(world)
    _swap_parent_during_write(world, monkeypatch)
    dest = dest_for(world, whiteouts)
    blob = make_tar(world / "l.tar", [reg("a/f"), evil_file("a/sentinel"),
                                      typed("h", tarfile.LNKTYPE, "a/sentinel")])
    if whiteouts == layers.OVERLAY:
        # A new layer directory never resolves through a symlink: refused, nothing left.
        with pytest.raises(errors.InvalidArgumentError, match="a/sentinel"):
            layers.apply_layer(blob, dest, whiteouts=whiteouts)
        assert not dest.exists()
    else:
        # A rootfs follows its symlinks as if it were /: the writes land inside it.
        layers.apply_layer(blob, dest, whiteouts=whiteouts)
        inside = dest / str(world / "outside").lstrip("/")
        assert (inside / "sentinel").read_bytes() == b"pwned\n"
        assert os.path.samefile(dest / "h", inside / "sentinel")
    assert host_state(world) == before


@pytest.mark.parametrize("whiteouts", [layers.OVERLAY, layers.FLATTEN])
def test_hardlink_after_a_swap_never_links_a_host_file(
    world: Path, resolver: str, whiteouts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hard link's target directory becomes a symlink to outside after the checks."""
    before = host_state(world)
    _swap_parent_during_write(world, monkeypatch)
    dest = dest_for(world, whiteouts)
    blob = make_tar(world / "l.tar", [reg("a/sentinel"), typed("h", tarfile.LNKTYPE, "a/sentinel")])
    with pytest.raises(errors.InvalidArgumentError, match="'h'"):
        layers.apply_layer(blob, dest, whiteouts=whiteouts)
    assert host_state(world) == before
    assert (world / "outside/sentinel").stat().st_nlink == 1


@pytest.mark.parametrize("whiteouts", [layers.OVERLAY, layers.FLATTEN])
def test_symlink_entry_metadata_is_set_on_the_link_not_its_target(
    world: Path, resolver: str, whiteouts: str
) -> None:
    ti, _ = typed("l", tarfile.SYMTYPE, str(world / "outside/sentinel"))
    ti.mode, ti.uid, ti.gid, ti.mtime = EVIL_MODE, 1234, 1234, 12345
    before = host_state(world)
    dest = dest_for(world, whiteouts)
    layers.apply_layer(make_tar(world / "l.tar", [(ti, None)]), dest, whiteouts=whiteouts)
    assert host_state(world) == before
    st = os.lstat(dest / "l")
    assert st.st_mtime == 12345
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 1234)


@pytest.mark.parametrize(
    ("rel", "expect"),
    [("a/b", "a/b"), ("abs/x", "target/x"), ("rel/x", "target/x"), ("dotdot/x", "x"),
     ("dangling/x", "made/by/walk/x")],
)
def test_rootdir_follow_mode_stays_inside_and_makes_what_is_missing(
    tmp_path: Path, resolver: str, rel: str, expect: str
) -> None:
    """RootDir(follow=True) resolves like scoped_path, with both resolvers, creating the
    missing directories (also a dangling symlink's target) inside the root only."""
    from labkit.engine.images import _rootdir
    root = tmp_path / "root"
    (root / "target").mkdir(parents=True)
    os.symlink("/target", root / "abs")
    os.symlink("target", root / "rel")
    os.symlink("../../..", root / "dotdot")
    os.symlink("/made/by/walk", root / "dangling")
    os.symlink("/loopy", root / "loopy")
    rd = _rootdir.RootDir(str(root), follow=True)
    try:
        fd = rd.dir(rel, create=True)
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == str(root / expect)
        finally:
            os.close(fd)
        with pytest.raises(OSError) as ei:
            rd.dir("loopy/x", create=True)
        assert ei.value.errno == errno.ELOOP
    finally:
        rd.close()
    assert sorted(os.listdir(tmp_path)) == ["root"]


def test_rootdir_no_follow_mode_refuses_any_symlink(tmp_path: Path, resolver: str) -> None:
    from labkit.engine.images import _rootdir
    (tmp_path / "d").mkdir()
    os.symlink("d", tmp_path / "l")
    rd = _rootdir.RootDir(str(tmp_path), follow=False)
    try:
        with pytest.raises(OSError) as ei:
            rd.dir("l/x", create=True)
        assert ei.value.errno == errno.ELOOP
        assert not (tmp_path / "d/x").exists()
        os.close(rd.dir("d/new", create=True))
        assert (tmp_path / "d/new").is_dir()
    finally:
        rd.close()
