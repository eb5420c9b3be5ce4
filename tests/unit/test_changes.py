"""docker diff from an overlay upper dir: kinds, parents, whiteouts, skipped mount points."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.engine.containers.changes import container_changes


def test_kinds_parents_and_skips(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in ("bin", "etc", "tmp"):
        (lower / d).mkdir(parents=True)
        (upper / d).mkdir(parents=True)
        os.chmod(upper / d, os.stat(lower / d).st_mode)
    (lower / "bin/ls").write_text("ls")
    (lower / "etc/passwd").write_text("root")
    (upper / "etc/passwd").write_text("root+")
    (upper / "etc/hosts").write_text("mount point")
    (upper / "etc/new").write_text("new")
    (upper / "tmp/a").mkdir()
    if os.geteuid() != 0:
        pytest.skip("whiteouts are char devices 0:0 (CAP_MKNOD)")
    os.mknod(upper / "bin/ls", 0o600 | 0o020000, os.makedev(0, 0))
    got = [(c["Kind"], c["Path"]) for c in container_changes(upper, [lower], ["/etc/hosts"])]
    assert got == [(0, "/bin"), (2, "/bin/ls"), (0, "/etc"), (1, "/etc/new"),
                   (0, "/etc/passwd"), (0, "/tmp"), (1, "/tmp/a")]


def test_no_upper_no_changes(tmp_path: Path) -> None:
    assert container_changes(tmp_path / "nothing", [tmp_path]) == []
