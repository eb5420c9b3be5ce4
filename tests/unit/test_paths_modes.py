"""State modes: 0711 roots, 0700 per-container/image dirs, 0600 secrets; an old install fixed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labkit.engine import paths


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture()
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("LABKIT_RUN", str(tmp_path / "run"))
    return tmp_path


def test_fresh_state_gets_its_modes_even_under_a_tight_umask(state: Path) -> None:
    old = os.umask(0o077)
    try:
        paths.secure_state()
    finally:
        os.umask(old)
    assert mode(state / "root") == mode(state / "run") == 0o711
    assert mode(state / "root/containers") == mode(state / "root/images") == 0o700


def test_an_older_world_readable_install_is_fixed(state: Path) -> None:
    c = state / "root/containers/abc"
    (c / "bundle/rootfs").mkdir(parents=True, mode=0o755)
    (c / "upper").mkdir(mode=0o755)
    for d in (state / "root", state / "root/containers", c, c / "bundle"):
        d.chmod(0o755)
    secrets = [c / "config.v2.json", c / "bundle/config.json", c / "abc-json.log",
               c / "abc-json.log.1"]
    for f in [*secrets, c / "hostname"]:
        f.write_text("{}")
        f.chmod(0o644)
    (state / "outside").write_text("x")
    (state / "outside").chmod(0o644)
    os.symlink(state / "outside", c / "abc-json.log.2")  # never followed
    paths.secure_state()
    assert mode(state / "root") == 0o711 and mode(state / "root/containers") == 0o700
    assert mode(c) == 0o700
    assert [mode(f) for f in secrets] == [0o600] * 4
    # what the container itself reads stays as it was: its root, its /etc files
    assert mode(c / "upper") == 0o755 and mode(c / "hostname") == 0o644
    assert mode(state / "outside") == 0o644


def test_write_secret_replaces_a_wider_file(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text("old")
    f.chmod(0o644)
    paths.write_secret(f, b'{"Env": ["PASSWORD=x"]}')
    assert mode(f) == 0o600 and f.read_bytes() == b'{"Env": ["PASSWORD=x"]}'
    assert os.listdir(tmp_path) == ["config.json"]
