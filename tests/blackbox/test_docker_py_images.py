"""docker-py (the real Docker SDK) against labkit's daemon: images (list, get, tag, remove,
save/load round trip, import) and volumes (create, list, get, remove while in use -> 409,
prune), and containers.run with volumes={...} and mounts=[Mount(...)], the data checked from
inside the containers.  Images are tagged lk-test/...; volumes are named lk-test-...
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker  # the dev extra installs it: a real client never skips
import pytest
from docker.types import Mount

from labkit.engine.images import busybox
from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged


@pytest.fixture
def dc(engine: LabEngine) -> Iterator[Any]:
    client = docker.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")
    yield client
    client.close()


@pytest.fixture
def vol_name(name: str, dc: Any) -> Iterator[str]:
    v = f"lk-test-{name}"
    yield v
    for c in dc.containers.list(all=True, filters={"volume": v}):
        c.remove(force=True)
    try:
        dc.volumes.get(v).remove(force=True)
    except docker.errors.NotFound:
        pass


@pytest.fixture
def images(dc: Any) -> Iterator[list[str]]:
    refs: list[str] = []
    yield refs
    for r in refs:
        try:
            dc.images.remove(r, force=True)
        except docker.errors.NotFound:
            pass


def _rootfs(tmp: Path, marker: str) -> bytes:
    root = busybox.build_rootfs(tmp / "rootfs")
    (root / "marker").write_text(marker)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(root, arcname=".")
    return buf.getvalue()


def test_images_get_tag_list_remove(dc: Any, images: list[str]) -> None:
    images.append("lk-test/py:1")
    bb = dc.images.get("busybox")
    assert bb.id.startswith("sha256:") and "busybox:latest" in bb.tags
    assert bb.tag("lk-test/py", "1") is True
    assert "lk-test/py:1" in dc.images.get("lk-test/py:1").tags
    assert any("lk-test/py:1" in i.tags for i in dc.images.list())
    assert [i.id for i in dc.images.list(name="lk-test/py")] == [bb.id]
    dc.images.remove("lk-test/py:1")
    with pytest.raises(docker.errors.ImageNotFound):
        dc.images.get("lk-test/py:1")
    assert "busybox:latest" in dc.images.get(bb.id).tags


def test_import_save_load_round_trip(dc: Any, images: list[str], tmp_path: Path) -> None:
    images.append("lk-test/pyimp:1")
    data = _rootfs(tmp_path, "round-trip\n")
    out = dc.api.import_image_from_data(data, repository="lk-test/pyimp", tag="1",
                                        changes=['CMD ["cat", "/marker"]'])
    img = dc.images.get("lk-test/pyimp:1")
    assert img.id in str(out)
    assert dc.containers.run("lk-test/pyimp:1", remove=True) == b"round-trip\n"
    saved = b"".join(img.save(named=True))
    dc.images.remove("lk-test/pyimp:1")
    with pytest.raises(docker.errors.ImageNotFound):
        dc.images.get(img.id)
    loaded = dc.images.load(saved)
    assert [i.id for i in loaded] == [img.id]
    assert dc.containers.run("lk-test/pyimp:1", remove=True) == b"round-trip\n"


def test_volumes_create_list_get_remove_in_use_prune(dc: Any, vol_name: str,
                                                    name: str) -> None:
    v = dc.volumes.create(vol_name, labels={"lk": "py"})
    assert v.name == vol_name and v.attrs["Mountpoint"].endswith(f"/{vol_name}/_data")
    assert vol_name in [x.name for x in dc.volumes.list()]
    assert dc.volumes.get(vol_name).attrs["Labels"] == {"lk": "py"}
    c = dc.containers.create("busybox", "true", name=name,
                             volumes={vol_name: {"bind": "/data", "mode": "rw"}})
    with pytest.raises(docker.errors.APIError) as exc:
        v.remove()
    assert exc.value.status_code == 409
    pruned = dc.volumes.prune(filters={"label": "lk=py"})
    assert vol_name not in (pruned.get("VolumesDeleted") or [])  # in use: kept
    c.remove()
    pruned = dc.volumes.prune(filters={"label": "lk=py"})
    assert vol_name in pruned["VolumesDeleted"]
    with pytest.raises(docker.errors.NotFound):
        dc.volumes.get(vol_name)


def test_run_with_volumes_and_mounts(dc: Any, vol_name: str, tmp_path: Path) -> None:
    dc.containers.run("busybox", ["sh", "-c", "echo from-first > /data/f"], remove=True,
                      volumes={vol_name: {"bind": "/data", "mode": "rw"}})
    out = dc.containers.run("busybox", ["sh", "-c", "cat /v/f; touch /v/x || echo ro"],
                            remove=True, stderr=False,
                            mounts=[Mount(target="/v", source=vol_name, type="volume",
                                          read_only=True)])
    assert out == b"from-first\nro\n"
    host = tmp_path / "bind"
    host.mkdir()
    (host / "in").write_text("from-host\n")
    out = dc.containers.run("busybox", ["sh", "-c", "cat /b/in; echo back > /b/out"],
                            remove=True,
                            mounts=[Mount(target="/b", source=str(host), type="bind")])
    assert out == b"from-host\n" and (host / "out").read_text() == "back\n"
    out = dc.containers.run("busybox", ["sh", "-c", "grep ' /t ' /proc/mounts"], remove=True,
                            mounts=[Mount(target="/t", source="", type="tmpfs",
                                          tmpfs_size=1 << 20)])
    assert out.startswith(b"tmpfs /t tmpfs") and b"size=1024k" in out
