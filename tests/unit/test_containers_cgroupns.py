"""Docker's default cgroup namespace: private on a cgroup v2 host, the host's on v1."""

from __future__ import annotations

import pytest

from labkit import cgroups
from labkit.engine.containers import ocispec
from labkit.engine.containers.createbody import parse_create


def _namespaces(body: dict, mode: cgroups.Mode, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    monkeypatch.setattr(cgroups, "detect_mode", lambda *a, **k: mode)
    spec = parse_create({"Image": "busybox", **body})
    cfg = ocispec.translate("ab" * 32, spec.config, spec.host_config, {"Cmd": ["sh"]},
                            lambda path: None)
    return cfg["linux"]["namespaces"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode,private", [(cgroups.Mode.UNIFIED, True),
                                          (cgroups.Mode.HYBRID, False),
                                          (cgroups.Mode.LEGACY, False)])
def test_default_cgroupns_follows_the_cgroup_version(
        mode: cgroups.Mode, private: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _namespaces({}, mode, monkeypatch)
    assert ({"type": "cgroup"} in ns) is private
    assert ocispec.default_cgroupns_mode() == ("private" if private else "host")


@pytest.mark.parametrize("asked,private", [("host", False), ("private", True)])
def test_an_explicit_cgroupns_mode_wins(asked: str, private: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for mode in (cgroups.Mode.UNIFIED, cgroups.Mode.HYBRID):
        ns = _namespaces({"HostConfig": {"CgroupnsMode": asked}}, mode, monkeypatch)
        assert ({"type": "cgroup"} in ns) is private
