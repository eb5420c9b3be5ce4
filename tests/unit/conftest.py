"""Unit tests never write the host's state: LABKIT_ROOT and LABKIT_RUN point into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_state_dirs(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. the engine's event journal defaults to LABKIT_ROOT/events
    base: Path = tmp_path_factory.mktemp("lk-state")
    monkeypatch.setenv("LABKIT_ROOT", str(base / "root"))
    monkeypatch.setenv("LABKIT_RUN", str(base / "run"))
