"""docker cp's GET side without a daemon: stat, member names (moby TarResourceRebase), and a
symlink that leads out of the root resolved inside it."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from labkit.engine.containers import archive as ar


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "d/sub").mkdir(parents=True)
    (root / "d/a").write_text("a\n")
    (root / "d/sub/b").write_text("b\n")
    os.symlink("/d", root / "dl")
    os.symlink(str(tmp_path / "host"), root / "out")
    (tmp_path / "host").mkdir()
    return root


def _names(root: Path, path: str) -> tuple[list[str], ar.PathStat]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with ar.resolve_resource(fd, path, "ctr") as res:
            st = ar.path_stat(fd, str(root), res)
            buf = io.BytesIO()
            ar.write_resource(res, buf)
    finally:
        os.close(fd)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        return tf.getnames(), st


def test_member_names_follow_the_request(tmp_path: Path) -> None:
    root = _root(tmp_path)
    assert _names(root, "/d")[0] == ["d", "d/a", "d/sub", "d/sub/b"]
    assert _names(root, "d/.")[0] == [".", "./a", "./sub", "./sub/b"]
    names, st = _names(root, "/dl/")  # a trailing slash follows the last link
    assert names == ["dl", "dl/a", "dl/sub", "dl/sub/b"] and st.mode & ar.GO_DIR
    names, st = _names(root, "/dl")  # without it, the link itself
    assert names == ["dl"] and st.mode & ar.GO_SYMLINK and st.link_target == "/d"
    assert _names(root, "/")[0][:2] == ["", "/d"]  # "/" (tarfile drops the slash)


def test_links_out_of_the_root_stay_inside(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (tmp_path / "host/secret").write_text("host\n")
    with pytest.raises(ar.PathNotFoundError) as exc:
        _names(root, "/out/secret")
    assert exc.value.message == "Could not find the file /out/secret in container ctr"
    _, st = _names(root, "/out")
    assert st.link_target == str(tmp_path / "host")  # lexically, inside the root
