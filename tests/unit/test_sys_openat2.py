"""openat2(2) wrapper: RESOLVE_IN_ROOT keeps a walk inside its root, NO_SYMLINKS refuses links."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from labkit import errors
from labkit._sys import openat2

pytestmark = pytest.mark.skipif(not openat2.supported(), reason="no openat2(2) on this kernel")


def _where(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_in_root_clamps_dotdot_and_absolute_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    os.symlink("/etc", root / "abs")
    os.symlink("../../../etc", root / "up")
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for rel in ("abs", "up", "../etc", "/etc"):
            fd = openat2.openat2(rfd, rel, os.O_PATH, resolve=openat2.RESOLVE_IN_ROOT)
            assert _where(fd) == str(root / "etc"), rel
    finally:
        os.close(rfd)


def test_no_symlinks_refuses_with_eloop(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.symlink("d", tmp_path / "l")
    rfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(errors.SyscallError) as ei:
            openat2.openat2(rfd, "l", os.O_PATH, resolve=openat2.RESOLVE_NO_SYMLINKS)
        assert ei.value.errno == errno.ELOOP and ei.value.syscall == "openat2"
        with pytest.raises(errors.SyscallNotFoundError):
            openat2.openat2(rfd, "missing", os.O_PATH)
    finally:
        os.close(rfd)
