"""The minimal image store: references, add/get/list, the busybox image."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images.store import ImageStore, ensure_busybox, normalize_ref


@pytest.mark.parametrize("ref,want", [("busybox", "busybox:latest"),
                                      ("busybox:1.36", "busybox:1.36"),
                                      ("docker.io/library/busybox", "busybox:latest"),
                                      ("localhost:5000/bb", "localhost:5000/bb:latest")])
def test_normalize(ref: str, want: str) -> None:
    assert normalize_ref(ref) == want


def test_add_get_list(tmp_path: Path) -> None:
    s = ImageStore(tmp_path)
    cfg = {"config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": ["sha256:ab"]}}
    img = s.add("x", cfg)
    assert img.id.startswith("sha256:") and img.tags == ("x:latest",)
    assert s.get("x").id == img.id == s.get(img.id[7:15]).id
    assert s.get("x").layers == (tmp_path / "layers" / "ab",)
    assert [i.id for i in s.list()] == [img.id]
    with pytest.raises(errors.NotFoundError, match="no such image: nosuch:latest"):
        s.get("nosuch")


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static not installed")
def test_ensure_busybox_is_idempotent(tmp_path: Path) -> None:
    s = ImageStore(tmp_path)
    a = ensure_busybox(s)
    b = ensure_busybox(s)
    assert a.id == b.id and a.container_config["Cmd"] == ["sh"]
    assert (a.layers[0] / "bin" / "busybox").exists()


def test_delete_hold_keeps_layers_until_release(tmp_path: Path) -> None:
    """rmi -f past a stopped container: the image goes, its layers stay for the container
    (for_container still finds it) until release(); a layer another image shares stays."""
    s = ImageStore(tmp_path)
    for d in ("aa", "bb"):
        (tmp_path / "layers" / d).mkdir(parents=True)
        (tmp_path / "layers" / d / "f").write_text(d)
    gone = s.add("gone", {"rootfs": {"type": "layers", "diff_ids": ["sha256:aa", "sha256:bb"]}})
    s.add("other", {"rootfs": {"type": "layers", "diff_ids": ["sha256:bb"]}})
    s.untag("gone")
    assert s.delete(gone.id, hold=True) == 0
    with pytest.raises(errors.NotFoundError):
        s.get(gone.id)
    assert gone.id not in [i.id for i in s.list()] and s.held() == [gone.id]
    assert s.for_container(gone.id).layers == gone.layers
    assert (tmp_path / "layers" / "aa").is_dir()
    assert s.release({gone.id}) == 0 and s.held() == [gone.id]  # still used: kept
    assert s.release(set()) == 2  # "aa" freed (2 bytes); "bb" is other's
    assert s.held() == [] and not (tmp_path / "layers" / "aa").exists()
    assert (tmp_path / "layers" / "bb").is_dir()
    with pytest.raises(errors.NotFoundError):
        s.for_container(gone.id)
    with pytest.raises(errors.NotFoundError):
        s.for_container("sha256:../../etc")


def _oci_read(root: Path) -> dict[str, dict[str, object]]:
    """Read the store root as an OCI image layout the way a reader would: index.json ->
    manifest -> config and layers, each blob checked against its digest and size."""
    import hashlib
    import json

    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    out: dict[str, dict[str, object]] = {}

    def blob(desc: dict[str, object]) -> bytes:
        data = (root / "blobs" / "sha256" / str(desc["digest"])[7:]).read_bytes()
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == desc["digest"]
        assert len(data) == desc["size"]
        return data

    for desc in index["manifests"]:
        man = json.loads(blob(desc))
        assert man["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        config = json.loads(blob(man["config"]))
        for layer in man["layers"]:
            blob(layer)
        name = desc.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        out[name or man["config"]["digest"]] = {"id": man["config"]["digest"],
                                                 "layers": len(man["layers"]), "config": config}
    return out


def test_store_root_is_an_oci_image_layout(tmp_path: Path) -> None:
    """Every change keeps index.json, manifests and config blobs in step with the tags;
    blobs of deleted images go, layer tars stay while a layer does."""
    s = ImageStore(tmp_path)
    bb = ensure_busybox(s)
    view = _oci_read(tmp_path)
    assert view["busybox:latest"]["id"] == bb.id and view["busybox:latest"]["layers"] == 1
    s.tag("busybox", "lk/x:1")
    assert set(_oci_read(tmp_path)) == {"busybox:latest", "lk/x:1"}
    # a second image on the same layer, then untagged (dangling: listed without a name)
    cfg = dict(s.get("busybox").config, author="lk")
    other = s.add("lk/y:1", cfg)
    s.untag("lk/y:1")
    assert other.id in _oci_read(tmp_path)
    s.delete(other.id)
    blobs = set((tmp_path / "blobs" / "sha256").iterdir())
    assert other.id not in _oci_read(tmp_path)
    assert tmp_path / "blobs" / "sha256" / other.id[7:] not in blobs  # its config blob went
    layer_tar = s.blob_path(bb.config["rootfs"]["diff_ids"][0])
    assert layer_tar in blobs  # busybox's layer is still used
    # an older store without the view gains it at the next sweep (daemon start)
    (tmp_path / "index.json").unlink()
    s.sweep()
    assert set(_oci_read(tmp_path)) == {"busybox:latest", "lk/x:1"}
