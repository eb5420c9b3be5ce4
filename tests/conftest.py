"""Test layers (STYLE C16): unit everywhere; privileged tests only with --privileged, as root."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest

from labkit.engine.runtime.config import CGROUP_PARENT as _SHARED_PARENT


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--privileged",
        action="store_true",
        default=False,
        help="run tests marked privileged (needs root; they touch namespaces, cgroups, mounts)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--privileged") and os.geteuid() != 0:
        raise pytest.UsageError("--privileged needs root (euid 0)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--privileged"):
        return
    skip = pytest.mark.skip(reason="privileged test: pass --privileged and run as root")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)


# The runtime puts containers under the shared parent cgroup "lk" (as Docker uses /docker),
# creating it on first use and keeping it. A test session that created it removes it at the
# end, when it is empty; remove() refuses (ConflictError) while any process is inside.


@pytest.fixture(scope="session", autouse=True)
def _remove_shared_parent_cgroup(request: pytest.FixtureRequest) -> Iterator[None]:
    if not request.config.getoption("--privileged"):
        yield
        return
    from labkit.cgroups import open_cgroup
    from labkit.errors import LabkitError

    try:
        parent = open_cgroup(_SHARED_PARENT)
        existed = parent.exists()
    except (LabkitError, OSError):
        yield
        return
    yield
    if not existed and parent.exists():
        try:
            parent.remove()
        except (LabkitError, OSError) as err:
            warnings.warn(f"cgroup {_SHARED_PARENT!r} left in place: {err}",
                          pytest.PytestWarning, stacklevel=1)
