"""Black-box fixtures: a real labkit daemon (and its supervisor) in /tmp/lk-bb-* dirs.

The daemon is started once per session with LABKIT_ROOT/LABKIT_RUN/LABKIT_SOCKET pointing at
temp dirs; at the end every container is removed through the API, and the daemon, supervisor
and shims are killed by pid (labkit.lab.engine.LabEngine.stop).  Containers use
``--network none`` or the default (loopback-only) network: no host networking is touched.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator

import pytest

from labkit.lab.engine import LabEngine
from labkit.measure.peers import docker_cli

_counter = itertools.count()


@pytest.fixture(scope="session")
def engine() -> Iterator[LabEngine]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    eng = LabEngine("bb")
    try:
        eng.start()
        yield eng
    finally:
        eng.stop()


@pytest.fixture
def name() -> str:
    """A unique container name: lk-bb-<pid>-<n>."""
    return f"lk-bb-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def docker(engine: LabEngine) -> Iterator[object]:
    """Run the real Docker CLI against the engine: docker("ps", "-a") -> CompletedProcess."""
    # No skip: make setup installs the CLI where a machine has none, so a missing one is a
    # failure of the set-up, reported by docker_cli()'s UnsupportedError.
    cli = docker_cli()

    def run(*args: str, input: bytes | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([cli, *args], env=engine.docker_env, input=input,
                              capture_output=True, timeout=timeout, check=False)

    yield run
