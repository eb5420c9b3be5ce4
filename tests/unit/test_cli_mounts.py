"""labkit run --mount: Docker's CSV syntax -> HostConfig.Mounts (docker/cli opts/mount.go)."""

from __future__ import annotations

import argparse

import pytest

from labkit import errors
from labkit.cli._mounts import apply, parse_mount


def test_volume_defaults_and_aliases() -> None:
    assert parse_mount("source=v,target=/d") == {"Type": "volume", "Source": "v", "Target": "/d"}
    assert parse_mount("type=bind,src=/h,dst=/c,readonly,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True,
        "BindOptions": {"Propagation": "rslave"}}
    assert parse_mount("src=v,destination=/d,ro=false,volume-nocopy,volume-label=a=b,"
                       "volume-opt=type=tmpfs") == {
        "Type": "volume", "Source": "v", "Target": "/d", "ReadOnly": False,
        "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                          "DriverConfig": {"Options": {"type": "tmpfs"}}}}


def test_tmpfs_size_and_mode() -> None:
    assert parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1770}}


@pytest.mark.parametrize("spec,word", [("source=v", "target is required"),
                                       ("target=/d,bogus=1", "bogus"),
                                       ("target=/d,readonly=maybe", "readonly"),
                                       ("type=bind,target=/d,tmpfs-size=1m", "TmpfsOptions"),
                                       ("type=tmpfs,target=/t,tmpfs-mode=9z", "tmpfs-mode"),
                                       ("target=/d,consistency=cached", "consistency"),
                                       ("target", "key=value")])
def test_refused_by_name(spec: str, word: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=word):
        parse_mount(spec)


def test_apply_binds_and_mounts() -> None:
    host: dict[str, object] = {}
    apply(argparse.Namespace(volume=["v:/d:ro"], mount=["type=tmpfs,target=/t"]), host)
    assert host == {"Binds": ["v:/d:ro"], "Mounts": [{"Type": "tmpfs", "Target": "/t"}]}
