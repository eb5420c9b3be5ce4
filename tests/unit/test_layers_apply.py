"""apply_layer / inspect_layer on well-formed layers, without root (flattened whiteouts)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from labkit import errors
from labkit._sys import syscalls
from labkit.engine.images import layers

Member = tuple[tarfile.TarInfo, bytes | None]
MTIME = 1_600_000_000


def ti(name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes | None = None, mode: int = -1,
       link: str = "", xattrs: dict[str, str] | None = None) -> Member:
    t = tarfile.TarInfo(name)
    if mode < 0:
        mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    t.type, t.mode, t.linkname, t.mtime = kind, mode, link, MTIME
    t.uid = t.gid = os.geteuid()
    if xattrs:
        t.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    if kind == tarfile.REGTYPE:
        data = data if data is not None else b""
        t.size = len(data)
    return t, data


def tar_bytes(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for t, data in members:
            tf.addfile(t, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def write(path: Path, members: list[Member], compress: bool = False) -> Path:
    raw = tar_bytes(members)
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


BASE = [
    ti("etc/", tarfile.DIRTYPE, mode=0o755),
    ti("etc/passwd", data=b"root:x:0:0\n"),
    ti("etc/shadow", data=b"secret\n", mode=0o600),
    ti("bin/", tarfile.DIRTYPE, mode=0o755),
    ti("bin/busybox", data=b"\x7fELF...", mode=0o4755),
    ti("bin/sh", tarfile.SYMTYPE, link="busybox"),
    ti("bin/ls", tarfile.LNKTYPE, link="bin/busybox"),
    ti("etc/localtime", tarfile.SYMTYPE, link="/usr/share/zoneinfo/UTC"),
    ti("var/lib/", tarfile.DIRTYPE, mode=0o750),  # parent var/ implied
    ti("opt/", tarfile.DIRTYPE),
    ti("opt/old", data=b"old"),
    ti("opt/sub/", tarfile.DIRTYPE),
    ti("opt/sub/deep", data=b"deep"),
]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("whiteouts", [layers.OVERLAY, layers.FLATTEN])
def test_apply_regular_tree(tmp_path: Path, compress: bool, whiteouts: str) -> None:
    blob = write(tmp_path / "base.tar", BASE, compress)
    dest = tmp_path / "rootfs"
    d = layers.apply_layer(blob, dest, whiteouts=whiteouts)
    assert (dest / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert stat.S_IMODE(os.stat(dest / "etc/shadow").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(dest / "bin/busybox").st_mode) == 0o4755
    assert os.readlink(dest / "bin/sh") == "busybox"
    assert os.readlink(dest / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.stat(dest / "bin/ls").st_ino == os.stat(dest / "bin/busybox").st_ino
    assert stat.S_IMODE(os.stat(dest / "var/lib").st_mode) == 0o750
    assert os.stat(dest / "var").st_mode & 0o777 == 0o755
    # mtimes: files and directories (directories are stamped after their children)
    assert os.stat(dest / "etc/passwd").st_mtime == MTIME
    assert os.stat(dest / "etc").st_mtime == MTIME
    assert os.lstat(dest / "bin/sh").st_mtime == MTIME
    # digests: diffID is the uncompressed tar, digest the blob as stored
    raw = tar_bytes(BASE)
    assert d.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert d.digest == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    assert d.size == blob.stat().st_size
    assert d.media_type.endswith("+gzip") == compress
    if not compress:
        assert d.digest == d.diff_id


def test_user_xattrs_are_applied_and_overlay_xattrs_dropped(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.lk", b"1")
    except OSError:
        pytest.skip("tmp filesystem has no user xattrs")
    blob = write(tmp_path / "x.tar", [
        ti("f", data=b"", xattrs={"user.lk.color": "blue", "trusted.overlay.redirect": "/etc"})])
    plan = layers.inspect_layer(blob)
    assert plan.entries[0].xattrs == (("user.lk.color", b"blue"),)
    layers.apply_layer(blob, tmp_path / "L")
    assert os.getxattr(tmp_path / "L/f", "user.lk.color") == b"blue"


def test_inspect_plans_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    blob = write(tmp_path / "w.tar", [
        ti("etc/", tarfile.DIRTYPE),
        ti("etc/.wh.shadow"),
        ti("opt/", tarfile.DIRTYPE),
        ti("opt/.wh..wh..opq"),
        ti("opt/new", data=b"n"),
        ti(".wh..wh.plnk"),  # aufs bookkeeping: skipped, as Docker does
    ])
    entries = [(e.member, e.kind, e.path) for e in layers.inspect_layer(blob).entries]
    assert entries == [
        ("etc", "dir", "etc"),
        ("etc/.wh.shadow", "whiteout", "etc/shadow"),
        ("opt", "dir", "opt"),
        ("opt/.wh..wh..opq", "opaque", "opt"),
        ("opt/new", "file", "opt/new"),
    ]


def test_char_device_0_0_is_read_as_a_whiteout(tmp_path: Path) -> None:
    blob = write(tmp_path / "w.tar", [ti("etc/shadow", tarfile.CHRTYPE)])
    (e,) = layers.inspect_layer(blob).entries
    assert (e.kind, e.path) == ("whiteout", "etc/shadow")


def test_flatten_applies_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    layers.apply_layer(write(tmp_path / "l1.tar", BASE), rootfs, whiteouts=layers.FLATTEN)
    l2 = write(tmp_path / "l2.tar", [
        ti("etc/.wh.shadow"),
        ti("bin/.wh.sh"),
        ti("opt/", tarfile.DIRTYPE),
        ti("opt/kept", data=b"same layer, written before the marker"),
        ti("opt/.wh..wh..opq"),
        ti("opt/new", data=b"new"),
        ti("etc/motd", data=b"hi"),
        ti("etc/.wh.motd"),  # layer.md: a whiteout does not hide its own layer's file
        ti("tmp/.wh.never-existed"),
    ])
    layers.apply_layer(l2, rootfs, whiteouts=layers.FLATTEN)
    assert not (rootfs / "etc/shadow").exists()
    assert not (rootfs / "bin/sh").is_symlink()
    assert (rootfs / "bin/busybox").exists()
    assert sorted(os.listdir(rootfs / "opt")) == ["kept", "new"]
    assert (rootfs / "etc/motd").read_bytes() == b"hi"
    assert not (rootfs / "tmp").exists()  # a flattened whiteout makes no directories


def test_flatten_replaces_types(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    layers.apply_layer(write(tmp_path / "l1.tar", BASE), rootfs, whiteouts=layers.FLATTEN)
    l2 = write(tmp_path / "l2.tar", [
        ti("opt", data=b"now a file"),              # dir -> file
        ti("etc/passwd/", tarfile.DIRTYPE),         # file -> dir
        ti("bin/sh", data=b"#!real sh"),            # symlink -> file
        ti("bin/lnk", tarfile.LNKTYPE, link="etc/shadow"),  # hardlink into an earlier layer
    ])
    layers.apply_layer(l2, rootfs, whiteouts=layers.FLATTEN)
    assert (rootfs / "opt").read_bytes() == b"now a file"
    assert (rootfs / "etc/passwd").is_dir()
    assert (rootfs / "bin/sh").read_bytes() == b"#!real sh"
    assert os.stat(rootfs / "bin/lnk").st_ino == os.stat(rootfs / "etc/shadow").st_ino


def test_hardlink_into_lower_layer_is_refused_for_overlay_dirs(tmp_path: Path) -> None:
    blob = write(tmp_path / "l.tar", [ti("x", tarfile.LNKTYPE, link="etc/shadow")])
    with pytest.raises(errors.InvalidArgumentError, match="not an earlier file"):
        layers.apply_layer(blob, tmp_path / "L")


def test_same_path_twice_last_one_wins(tmp_path: Path) -> None:
    blob = write(tmp_path / "l.tar", [ti("a", data=b"1"), ti("a", data=b"2")])
    layers.apply_layer(blob, tmp_path / "L")
    assert (tmp_path / "L/a").read_bytes() == b"2"


def test_overlay_mode_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "L").mkdir()
    (tmp_path / "L/precious").write_text("keep")
    with pytest.raises(errors.AlreadyExistsError):
        layers.apply_layer(write(tmp_path / "l.tar", BASE), tmp_path / "L")
    assert (tmp_path / "L/precious").read_text() == "keep"


def test_overlay_mode_accepts_an_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "L").mkdir()
    layers.apply_layer(write(tmp_path / "l.tar", BASE), tmp_path / "L")
    assert (tmp_path / "L/etc/passwd").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".lk-unpack")] == []


def test_unknown_whiteouts_mode(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="whiteouts"):
        layers.apply_layer(write(tmp_path / "l.tar", BASE), tmp_path / "L", whiteouts="aufs")


def test_zstd_without_the_package_is_unsupported(tmp_path: Path) -> None:
    try:
        import zstandard  # type: ignore[import-not-found]  # noqa: F401
        pytest.skip("zstandard is installed")
    except ImportError:
        pass
    blob = tmp_path / "l.tar.zst"
    blob.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    with pytest.raises(errors.UnsupportedError, match="zstandard"):
        layers.inspect_layer(blob)


def test_bzip2_is_unsupported_with_a_hint(tmp_path: Path) -> None:
    blob = tmp_path / "l.tar.bz2"
    with tarfile.open(blob, "w:bz2") as tf:
        tf.addfile(*ti("a", data=b"x")[:1], io.BytesIO(b"x"))
    with pytest.raises(errors.UnsupportedError) as ei:
        layers.inspect_layer(blob)
    assert ei.value.hint and "gzip" in ei.value.hint


def test_without_same_owner_ids_are_not_applied(tmp_path: Path) -> None:
    t, data = ti("f", data=b"x")
    t.uid = t.gid = 4242
    layers.apply_layer(write(tmp_path / "l.tar", [(t, data)]), tmp_path / "L", same_owner=False)
    assert os.stat(tmp_path / "L/f").st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_same_owner_applies_ids(tmp_path: Path) -> None:
    t, data = ti("f", data=b"x", mode=0o2755)
    t.uid, t.gid = 4242, 4343
    layers.apply_layer(write(tmp_path / "l.tar", [(t, data)]), tmp_path / "L", same_owner=True)
    st = os.stat(tmp_path / "L/f")
    assert (st.st_uid, st.st_gid) == (4242, 4343)
    assert stat.S_IMODE(st.st_mode) == 0o2755  # chmod after chown keeps setgid


def test_corrupt_gzip_body_is_refused(tmp_path: Path) -> None:
    raw = tar_bytes([ti("a", data=os.urandom(50000))])
    blob = bytearray(gzip.compress(raw, mtime=0))
    for i in range(200, 400):
        blob[i] ^= 0xFF
    (tmp_path / "l.tgz").write_bytes(bytes(blob))
    with pytest.raises(errors.InvalidArgumentError):
        layers.apply_layer(tmp_path / "l.tgz", tmp_path / "L")
    assert not (tmp_path / "L").exists()


def test_overlay_whiteout_without_privilege_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(dirfd: int, path: str, mode: int, dev: int) -> None:
        raise errors.from_errno(1, "mknodat", path)

    monkeypatch.setattr(syscalls, "mknodat", refuse)
    blob = write(tmp_path / "w.tar", [ti("a", data=b"x"), ti(".wh.gone")])
    with pytest.raises(errors.UnsupportedError) as ei:
        layers.apply_layer(blob, tmp_path / "L")
    assert ei.value.hint and "flatten" in ei.value.hint
    assert not (tmp_path / "L").exists()  # the half-made layer was discarded
    layers.apply_layer(blob, tmp_path / "R", whiteouts=layers.FLATTEN)
    assert (tmp_path / "R/a").exists()
