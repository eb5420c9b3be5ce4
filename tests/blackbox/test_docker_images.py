"""The real Docker CLI's image verbs against labkit's daemon: tag, images, rmi, history,
save, load, import, prune, and rmi's conflict with a container.

Every image these tests make is tagged lk-test/...; busybox:latest is never removed (the
other black-box tests run from it).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


def _ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def _tags(docker: Docker) -> set[str]:
    return set(_ok(docker("images", "--format", "{{.Repository}}:{{.Tag}}")).split())


@pytest.fixture
def rootfs(docker: Docker, name: str, tmp_path: Path) -> Iterator[Path]:
    """A busybox root filesystem tar, exported from a container (docker export)."""
    _ok(docker("create", "--name", name, "busybox", "true"))
    out = tmp_path / "rootfs.tar"
    try:
        _ok(docker("export", name, "-o", str(out)))
        yield out
    finally:
        docker("rm", "-f", name)


@pytest.fixture
def cleanup(docker: Docker) -> Iterator[list[str]]:
    refs: list[str] = []
    yield refs
    for r in refs:
        docker("rmi", "-f", r)


def test_tag_images_rmi_untags(docker: Docker, cleanup: list[str]) -> None:
    cleanup.append("lk-test/bb:1")
    _ok(docker("tag", "busybox", "lk-test/bb:1"))
    assert {"lk-test/bb:1", "busybox:latest"} <= _tags(docker)
    ids = {_ok(docker("inspect", "-f", "{{.Id}}", r)).strip()
           for r in ("busybox", "lk-test/bb:1", "docker.io/library/busybox:latest")}
    assert len(ids) == 1
    short = ids.pop()[7:19]
    assert _ok(docker("inspect", "-f", "{{.Id}}", short)).strip()[7:19] == short
    out = _ok(docker("rmi", "lk-test/bb:1"))
    assert out == "Untagged: lk-test/bb:1\n"
    assert "lk-test/bb:1" not in _tags(docker) and "busybox:latest" in _tags(docker)
    r = docker("rmi", "lk-test/nosuch:1")
    assert r.returncode == 1 and b"No such image: lk-test/nosuch:1" in r.stderr
    r = docker("tag", "busybox", "Bad/Name")
    assert r.returncode != 0 and b"invalid reference format" in r.stderr


def test_import_run_history_rmi_deletes(docker: Docker, rootfs: Path,
                                        cleanup: list[str]) -> None:
    cleanup += ["lk-test/imp:1", "lk-test/imp:2"]
    out = _ok(docker("import", "--change", "ENV LK_IMPORTED=yes", "--change", 'CMD ["env"]',
                     str(rootfs), "lk-test/imp:1"))
    iid = out.strip()
    assert iid.startswith("sha256:")
    run = _ok(docker("run", "--rm", "lk-test/imp:1"))
    assert "LK_IMPORTED=yes" in run
    hist = _ok(docker("history", "--no-trunc", "--format", "{{.ID}} {{.Comment}}",
                      "lk-test/imp:1"))
    assert hist.splitlines()[0] == f"{iid} Imported from -"
    assert _ok(docker("inspect", "-f", "{{.Comment}}", iid)) == "Imported from -\n"
    r = docker("import", "--change", "ONBUILD RUN x", str(rootfs), "lk-test/imp:9")
    assert r.returncode != 0 and b"ONBUILD" in r.stderr
    r = docker("import", "http://127.0.0.1:9/x.tar", "lk-test/imp:9")
    assert r.returncode != 0 and b"http://127.0.0.1:9/x.tar" in r.stderr  # refused port
    _ok(docker("tag", "lk-test/imp:1", "lk-test/imp:2"))
    assert _ok(docker("rmi", "lk-test/imp:1")) == "Untagged: lk-test/imp:1\n"
    assert _ok(docker("rmi", "lk-test/imp:2")) == f"Untagged: lk-test/imp:2\nDeleted: {iid}\n"
    assert docker("inspect", iid).returncode == 1


def test_save_rmi_load_run(docker: Docker, rootfs: Path, tmp_path: Path,
                           cleanup: list[str]) -> None:
    cleanup.append("lk-test/sv:1")
    iid = _ok(docker("import", str(rootfs), "lk-test/sv:1")).strip()
    f = tmp_path / "f.tar"
    _ok(docker("save", "lk-test/sv:1", "-o", str(f)))
    with tarfile.open(f) as tf:
        man = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert man[0]["RepoTags"] == ["lk-test/sv:1"] and len(man[0]["Layers"]) == 1
        assert {"repositories", f"{iid[7:]}.json"} <= set(tf.getnames())
    _ok(docker("rmi", "lk-test/sv:1"))
    assert docker("inspect", iid).returncode == 1  # gone: the load unpacks again
    assert _ok(docker("load", "-i", str(f))) == "Loaded image: lk-test/sv:1\n"
    assert _ok(docker("inspect", "-f", "{{.Id}}", "lk-test/sv:1")).strip() == iid
    assert _ok(docker("run", "--rm", "lk-test/sv:1", "echo", "loaded")) == "loaded\n"
    # busybox itself round-trips through save/load under a new tag (same ID)
    _ok(docker("save", "busybox", "-o", str(tmp_path / "bb.tar")))
    assert "Loaded image: busybox:latest" in _ok(docker("load", "-i", str(tmp_path / "bb.tar")))


def _archive(tmp_path: Path, member: str, tag: str) -> Path:
    """A docker-archive whose config claims a diff_id of zeros for a one-member layer."""
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tf:
        tf.addfile(tarfile.TarInfo(member))
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}})
    (tmp_path / "c.json").write_text(cfg)
    (tmp_path / "manifest.json").write_text(json.dumps(
        [{"Config": "c.json", "RepoTags": [tag], "Layers": ["layer.tar"]}]))
    out = tmp_path / "bad.tar"
    with tarfile.open(out, "w") as tf:
        for n in ("manifest.json", "c.json", "layer.tar"):
            tf.add(tmp_path / n, arcname=n)
    return out


@pytest.mark.parametrize("member,error", [("ok", b"has diff_id sha256:"),
                                          ("../../escape", b"escapes the layer root")])
def test_load_refuses_a_lying_or_hostile_archive(docker: Docker, tmp_path: Path,
                                                 member: str, error: bytes) -> None:
    r = docker("load", "-i", str(_archive(tmp_path, member, "lk-test/bad:1")))
    assert r.returncode != 0 and error in r.stderr, r.stderr
    assert "lk-test/bad:1" not in _tags(docker)


def test_rmi_image_used_by_container_conflicts(docker: Docker, rootfs: Path, name: str,
                                               cleanup: list[str]) -> None:
    cleanup.append("lk-test/use:1")
    iid = _ok(docker("import", "--change", 'CMD ["true"]', str(rootfs), "lk-test/use:1")).strip()
    ctr = f"{name}-use"
    cid = _ok(docker("create", "--name", ctr, "lk-test/use:1")).strip()
    try:
        r = docker("rmi", "lk-test/use:1")
        assert r.returncode == 1
        assert (f'conflict: unable to remove repository reference "lk-test/use:1" (must force)'
                f" - container {cid[:12]} is using its referenced image {iid[7:19]}"
                ).encode() in r.stderr
        r = docker("rmi", iid[7:19])
        assert b"(must be forced) - image is being used by stopped container" in r.stderr
        assert _ok(docker("start", "-a", ctr)) == ""
    finally:
        _ok(docker("rm", "-f", ctr))
    assert "Deleted: " + iid in _ok(docker("rmi", "lk-test/use:1"))


def test_filters_and_prune(docker: Docker, rootfs: Path, cleanup: list[str]) -> None:
    cleanup += ["lk-test/flt:1"]
    iid = _ok(docker("import", "--change", "LABEL lk.test=yes", str(rootfs),
                     "lk-test/flt:1")).strip()
    got = _ok(docker("images", "-q", "--no-trunc", "--filter", "label=lk.test=yes"))
    assert got.split() == [iid]
    got = _ok(docker("images", "--format", "{{.Repository}}:{{.Tag}}",
                     "--filter", "reference=lk-test/*"))
    assert "lk-test/flt:1" in got.split() and "busybox:latest" not in got
    assert _ok(docker("images", "-q", "--filter", "since=busybox", "--filter",
                      "reference=lk-test/flt")).split() == [iid[7:19]]
    r = docker("images", "--filter", "nosuch=1")
    assert r.returncode != 0 and b"nosuch" in r.stderr
    # an import without a name is dangling; the default prune (dangling only) deletes it
    # and keeps the tagged one
    dang = _ok(docker("import", str(rootfs))).strip()
    assert dang[7:19] in _ok(docker("images", "-q", "--filter", "dangling=true")).split()
    assert iid[7:19] not in _ok(docker("images", "-q", "--filter", "dangling=true")).split()
    out = _ok(docker("image", "prune", "-f"))
    assert f"deleted: {dang}" in out and "Total reclaimed space" in out
    assert docker("inspect", dang).returncode == 1
    assert _ok(docker("inspect", "-f", "{{.Id}}", "lk-test/flt:1")).strip() == iid
    # the shared layer stayed: the tagged image still runs
    assert _ok(docker("run", "--rm", "lk-test/flt:1", "echo", "kept")) == "kept\n"


def test_docker_py_images(engine: object) -> None:
    import docker as dockerpy

    dc = dockerpy.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")  # type: ignore[attr-defined]
    try:
        img = dc.images.get("busybox")
        assert "busybox:latest" in img.tags
        assert img.tag("lk-test/py", "1") is True
        assert "lk-test/py:1" in dc.images.get("lk-test/py:1").tags
        data = b"".join(dc.images.get("lk-test/py:1").save(named="lk-test/py:1"))
        dc.images.remove("lk-test/py:1")
        with pytest.raises(dockerpy.errors.ImageNotFound):
            dc.images.get("lk-test/py:1")
        loaded = dc.images.load(data)
        assert [i.id for i in loaded] == [img.id] and "lk-test/py:1" in loaded[0].tags
        assert dc.images.get("busybox").history()[0]["Id"] == img.id
    finally:
        try:
            dc.images.remove("lk-test/py:1")
        except dockerpy.errors.ImageNotFound:
            pass
        dc.close()
