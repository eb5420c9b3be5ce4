"""Containers on a cgroup v2 host: the eBPF device filter and the private cgroup namespace.

Run by labkit-runtime from a busybox bundle in the VM, whose cgroup v2 has no devices
controller files: what stops root in the container (CAP_MKNOD is in Docker's default set)
from making a node for a disk and reading it is the BPF_CGROUP_DEVICE program alone.  Each
test uses its own state root and ids "lk-vmdev-<pid>-<n>"; teardown deletes every container
and checks its cgroup is gone.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.cgroups import Mode, detect_mode
from labkit.engine.containers import ocispec
from labkit.engine.containers.createbody import parse_create
from labkit.engine.images.busybox import build_rootfs
from labkit.engine.runtime import devfilter
from labkit.engine.runtime.config import CGROUP_PARENT

pytestmark = pytest.mark.privileged
RUNTIME = [sys.executable, "-m", "labkit.engine.runtime"]
_n = itertools.count()


class Bundle:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "bundle"
        self.dir.mkdir()
        self.root = tmp / "state"
        self.ids: list[str] = []
        build_rootfs(self.dir / "rootfs")
        self.cli("spec", "--bundle", str(self.dir), check=True)

    def new_id(self) -> str:
        cid = f"lk-vmdev-{os.getpid()}-{next(_n)}"
        self.ids.append(cid)
        return cid

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = json.loads((self.dir / "config.json").read_text())
        return cfg

    @config.setter
    def config(self, cfg: dict[str, Any]) -> None:
        (self.dir / "config.json").write_text(json.dumps(cfg))

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: a detached container would hold a pipe open.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            rc = subprocess.run([*RUNTIME, "--root", str(self.root), *args], stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, timeout=300,
                                check=False).returncode
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(args, rc, out.read(), err.read())
        if check and p.returncode != 0:
            raise AssertionError(f"{args}: rc={p.returncode} stderr={p.stderr}")
        return p

    def run(self, cid: str, script: str) -> subprocess.CompletedProcess[str]:
        cfg = self.config
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["sh", "-c", script]
        self.config = cfg
        return self.cli("run", "--bundle", str(self.dir), cid)


def _cgroup_dir(cid: str) -> Path:
    return Path("/sys/fs/cgroup") / CGROUP_PARENT / cid


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[Bundle]:
    assert detect_mode() is Mode.UNIFIED
    b = Bundle(tmp_path)
    yield b
    for cid in b.ids:
        if (b.root / cid).exists():
            b.cli("delete", "--force", cid)
        assert not (b.root / cid).exists()
        assert not _cgroup_dir(cid).exists()


def _root_disk() -> tuple[int, int]:
    """major, minor of a block device this VM really has (its virtio disk)."""
    for name in sorted(os.listdir("/sys/block")):
        dev = Path("/sys/block", name, "dev")
        if dev.exists() and not name.startswith(("loop", "ram")):
            major, minor = dev.read_text().split(":")
            return int(major), int(minor)
    pytest.fail("the VM has no block device to probe with")


def test_mknod_of_a_disk_then_open_is_refused_and_standard_nodes_work(bundle: Bundle) -> None:
    major, minor = _root_disk()
    script = (
        "mknod /dev/lk-sda b 8 0 && echo made-sda;"
        f" mknod /dev/lk-disk b {major} {minor} && echo made-disk;"
        " head -c 1 /dev/lk-sda >/dev/null; head -c 512 /dev/lk-disk | wc -c;"
        " echo x > /dev/null && echo null-ok;"
        " head -c 3 /dev/zero | wc -c; head -c 5 /dev/urandom | wc -c; head -c 2 /dev/full | wc -c;"
        " head -c 1 /dev/tty; true")
    cid = bundle.new_id()
    p = bundle.run(cid, script)
    assert p.returncode == 0, p.stderr
    # mknod is allowed (Docker's "b *:* m"); opening the node is what the filter refuses.
    assert p.stdout.split() == ["made-sda", "made-disk", "0", "null-ok", "3", "5", "2"], p.stderr
    assert "head: /dev/lk-sda: Operation not permitted" in p.stderr
    assert "head: /dev/lk-disk: Operation not permitted" in p.stderr
    # /dev/tty is allowed: without a controlling terminal its open fails with ENXIO, not EPERM.
    assert "head: /dev/tty: No such device or address" in p.stderr


def test_the_filter_is_the_containers_own_and_an_allow_rule_lets_the_disk_open(
        bundle: Bundle) -> None:
    major, minor = _root_disk()
    cfg = bundle.config
    cfg["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"})
    cfg["process"]["terminal"] = False
    bundle.config = cfg
    cid = bundle.new_id()
    bundle.cli("create", "--bundle", str(bundle.dir), cid, check=True)
    attached = devfilter.attached(str(_cgroup_dir(cid)))
    assert len(attached) == 1  # attached to the container's cgroup, before anything ran in it
    bundle.cli("delete", "--force", cid, check=True)
    cid = bundle.new_id()
    p = bundle.run(cid, f"mknod /dev/lk-disk b {major} {minor};"
                        " head -c 512 /dev/lk-disk | wc -c; echo x | tee /dev/lk-disk")
    assert p.stdout.split() == ["512", "x"], p.stderr  # read allowed by the rule ...
    assert "tee: /dev/lk-disk: Operation not permitted" in p.stderr  # ... write still denied


def test_a_container_gets_a_private_cgroup_namespace_by_default(bundle: Bundle) -> None:
    # The spec the engine builds for `docker run` (ocispec.translate), run by the runtime.
    req = parse_create({"Image": "busybox", "Cmd": ["cat", "/proc/self/cgroup"],
                        "HostConfig": {"NetworkMode": "host"}})
    cid = bundle.new_id()
    spec = ocispec.translate(cid, req.config, req.host_config, {"Cmd": ["sh"]}, lambda p: None)
    assert {"type": "cgroup"} in spec["linux"]["namespaces"]
    bundle.config = spec
    p = bundle.cli("run", "--bundle", str(bundle.dir), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "0::/\n"  # the container's cgroup is its namespace's root
