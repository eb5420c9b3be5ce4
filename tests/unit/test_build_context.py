"""The build context tar is unpacked without trusting it (labkit.engine.build.context), and
COPY sources stay inside it (copyfiles.resolve_sources)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.build.context import unpack_context
from labkit.engine.build.copyfiles import resolve_sources


def _tar(path: Path, members: list[tuple[str, str, str]], gz: bool = False) -> Path:
    """members: (name, kind, data-or-linkname)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data.encode()))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
                tf.addfile(ti)
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def test_plain_context_with_dockerignore(tmp_path: Path) -> None:
    src = _tar(tmp_path / "c.tar", [("Dockerfile", "file", "FROM x\n"),
                                    (".dockerignore", "file", "*.log\nDockerfile\n"),
                                    ("a/b.txt", "file", "b"), ("x.log", "file", "no"),
                                    ("link", "sym", "/etc/passwd")], gz=True)
    dest = tmp_path / "ctx"
    dest.mkdir()
    unpack_context(src, dest)
    assert (dest / "a/b.txt").read_text() == "b" and (dest / "Dockerfile").exists()
    assert not (dest / "x.log").exists()
    assert (dest / "link").is_symlink()  # kept as a link, never followed


@pytest.mark.parametrize("members", [
    [("../evil", "file", "x")],
    [("/abs-evil", "file", "x")],
    [("a/../../evil", "file", "x")],
    [("out", "sym", "OUTSIDE"), ("out/evil", "file", "x")],
    [("h", "hard", "/etc/passwd")],
    [("h", "hard", "../OUTSIDE/victim")],
])
def test_hostile_context_refused(tmp_path: Path, members: list[tuple[str, str, str]]) -> None:
    outside = tmp_path / "OUTSIDE"
    outside.mkdir()
    (outside / "victim").write_text("safe")
    fixed = [(n, k, str(outside) if d == "OUTSIDE" else d) for n, k, d in members]
    src = _tar(tmp_path / "c.tar", fixed)
    dest = tmp_path / "ctx"
    dest.mkdir()
    with pytest.raises(errors.InvalidArgumentError, match="build context"):
        unpack_context(src, dest)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert not (tmp_path / "evil").exists() and not Path("/abs-evil").exists()


def test_copy_sources_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "g.txt").write_text("y")
    assert resolve_sources(tmp_path, "COPY", ["f.txt", "./g.txt"]) == ["f.txt", "g.txt"]
    assert resolve_sources(tmp_path, "COPY", ["*.txt"]) == ["f.txt", "g.txt"]
    with pytest.raises(errors.InvalidArgumentError, match="forbidden path outside the build "
                       "context: ../x"):
        resolve_sources(tmp_path, "COPY", ["../x"])
    with pytest.raises(errors.InvalidArgumentError, match="file not found in build context"):
        resolve_sources(tmp_path, "COPY", ["nope"])
    with pytest.raises(errors.UnsupportedError, match="ADD of a URL"):
        resolve_sources(tmp_path, "ADD", ["https://example.com/x.tar"])
