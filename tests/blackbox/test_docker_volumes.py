"""`docker volume ...`, `docker run -v / --mount`, `docker rm -v` with the real Docker CLI and
docker-py against labkit's daemon (issue 9 item 5)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def vol(docker: Docker, name: str) -> Iterator[str]:
    """A volume name; the volume (and containers named after it) removed at the end."""
    yield f"{name}-v"
    for suffix in ("-a", "-b", "-c"):
        docker("rm", "-f", "-v", f"{name}{suffix}")
    docker("volume", "rm", "-f", f"{name}-v")


def _ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_volume_verbs(docker: Docker, vol: str) -> None:
    assert _ok(docker("volume", "create", "--label", "lk=1", vol)).strip() == vol
    assert _ok(docker("volume", "create", vol)).strip() == vol  # idempotent, as Docker
    info = json.loads(_ok(docker("volume", "inspect", vol)))[0]
    assert info["Name"] == vol and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"lk": "1"} and info["Mountpoint"].endswith(f"/volumes/{vol}/_data")
    assert vol in _ok(docker("volume", "ls", "-q", "--filter", "label=lk=1")).split()
    assert vol not in _ok(docker("volume", "ls", "-q", "--filter", "label=lk=2")).split()
    assert vol in _ok(docker("volume", "ls", "-q", "--filter", "dangling=true")).split()
    r = docker("volume", "create", "a/../../x")
    assert r.returncode != 0 and b"includes invalid characters" in r.stderr
    r = docker("volume", "create", "-d", "nfs", f"{vol}2")
    assert r.returncode != 0 and b"nfs" in r.stderr
    r = docker("volume", "create", "-o", "type=tmpfs", f"{vol}2")
    assert r.returncode != 0 and b"'type'" in r.stderr
    r = docker("volume", "inspect", "nosuch-lk")
    assert r.returncode != 0 and b"no such volume" in r.stderr
    _ok(docker("volume", "rm", vol))
    assert vol not in _ok(docker("volume", "ls", "-q")).split()
    _ok(docker("volume", "create", "--label", "lkprune=1", vol))
    out = _ok(docker("volume", "prune", "-f", "--filter", "label=lkprune=1"))
    assert vol in out and vol not in _ok(docker("volume", "ls", "-q")).split()


def test_data_outlives_containers_and_in_use(docker: Docker, name: str, vol: str) -> None:
    _ok(docker("run", "--name", f"{name}-a", "-v", f"{vol}:/data", "busybox", "sh", "-c",
               "echo hi > /data/f"))  # created on first use
    assert vol in _ok(docker("volume", "ls", "-q")).split()
    info = json.loads(_ok(docker("inspect", f"{name}-a")))[0]
    m = info["Mounts"][0]
    assert (m["Type"], m["Name"], m["Destination"], m["Driver"], m["RW"]) == (
        "volume", vol, "/data", "local", True)
    r = docker("volume", "rm", vol)  # an exited container still references it
    assert r.returncode != 0
    cid = info["Id"]
    assert f"remove {vol}: volume is in use - [{cid}]".encode() in r.stderr, r.stderr
    _ok(docker("rm", "-v", f"{name}-a"))  # -v: a named volume survives
    out = _ok(docker("run", "--rm", "-v", f"{vol}:/d:ro", "busybox", "sh", "-c",
                     "cat /d/f; touch /d/g 2>/dev/null && echo WROTE || echo RO"))
    assert out.split() == ["hi", "RO"]
    _ok(docker("volume", "rm", vol))


def test_bind_readonly_and_tmpfs(docker: Docker, name: str) -> None:
    host = tempfile.mkdtemp(prefix="lk-bind-")
    try:
        Path(host, "in").write_text("from host\n")
        out = _ok(docker("run", "--rm", "--mount",
                         f"type=bind,source={host},target=/h,readonly", "busybox", "sh", "-c",
                         "cat /h/in; echo x > /h/new 2>/dev/null && echo WROTE || echo RO"))
        assert out.split() == ["from", "host", "RO"]
        assert not Path(host, "new").exists()
        _ok(docker("run", "--rm", "-v", f"{host}:/h", "busybox", "sh", "-c", "echo w > /h/w"))
        assert Path(host, "w").read_text() == "w\n"
        made = Path(host, "made-by-v")  # -v makes a missing source, as Docker does
        _ok(docker("run", "--rm", "-v", f"{made}:/m", "busybox", "true"))
        assert made.is_dir()
        r = docker("run", "--rm", "--mount", f"type=bind,source={host}/nosuch,target=/m",
                   "busybox", "true")
        assert r.returncode != 0 and b"bind source path does not exist" in r.stderr
    finally:
        shutil.rmtree(host)
    out = _ok(docker("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=2m",
                     "busybox", "df", "-k", "/t"))
    assert out.splitlines()[1].split()[1] == "2048", out
    r = docker("run", "--rm", "-v", "vv:/", "busybox", "true")
    assert r.returncode != 0 and b"destination can't be '/'" in r.stderr


def test_copy_up_and_nocopy(docker: Docker, name: str, vol: str) -> None:
    """A new empty volume takes the image's content at its mount point (owners, modes,
    symlinks kept); ``nocopy`` keeps it empty; a volume with data is never overwritten."""
    def listing(*args: str) -> list[str]:
        out = _ok(docker("run", "--rm", *args, "busybox", "ls", "-ln", "--full-time", "/etc"))
        # (hostname, hosts, resolv.conf are each container's own files, bound over /etc)
        return [ln for ln in out.splitlines()[1:]
                if ln.split()[-1] not in ("hostname", "hosts", "resolv.conf")]
    want = listing()
    got = listing("-v", f"{vol}:/etc")
    assert got == want and any(ln.endswith(" passwd") for ln in got)
    _ok(docker("run", "--rm", "-v", f"{vol}:/etc", "busybox", "rm", "/etc/passwd"))
    got = _ok(docker("run", "--rm", "-v", f"{vol}:/etc", "busybox", "ls", "/etc"))
    assert "passwd" not in got  # not empty: no second copy
    _ok(docker("volume", "rm", vol))
    out = _ok(docker("run", "--rm", "-v", f"{vol}:/etc:nocopy", "busybox", "ls", "-A", "/etc"))
    assert out == ""
    _ok(docker("volume", "rm", vol))
    out = _ok(docker("run", "--rm", "--mount", f"type=volume,source={vol},target=/etc,"
                     "volume-nocopy", "busybox", "ls", "-A", "/etc"))
    assert out == ""
    _ok(docker("volume", "rm", vol))


def test_rm_v_removes_anonymous(docker: Docker, name: str, vol: str) -> None:
    _ok(docker("create", "--name", f"{name}-b", "-v", "/anon", "-v", f"{vol}:/named",
               "busybox", "true"))
    mounts = json.loads(_ok(docker("inspect", f"{name}-b")))[0]["Mounts"]
    anon = next(m["Name"] for m in mounts if m["Destination"] == "/anon")
    assert len(anon) == 64 and anon in _ok(docker("volume", "ls", "-q")).split()
    _ok(docker("rm", "-v", f"{name}-b"))
    names = _ok(docker("volume", "ls", "-q")).split()
    assert anon not in names and vol in names
    _ok(docker("volume", "rm", vol))
    # --rm takes the anonymous volumes with it too (as Docker's AutoRemove)
    before = set(_ok(docker("volume", "ls", "-q")).split())
    out = _ok(docker("run", "--rm", "-v", "/anon", "busybox", "sh", "-c",
                     "echo x > /anon/f && cat /anon/f"))
    assert out == "x\n"
    assert set(_ok(docker("volume", "ls", "-q")).split()) == before


def test_docker_py(engine: LabEngine, name: str, vol: str) -> None:
    import docker as dockerpy
    client = dockerpy.DockerClient(base_url=engine.docker_env["DOCKER_HOST"])
    try:
        v = client.volumes.create(vol, labels={"lk": "py"})
        assert client.volumes.get(vol).attrs["Labels"] == {"lk": "py"}
        assert vol in [x.name for x in client.volumes.list(filters={"label": "lk=py"})]
        out = client.containers.run("busybox", ["sh", "-c", "echo py > /v/f; cat /v/f"],
                                    volumes={vol: {"bind": "/v", "mode": "rw"}}, remove=True)
        assert out == b"py\n"
        assert Path(v.attrs["Mountpoint"], "f").read_text() == "py\n"
        row = next(x for x in client.df()["Volumes"] if x["Name"] == vol)
        assert row["UsageData"] == {"Size": 3, "RefCount": 0}
        v.remove()
        assert vol not in [x.name for x in client.volumes.list()]
    finally:
        client.close()
    assert os.geteuid() == 0
