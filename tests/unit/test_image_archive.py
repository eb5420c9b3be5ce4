"""docker save / load / import on the image store: round trip, diff_id check, hostile tars."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images.archive import import_rootfs, load_archive, parse_changes, save_archive
from labkit.engine.images.store import ImageStore, ensure_busybox

needs_bb = pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static missing")


def _tar(path: Path, members: dict[str, bytes | tuple[str, str]]) -> Path:
    """A tar of regular files (bytes) and links (("sym"|"hard", target))."""
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                ti.type = tarfile.SYMTYPE if data[0] == "sym" else tarfile.LNKTYPE
                ti.linkname = data[1]
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return path


def _layer(files: dict[str, bytes | tuple[str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                ti.type = tarfile.SYMTYPE
                ti.linkname = data[1]
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o755
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _archive(path: Path, layer: bytes, diff_id: str | None = None,
             tags: list[str] | None = None) -> Path:
    import hashlib
    did = diff_id or "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [did]}}).encode()
    cid = hashlib.sha256(cfg).hexdigest()
    return _tar(path, {"manifest.json": json.dumps([{"Config": f"{cid}.json",
                                                     "RepoTags": tags or ["lk-test/a:1"],
                                                     "Layers": ["l/layer.tar"]}]).encode(),
                       f"{cid}.json": cfg, "l/layer.tar": layer})


def _empty(store: ImageStore) -> None:
    assert store.list() == []
    assert not any((store.root / "layers").glob("*")) if (store.root / "layers").exists() \
        else True


def test_load_small_archive_and_ids(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    layer = _layer({"hello": b"hi\n"})
    got = load_archive(s, _archive(tmp_path / "a.tar", layer))
    img = s.get("lk-test/a:1")
    assert [g.id for g in got] == [img.id] and img.tags == ("lk-test/a:1",)
    assert (img.layers[0] / "hello").read_bytes() == b"hi\n"
    assert s.get("docker.io/lk-test/a:1").id == img.id == s.get(img.id[7:19]).id


def test_diff_id_mismatch_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    bad = "sha256:" + "0" * 64
    with pytest.raises(errors.InvalidArgumentError, match="diff_id"):
        load_archive(s, _archive(tmp_path / "a.tar", _layer({"x": b"1"}), diff_id=bad))
    _empty(s)


@pytest.mark.parametrize("files", [{"../escape": b"x"}, {"/abs": b"x"},
                                   {"link": ("sym", "/etc"), "link/passwd": b"x"}])
def test_hostile_layer_in_archive_is_refused(tmp_path: Path, files: dict[str, bytes]) -> None:
    s = ImageStore(tmp_path / "s")
    with pytest.raises(errors.InvalidArgumentError):
        load_archive(s, _archive(tmp_path / "a.tar", _layer(files)))
    _empty(s)
    assert not (tmp_path / "escape").exists()


def test_layer_member_that_is_a_link_is_refused(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    a = tmp_path / "a.tar"
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}).encode()
    _tar(a, {"manifest.json": json.dumps([{"Config": "c.json", "RepoTags": None,
                                           "Layers": ["l.tar"]}]).encode(),
             "c.json": cfg, "l.tar": ("sym", "/etc/shadow")})
    with pytest.raises(errors.InvalidArgumentError, match="not a regular file"):
        load_archive(s, a)
    _empty(s)


def test_bad_diff_id_path_and_oci_layout_refused(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    with pytest.raises(errors.InvalidArgumentError, match="sha256"):
        load_archive(s, _archive(tmp_path / "a.tar", _layer({"x": b"1"}), diff_id="../../x"))
    oci = _tar(tmp_path / "o.tar", {"index.json": b"{}", "oci-layout": b"{}"})
    with pytest.raises(errors.InvalidArgumentError, match="manifests"):
        load_archive(s, oci)
    with pytest.raises(errors.InvalidArgumentError, match="manifest.json"):
        load_archive(s, _tar(tmp_path / "n.tar", {"x": b"1"}))
    _empty(s)


@needs_bb
def test_save_load_round_trip_keeps_id(tmp_path: Path) -> None:
    a, b = ImageStore(tmp_path / "a"), ImageStore(tmp_path / "b")
    img = ensure_busybox(a)
    a.tag("busybox", "lk-test/bb:1")
    out = tmp_path / "f.tar"
    with open(out, "wb") as f:
        save_archive(a, ["lk-test/bb:1"], f)
    with tarfile.open(out) as tf:
        man = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert man[0]["RepoTags"] == ["lk-test/bb:1"]
        assert man[0]["Config"] == f"{img.id[7:]}.json"
        assert "repositories" in tf.getnames()
    got = load_archive(b, out)
    assert got[0].id == img.id and b.get("lk-test/bb:1").id == img.id
    assert (b.get(img.id).layers[0] / "bin" / "busybox").exists()
    # the old-store path: no kept tar; re-packing the unpacked layer reproduces the diff_id
    b.blob_path(img.config["rootfs"]["diff_ids"][0]).unlink()
    with open(tmp_path / "g.tar", "wb") as f:
        save_archive(b, [img.id], f)
    assert load_archive(ImageStore(tmp_path / "c"), tmp_path / "g.tar")[0].id == img.id


def test_import_with_changes(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    src = tmp_path / "rootfs.tar"
    src.write_bytes(_layer({"bin/hello": b"#!/bin/sh\n"}))
    img = import_rootfs(s, src, "lk-test/imp:1",
                        changes=["CMD [\"/bin/hello\"]", "ENV A=1 B=2", "WORKDIR /w",
                                 "LABEL k=v", "EXPOSE 80"])
    cfg = img.container_config
    assert cfg["Cmd"] == ["/bin/hello"] and "A=1" in cfg["Env"] and cfg["WorkingDir"] == "/w"
    assert cfg["Labels"] == {"k": "v"} and "80/tcp" in cfg["ExposedPorts"]
    assert img.tags == ("lk-test/imp:1",) and img.config["history"][0]["comment"]
    with pytest.raises(errors.UnsupportedError, match="ONBUILD"):
        parse_changes(["ONBUILD RUN x"], {})


def test_untag_delete_shares_layers(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    layer = _layer({"f": b"1"})
    one = load_archive(s, _archive(tmp_path / "a.tar", layer, tags=["a:1"]))[0]
    s.tag("a:1", "a:2")
    assert s.untag("a:1") == one.id and s.get("a:2").id == one.id
    with pytest.raises(errors.ConflictError):
        s.delete(one.id)
    s.untag("a:2")
    assert [i.tags for i in s.list()] == [()]  # dangling
    s.delete(one.id)
    _empty(s)


@pytest.mark.parametrize("ref,want", [("busybox", ("busybox", "latest")),
                                      ("docker.io/library/busybox:1", ("busybox", "1")),
                                      ("library/busybox", ("busybox", "latest")),
                                      ("docker.io/lk/x", ("lk/x", "latest")),
                                      ("127.0.0.1:5000/bb:v1", ("127.0.0.1:5000/bb", "v1"))])
def test_split_ref(ref: str, want: tuple[str, str]) -> None:
    from labkit.engine.images.store import split_ref
    assert split_ref(ref) == want


@pytest.mark.parametrize("ref", ["Busybox", "a//b", "bb:", "bb@sha256:00", "../x", "a:b:c"])
def test_bad_refs(ref: str) -> None:
    from labkit.engine.images.store import split_ref
    with pytest.raises(errors.InvalidArgumentError):
        split_ref(ref)


def test_second_bad_image_in_archive_stores_neither(tmp_path: Path) -> None:
    import hashlib
    s = ImageStore(tmp_path / "s")
    good, bad = _layer({"g": b"1"}), _layer({"b": b"2"})
    entries, members = [], {}
    for i, (layer, did) in enumerate([(good, hashlib.sha256(good).hexdigest()),
                                      (bad, "0" * 64)]):
        cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": [f"sha256:{did}"]}}).encode()
        members[f"c{i}.json"], members[f"l{i}.tar"] = cfg, layer
        entries.append({"Config": f"c{i}.json", "RepoTags": [f"lk/x:{i}"],
                        "Layers": [f"l{i}.tar"]})
    members["manifest.json"] = json.dumps(entries).encode()
    with pytest.raises(errors.InvalidArgumentError, match="diff_id"):
        load_archive(s, _tar(tmp_path / "a.tar", members))  # type: ignore[arg-type]
    _empty(s)
    assert not any((s.root / "tmp").iterdir())  # the staging dir went too


def test_sweep_removes_leftovers(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    for d in ("tmp/lk-stage-x/l", "layers/.rm-ab-1-2/f", "layers/.lk-unpack-ab-x/f"):
        (s.root / d).mkdir(parents=True)
    (s.root / "layers" / ("a" * 64)).mkdir()
    s.sweep()
    assert not (s.root / "tmp").exists()
    assert [p.name for p in (s.root / "layers").iterdir()] == ["a" * 64]


def test_filters_and_history(tmp_path: Path) -> None:
    from labkit.engine.images.query import filter_images, history
    s = ImageStore(tmp_path / "s")
    src = tmp_path / "r.tar"
    src.write_bytes(_layer({"f": b"1"}))
    a = import_rootfs(s, src, "lk/a:1", changes=["LABEL team=x"])
    old = s.add("lk/old:1", {"created": "2000-01-01T00:00:00Z",
                             "rootfs": {"type": "layers", "diff_ids": a.config["rootfs"]["diff_ids"]}})
    dangling = import_rootfs(s, src, None)
    every = s.list()
    ids = lambda f: {i.id for i in filter_images(every, f, s.get)}
    assert ids({"dangling": ["true"]}) == {dangling.id}
    assert ids({"dangling": ["false"]}) == {a.id, old.id}
    assert ids({"label": ["team=x"]}) == {a.id} and ids({"label": ["team=y"]}) == set()
    assert ids({"reference": ["lk/*"]}) == {a.id, old.id} and ids({"reference": ["*"]}) == set()
    assert ids({"reference": ["lk/a:1"]}) == {a.id}
    assert old.id not in ids({"since": ["lk/old:1"]}) and a.id in ids({"since": ["lk/old:1"]})
    assert ids({"before": ["lk/a:1"]}) == {old.id}
    with pytest.raises(errors.InvalidArgumentError, match="until"):
        filter_images(every, {"until": ["1h"]}, s.get)
    rows = history(a)
    assert rows[0]["Id"] == a.id and rows[0]["Tags"] == ["lk/a:1"] and rows[0]["Size"] > 0
    assert rows[0]["Comment"] == "Imported from -"
    # dangling shares the layer: deleting it frees nothing; deleting the last user frees it
    assert s.delete(dangling.id) == 0
    s.untag("lk/old:1")
    s.delete(old.id)
    s.untag("lk/a:1")
    assert s.delete(a.id) > 0 and not a.layers[0].exists()


def _oci(path: Path, layer: bytes, name: str, *, lie: bool = False) -> Path:
    import gzip
    import hashlib

    def d(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()
    blob = gzip.compress(layer, mtime=0)
    stored = gzip.compress(layer, mtime=1) if lie else blob  # same diff_id, other digest
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": [d(layer)]},
                      "config": {"Cmd": ["sh"]}}).encode()
    man = json.dumps({"schemaVersion": 2, "config": {"digest": d(cfg), "size": len(cfg)},
                      "layers": [{"digest": d(blob),
                                  "size": len(blob)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d(man),
         "annotations": {"io.containerd.image.name": name}}]}).encode()
    members: dict[str, bytes | tuple[str, str]] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for b in (cfg, man):
        members["blobs/sha256/" + d(b)[7:]] = b
    members["blobs/sha256/" + d(blob)[7:]] = stored
    return _tar(path, members)


def test_oci_layout_loads_and_checks_digests(tmp_path: Path) -> None:
    s = ImageStore(tmp_path / "s")
    layer = _layer({"oci": b"yes"})
    with pytest.raises(errors.InvalidArgumentError, match="does not match its digest"):
        load_archive(s, _oci(tmp_path / "bad.tar", layer, "docker.io/lk/oci:1", lie=True))
    _empty(s)
    got = load_archive(s, _oci(tmp_path / "o.tar", layer, "docker.io/lk/oci:1"))
    img = s.get("lk/oci:1")
    assert got[0].tags == ("lk/oci:1",) and (img.layers[0] / "oci").read_bytes() == b"yes"
    # the kept tar is the plain one: save writes a layer whose sha256 is the diff_id
    out = tmp_path / "again.tar"
    with open(out, "wb") as f:
        save_archive(s, ["lk/oci:1"], f)
    assert load_archive(ImageStore(tmp_path / "t"), out)[0].id == img.id


@pytest.mark.parametrize("extra", [{"config": ["sh"]}, {"history": ["x"]}, {"history": {}}])
def test_config_of_the_wrong_shape_is_refused(tmp_path: Path, extra: dict[str, object]) -> None:
    import hashlib
    s = ImageStore(tmp_path / "s")
    layer = _layer({"f": b"1"})
    cfg = json.dumps({"rootfs": {"type": "layers",
                                 "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
                      **extra}).encode()
    a = _tar(tmp_path / "a.tar", {"manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": ["lk/x:1"], "Layers": ["l.tar"]}]).encode(),
        "c.json": cfg, "l.tar": layer})
    with pytest.raises(errors.InvalidArgumentError, match="must be an object"):
        load_archive(s, a)
    _empty(s)
