"""labkit.lab.volumes_demo's reading of /proc/PID/mountinfo (proc(5))."""

from __future__ import annotations

import os

import pytest

from labkit import errors
from labkit.lab import volumes_demo as vd


def test_mount_line_reads_this_process_root() -> None:
    line = vd.mount_line(os.getpid(), "/")
    assert line.mount_point == "/" and line.mount_id > 0 and line.fstype


def test_mount_line_missing_is_not_found() -> None:
    with pytest.raises(errors.NotFoundError, match="/no/such/mount"):
        vd.mount_line(os.getpid(), "/no/such/mount")


def test_unescape_octal() -> None:
    assert vd._unescape(r"/a\040b\134c") == "/a b\\c"
