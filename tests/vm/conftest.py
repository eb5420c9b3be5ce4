"""tests/vm run INSIDE labkit's test VM (``make test-vm``), whose kernel has what a host may
lack: cgroup v2 with every controller, kprobes, ipvlan.  Elsewhere they skip, saying how to
run them.  The agent sets LABKIT_IN_VM=1 for every command it runs (labkit.vm.session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
IN_VM = os.environ.get("LABKIT_IN_VM") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_VM:
        return
    skip = pytest.mark.skip(reason="runs inside labkit's VM: make test-vm "
                                   "(labkit vm run -- python -m pytest --privileged tests/vm)")
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for kernel object names (interface names max 15 bytes)."""
    unique.n = getattr(unique, "n", 0) + 1  # type: ignore[attr-defined]
    return f"{os.getpid() % 100000}{unique.n}"  # type: ignore[attr-defined]


@pytest.fixture
def python() -> str:
    return sys.executable
