"""labkit._sys.inroot: paths opened inside a directory as if it were "/" (openat2 and the
O_NOFOLLOW walk used where the kernel has no openat2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit._sys import inroot
from labkit.engine.containers.archive import abs_path, go_base, go_file_mode


@pytest.fixture(params=["openat2", "walk"])
def opener(request, monkeypatch):  # type: ignore[no-untyped-def]
    if request.param == "walk":
        monkeypatch.setattr(inroot, "_have_openat2", False)
    return inroot.open_in_root


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("inside\n")
    outside.mkdir()
    (outside / "passwd").write_text("HOST\n")
    os.symlink(str(outside), root / "abs")                 # absolute: to the host path
    os.symlink("../../../../../../" + str(outside).lstrip("/"), root / "rel")  # climbing
    os.symlink("/etc", root / "etclink")
    return root, outside


def _read(opener, rootfd: int, path: str) -> str:  # type: ignore[no-untyped-def]
    fd = opener(rootfd, path, os.O_RDONLY)
    with os.fdopen(fd) as f:
        return f.read()


def test_symlinks_resolve_inside_the_root(tmp_path: Path, opener) -> None:  # type: ignore[no-untyped-def]
    root, _ = _tree(tmp_path)
    rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _read(opener, rootfd, "/etclink/passwd") == "inside\n"
        assert _read(opener, rootfd, "/../../etc/passwd") == "inside\n"
        for escape in ("/abs/passwd", "/rel/passwd"):
            with pytest.raises(FileNotFoundError):
                _read(opener, rootfd, escape)
        (root / str(tmp_path / "outside").lstrip("/")).mkdir(parents=True)
        (root / str(tmp_path / "outside/passwd").lstrip("/")).write_text("mirror\n")
        assert _read(opener, rootfd, "/abs/passwd") == "mirror\n"
        assert _read(opener, rootfd, "/rel/passwd") == "mirror\n"
    finally:
        os.close(rootfd)


def test_last_component_not_followed_when_asked(tmp_path: Path, opener) -> None:  # type: ignore[no-untyped-def]
    root, _ = _tree(tmp_path)
    rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = opener(rootfd, "/etclink", os.O_PATH, follow_last=False)
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == str(root / "etclink")
        finally:
            os.close(fd)
    finally:
        os.close(rootfd)


def test_docker_path_helpers() -> None:
    assert abs_path("etc/passwd") == "/etc/passwd"
    assert abs_path("/etc/") == "/etc/"
    assert abs_path("/etc/.") == "/etc/."
    assert abs_path("/../../x") == "/x"
    assert abs_path("/") == "/"
    assert [go_base(p) for p in ("/etc/", "/etc/.", "/", "/a/b")] == ["etc", ".", "/", "b"]
    assert go_file_mode(0o040755) == (1 << 31) | 0o755
    assert go_file_mode(0o120777) == (1 << 27) | 0o777
    assert go_file_mode(0o104755) == (1 << 23) | 0o755
    assert go_file_mode(0o020620) == (1 << 26) | (1 << 21) | 0o620
