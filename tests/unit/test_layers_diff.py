"""write_layer: directory -> reproducible layer tar, and the whiteout naming (no root needed)."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images import diff, layers


def tree(root: Path, mtime: int = 1_000_000) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF")
    os.chmod(root / "bin/busybox", 0o755)
    os.symlink("busybox", root / "bin/sh")
    os.link(root / "bin/busybox", root / "bin/ls")
    (root / "empty").mkdir()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (mtime, mtime), follow_symlinks=False)
    return root


def members(blob: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(blob) as tf:
        return tf.getmembers()


def test_whiteout_name_and_mode_classification() -> None:
    assert diff.whiteout_name("etc/shadow") == "etc/.wh.shadow"
    assert diff.whiteout_name("top") == ".wh.top"
    assert diff.classify_mode(stat.S_IFCHR, os.makedev(0, 0)) == "whiteout"
    assert diff.classify_mode(stat.S_IFCHR, os.makedev(1, 3)) == "char device"
    assert diff.classify_mode(stat.S_IFREG | 0o644, 0) == "file"
    assert diff.classify_mode(stat.S_IFDIR, 0) == "dir"
    assert diff.classify_mode(stat.S_IFIFO, 0) == "fifo"


def test_entries_are_sorted_parents_first_and_numeric(tmp_path: Path) -> None:
    src = tree(tmp_path / "src")
    diff.write_layer(src, tmp_path / "l.tar", compression="none")
    ms = members(tmp_path / "l.tar")
    assert [m.name for m in ms] == [
        "bin", "bin/busybox", "bin/ls", "bin/sh", "empty", "etc", "etc/hosts"]
    by = {m.name: m for m in ms}
    assert by["bin/ls"].islnk() and by["bin/ls"].linkname == "bin/busybox"
    assert by["bin/sh"].issym() and by["bin/sh"].linkname == "busybox"
    assert by["bin/busybox"].mode == 0o755
    assert all(m.uname == "" and m.gname == "" for m in ms)


def test_same_tree_same_diff_id_when_mtime_is_normalized(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", mtime=1_000_000)
    b = tree(tmp_path / "b", mtime=2_000_000)
    da = diff.write_layer(a, tmp_path / "a.tgz", mtime=0)
    db = diff.write_layer(b, tmp_path / "b.tgz", mtime=0)
    assert da == db
    assert diff.write_layer(b, tmp_path / "b2.tgz").diff_id != da.diff_id  # real mtimes differ


def test_digests_match_the_bytes(tmp_path: Path) -> None:
    d = diff.write_layer(tree(tmp_path / "src"), tmp_path / "l.tgz")
    blob = (tmp_path / "l.tgz").read_bytes()
    assert d.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert d.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert d.size == len(blob)
    assert d.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    plain = diff.write_layer(tmp_path / "src", tmp_path / "l.tar", compression="none")
    assert plain.digest == plain.diff_id == d.diff_id


def test_roundtrip_through_apply_gives_the_same_tree(tmp_path: Path) -> None:
    src = tree(tmp_path / "src")
    d1 = diff.write_layer(src, tmp_path / "l.tgz")
    applied = layers.apply_layer(tmp_path / "l.tgz", tmp_path / "out")
    assert applied == d1
    d2 = diff.write_layer(tmp_path / "out", tmp_path / "again.tgz")
    assert d2.diff_id == d1.diff_id


def test_sockets_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    (src / "f").write_text("x")
    path = src / "sock"
    if len(str(path)) > 100:
        pytest.skip("tmp path too long for a unix socket")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        diff.write_layer(src, tmp_path / "l.tar", compression="none")
    finally:
        s.close()
    assert [m.name for m in members(tmp_path / "l.tar")] == ["f"]


def test_fifo_is_written_as_fifo(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    os.mkfifo(src / "p")
    diff.write_layer(src, tmp_path / "l.tar", compression="none")
    (m,) = members(tmp_path / "l.tar")
    assert m.isfifo()


def test_changes_lists_plain_entries(tmp_path: Path) -> None:
    src = tree(tmp_path / "src")
    kinds = {c.path: c.kind for c in diff.changes(src)}
    assert kinds["bin/sh"] == "symlink" and kinds["etc"] == "dir" and kinds["etc/hosts"] == "file"


def test_missing_source_and_bad_compression(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFoundError):
        diff.write_layer(tmp_path / "nope", tmp_path / "l.tar")
    (tmp_path / "d").mkdir()
    with pytest.raises(errors.InvalidArgumentError, match="compression"):
        diff.write_layer(tmp_path / "d", tmp_path / "l.tar", compression="lz4")
    assert not (tmp_path / "l.tar").exists()


def test_directory_swapped_for_symlink_while_packing_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running container swaps upper/a for a symlink to a host directory between the
    listing and the descent (CVE-2018-15664's pattern): the host file never enters the
    layer; the packing stops with ConflictError instead."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host/secret").write_bytes(b"host secret\n")
    src = tmp_path / "upper"
    (src / "a").mkdir(parents=True)
    (src / "a/secret").write_bytes(b"container file\n")
    real = diff.classify_mode
    swapped: list[bool] = []

    def classify_then_swap(mode: int, rdev: int) -> str:
        kind = real(mode, rdev)
        if not swapped:  # the first entry listed is "a"
            swapped.append(True)
            os.rename(src / "a", src / "a.moved")
            os.symlink(tmp_path / "host", src / "a")
        return kind

    monkeypatch.setattr(diff, "classify_mode", classify_then_swap)
    out = tmp_path / "l.tar"
    with pytest.raises(errors.ConflictError, match="changed while it was being read"):
        diff.write_layer(src, out, compression="none")
    assert not out.exists()
