"""Test layers (STYLE C16): unit everywhere; privileged tests only with --privileged, as root."""

from __future__ import annotations

import os

import pytest


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
