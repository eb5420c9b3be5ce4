"""vagrant/Vagrantfile is valid (`vagrant validate`), for one node and for the swarm's three,
and rejects a bad node count with a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"
VAGRANT = shutil.which("vagrant")
needs_vagrant = pytest.mark.skipif(
    VAGRANT is None, reason="vagrant is not installed: apt-get install vagrant vagrant-libvirt "
                            "(scripts/debian-packages-vm.txt; make setup)")


def _validate(nodes: str) -> subprocess.CompletedProcess[str]:
    assert VAGRANT is not None
    env = {**os.environ, "LABKIT_NODES": nodes, "VAGRANT_CHECKPOINT_DISABLE": "1"}
    return subprocess.run([VAGRANT, "validate"], cwd=VAGRANT_DIR, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@needs_vagrant
@pytest.mark.parametrize("nodes", ["1", "3"])
def test_vagrant_validate(nodes: str) -> None:
    res = _validate(nodes)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


@needs_vagrant
def test_bad_node_count_is_refused() -> None:
    res = _validate("many")
    assert res.returncode != 0
    assert "LABKIT_NODES must be a whole number" in res.stdout + res.stderr


def test_vagrantfile_provisions_with_make_setup_and_shares_the_repo() -> None:
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert "make setup" in text and '"/labkit"' in text
    assert "debian/bookworm64" in text
    assert ":libvirt" in text and ":virtualbox" in text
