"""`docker events` for images and volumes, read back with the real Docker CLI and docker-py:
Type, Action and Actor as moby emits them (import, tag, push, untag, pull, save, load,
delete; volume create, mount, unmount, destroy), replayed with --since/--until and filtered
by type, image, event, volume and label.

Images are lk-test/ev-* or REGISTRY/lk/ev-*, volumes lk-ev-*; each test removes its own.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker as dockerpy
import pytest

from labkit.lab.engine import LabEngine
from labkit.measure.registry import LocalRegistry

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


def _ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    return r.stdout.decode()


def _rootfs(path: Path, label: str) -> None:
    """A one-file rootfs tar whose content is new each time (so is the image ID)."""
    data = f"{label} {uuid.uuid4().hex}\n".encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("lk-id")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _events(docker: Docker, since: float, *flt: str) -> list[dict[str, Any]]:
    args = ["events", "--since", f"{since:.6f}", "--until", f"{time.time():.6f}",
            "--format", "{{json .}}"]
    for f in flt:
        args += ["--filter", f]
    return [json.loads(line) for line in _ok(docker(*args, timeout=30)).splitlines() if line]


def _triples(evs: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("name")) for e in evs]


@pytest.fixture
def images(docker: Docker) -> Iterator[list[str]]:
    refs: list[str] = []
    yield refs
    for r in refs:
        docker("rmi", "-f", r)


def test_image_events_with_the_docker_cli(docker: Docker, tmp_path: Path,
                                          images: list[str]) -> None:
    with LocalRegistry() as reg:
        local, remote = "lk-test/ev-cli:1", f"{reg.address}/lk/ev-cli:1"
        images += [local, remote]
        _rootfs(tmp_path / "rootfs.tar", "cli")
        t0 = time.time()
        _ok(docker("import", "--change", "LABEL lk.ev=yes", str(tmp_path / "rootfs.tar"),
                   local))
        iid = _ok(docker("inspect", "-f", "{{.Id}}", local)).strip()
        _ok(docker("tag", local, remote))
        _ok(docker("push", remote))
        _ok(docker("rmi", remote))  # untag only: the local name remains
        _ok(docker("pull", remote))
        _ok(docker("save", "-o", str(tmp_path / "saved.tar"), local))
        _ok(docker("rmi", local, remote))  # untag, untag, delete
        _ok(docker("load", "-i", str(tmp_path / "saved.tar")))
        _ok(docker("rmi", local))
        evs = _events(docker, t0, "type=image")
    repo = f"{reg.address}/lk/ev-cli"
    assert _triples(evs) == [
        ("tag", iid, local), ("import", iid, iid),          # moby ImportImage
        ("tag", iid, remote),
        ("push", remote, repo),                             # FamiliarString, FamiliarName
        ("untag", iid, iid),
        ("pull", remote, repo),
        ("save", iid, iid),
        ("untag", iid, iid), ("untag", iid, iid), ("delete", iid, iid),
        ("load", iid, iid),                                 # load's tags: no "tag" event
        ("untag", iid, iid), ("delete", iid, iid)]
    for e in evs:
        assert e["Type"] == "image" and e["scope"] == "local"
        assert e["status"] == e["Action"] and e["id"] == e["Actor"]["ID"] and "from" not in e
        assert e["time"] == e["timeNano"] // 10**9
    # the image's labels ride along while it exists (moby LogImageEvent), not after delete
    by_action = {e["Action"]: e["Actor"]["Attributes"] for e in evs}
    assert by_action["tag"].get("lk.ev") == "yes" and "lk.ev" not in by_action["delete"]
    # image=REPO: push/pull by Actor.ID and the tag by its name, each without the tag
    assert [e["Action"] for e in _events(docker, t0, f"image={repo}")] == \
        ["tag", "push", "pull"]
    assert [e["Action"] for e in _events(docker, t0, "type=image", "event=delete")] == \
        ["delete", "delete"]
    assert [e["Action"] for e in _events(docker, t0, "type=image", "label=lk.ev=yes",
                                         "event=untag")] == ["untag"] * 4
    r = docker("events", "--since", f"{t0:.6f}", "--until", f"{time.time():.6f}",
               "--filter", "colour=red")
    assert r.returncode != 0 and b"invalid filter 'colour'" in r.stderr


def test_volume_events_with_the_docker_cli(docker: Docker, name: str) -> None:
    vol = f"lk-ev-{uuid.uuid4().hex[:12]}"
    t0 = time.time()
    try:
        _ok(docker("volume", "create", vol))
        _ok(docker("run", "--name", name, "-v", f"{vol}:/data:ro", "busybox", "true"))
        cid = _ok(docker("inspect", "-f", "{{.Id}}", name)).strip()
        _ok(docker("rm", name))
        _ok(docker("volume", "rm", vol))
    finally:
        docker("rm", "-f", name)
        docker("volume", "rm", "-f", vol)
    evs = _events(docker, t0, "type=volume", f"volume={vol}")
    assert [e["Action"] for e in evs] == ["create", "mount", "unmount", "destroy"]
    for e in evs:
        assert e["Type"] == "volume" and e["Actor"]["ID"] == vol and e["scope"] == "local"
        assert "status" not in e and "id" not in e  # moby: legacy fields not for volumes
    assert evs[0]["Actor"]["Attributes"] == {"driver": "local"}
    assert evs[1]["Actor"]["Attributes"] == {"driver": "local", "container": cid,
                                             "destination": "/data", "read/write": "false",
                                             "propagation": ""}
    assert evs[2]["Actor"]["Attributes"] == {"driver": "local", "container": cid}
    both = _events(docker, t0, f"volume={vol}", f"container={cid}")  # keys AND (moby)
    assert both == []


def test_image_and_volume_events_with_docker_py(engine: LabEngine, tmp_path: Path,
                                                docker: Docker, images: list[str]) -> None:
    client = dockerpy.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")
    vol = f"lk-ev-{uuid.uuid4().hex[:12]}"
    tag = f"lk-test/ev-py:{uuid.uuid4().hex[:8]}"
    images.append(tag)
    try:
        t0 = time.time()
        img = client.images.get("busybox")
        assert img.tag("lk-test/ev-py", tag.split(":")[1])
        client.images.remove(tag)
        client.volumes.create(vol)
        client.volumes.get(vol).remove()
        t1 = time.time()

        def evs(flt: dict[str, Any]) -> list[dict[str, Any]]:
            return list(client.events(since=t0, until=t1, decode=True, filters=flt))

        got = evs({"type": "image", "image": "lk-test/ev-py"})
        assert _triples(got) == [("tag", img.id, tag)]
        untag = evs({"type": "image", "event": "untag"})
        assert [(e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in untag] == \
            [(img.id, img.id)]
        vols = evs({"type": "volume", "volume": vol})
        assert [(e["Action"], e["Actor"]["ID"]) for e in vols] == \
            [("create", vol), ("destroy", vol)]
        # (docker-py's CancellableStream ends quietly on an error answer: asked directly)
        r = client.api._get(client.api._url("/events"),
                            params={"until": t1, "filters": json.dumps({"colour": ["red"]})})
        assert r.status_code == 400 and "invalid filter 'colour'" in r.json()["message"]
    finally:
        docker("volume", "rm", "-f", vol)
        client.close()


def test_build_tag_and_commit_events(docker: Docker, tmp_path: Path, name: str,
                                     images: list[str]) -> None:
    built, committed = "lk-test/ev-build:1", "lk-test/ev-commit:1"
    images += [built, committed]
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL lk.ev=built\nRUN true\n")
    t0 = time.time()
    _ok(docker("build", "-q", "-t", built, str(tmp_path), timeout=300))
    bid = _ok(docker("inspect", "-f", "{{.Id}}", built)).strip()
    try:
        _ok(docker("create", "--name", name, "--label", "lk.c=1", built, "true"))
        cid = _ok(docker("inspect", "-f", "{{.Id}}", name)).strip()
        _ok(docker("commit", "-m", "why", name, committed))
    finally:
        docker("rm", "-f", name)
    nid = _ok(docker("inspect", "-f", "{{.Id}}", committed)).strip()
    tags = _events(docker, t0, "type=image", "event=tag")
    assert _triples(tags) == [("tag", bid, built), ("tag", nid, committed)]
    assert tags[0]["Actor"]["Attributes"]["lk.ev"] == "built"
    # moby CreateImageFromContainer: a container event "commit" after the tag
    commit = _events(docker, t0, "event=commit")
    assert len(commit) == 1 and commit[0]["Type"] == "container"
    assert commit[0]["Actor"]["ID"] == cid and commit[0]["from"] == built
    attrs = commit[0]["Actor"]["Attributes"]
    assert {k: attrs[k] for k in ("comment", "imageID", "imageRef", "name", "image", "lk.c")} \
        == {"comment": "why", "imageID": nid, "imageRef": committed, "name": name,
            "image": built, "lk.c": "1"}
    assert commit[0]["timeNano"] > tags[1]["timeNano"]
