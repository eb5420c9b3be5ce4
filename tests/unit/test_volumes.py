"""Volumes: names, mount-spec parsing, the local driver's store (no kernel objects)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.volumes import VolumeNotFoundError, VolumeStore, validate_name
from labkit.engine.volumes import spec as vs
from labkit.engine.volumes.oci import to_oci


@pytest.mark.parametrize("name", ["a", "", "..", ".", "../x", "a/b", "-ab", "_ab", ".ab",
                                  "a b", "a\x00b", "a:b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="invalid characters"):
        validate_name(name)


@pytest.mark.parametrize("name", ["ab", "my_vol", "v1.2-x", "0" * 64])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


def test_binds_parse() -> None:
    pts = vs.from_binds(["data:/data", "/srv:/srv:ro,rslave", "/anon", "v2:/v2:ro"])
    assert [(p["Type"], p.get("Name"), p["Destination"], p["RW"]) for p in pts] == [
        ("volume", "data", "/data", True), ("bind", None, "/srv", False),
        ("volume", "", "/anon", True), ("volume", "v2", "/v2", False)]
    assert pts[1]["Propagation"] == "rslave" and pts[2]["Anonymous"]
    assert pts[0]["Mode"] == "z" and pts[3]["Mode"] == "ro"


@pytest.mark.parametrize("bind,message", [
    ("a/b:/x", "invalid characters"), ("../x:/x", "invalid characters"),
    ("vol:x", "must be absolute"), ("vol:/", "destination can't be '/'"),
    ("vol:/a/../b", "'..'"), ("/h:/x:ro,ro", "invalid mode"), ("/h:/x:bogus", "invalid mode"),
    ("/h:/x:z", "SELinux"), ("vol:/x:rshared", "propagation is for bind"),
    ("a:b:c:d", "invalid volume specification"), ("/h/../etc:/x", "'..'"),
])
def test_binds_refused(bind: str, message: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=message):
        vs.from_binds([bind])


def test_mounts_parse(tmp_path: Path) -> None:
    pts = vs.from_mounts([
        {"Type": "bind", "Source": str(tmp_path), "Target": "/b", "ReadOnly": True,
         "BindOptions": {"Propagation": "rshared", "NonRecursive": True}},
        {"Type": "volume", "Source": "vol", "Target": "/v",
         "VolumeOptions": {"Labels": {"k": "x"}}},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}},
    ])
    oci = to_oci(pts)
    assert oci[0] == {"destination": "/b", "type": "bind", "source": str(tmp_path),
                      "options": ["bind", "rshared", "ro"]}
    assert pts[1]["Labels"] == {"k": "x"}
    assert oci[2]["type"] == "tmpfs" and "size=1048576" in oci[2]["options"]
    assert "mode=700" in oci[2]["options"]


@pytest.mark.parametrize("mount,message", [
    ({"Type": "npipe", "Target": "/x"}, "not offered"),
    ({"Type": "bind", "Source": "/no/such/lk-path", "Target": "/x"}, "does not exist"),
    ({"Type": "bind", "Target": "/x"}, "Source must not be empty"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/x"}, "Source must not be specified"),
    ({"Type": "volume", "Source": "a/../../x", "Target": "/x"}, "invalid characters"),
    ({"Type": "volume", "Target": "/x", "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}},
     "driver 'nfs'"),
    ({"Type": "volume", "Target": "/x",
      "VolumeOptions": {"DriverConfig": {"Options": {"type": "nfs"}}}}, "option 'type'"),
    ({"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}},
     "BindOptions must not be specified"),
    ({"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "a"}}, "'Subpath'"),
    ({"Type": "tmpfs", "Target": "/"}, "destination can't be '/'"),
    ({"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"SizeBytes": -1}}, "size"),
    ({"Type": "volume", "Target": "/x", "Consistency": "cached"}, "consistency"),
])
def test_mounts_refused(mount: dict, message: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=message):
        vs.from_mounts([mount])


def test_duplicates_and_config_volumes() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="Duplicate mount point: /d"):
        vs.parse_all({"Binds": ["a1:/d", "a2:/d/"]}, None)
    pts = vs.parse_all({"Binds": ["a1:/d"]}, {"/d": {}, "/e": {}})
    assert [(p["Destination"], p["Anonymous"]) for p in pts] == [("/d", False), ("/e", True)]


def test_store_create_inspect_idempotent(tmp_path: Path) -> None:
    st = VolumeStore(tmp_path / "volumes")
    v = st.create("data", labels={"a": "1"})
    assert v["Name"] == "data" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Mountpoint"] == str(tmp_path / "volumes" / "data" / "_data")
    assert v["Labels"] == {"a": "1"} and v["Options"] == {} and v["CreatedAt"].endswith("Z")
    assert st.create("data", labels={"b": "2"}) == v  # Docker: the existing one, unchanged
    assert stat.S_IMODE(os.stat(tmp_path / "volumes").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "volumes" / "data").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(v["Mountpoint"]).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "volumes" / "data" / "opts.json").st_mode) == 0o600
    anon = st.create()
    assert len(anon["Name"]) == 64
    assert st.get("data") == v


def test_store_refuses_and_escapes(tmp_path: Path) -> None:
    st = VolumeStore(tmp_path / "volumes")
    for bad in ("../x", "a/b", ".."):
        with pytest.raises(errors.InvalidArgumentError):
            st.create(bad)
    assert not (tmp_path / "x").exists()
    with pytest.raises(errors.InvalidArgumentError, match="driver 'nfs'"):
        st.create("v", driver="nfs")
    with pytest.raises(errors.InvalidArgumentError, match="option 'device'"):
        st.create("v", opts={"device": "/dev/sda"})
    assert st.names() == []  # nothing half-made
    with pytest.raises(VolumeNotFoundError, match="no such volume"):
        st.get("../../etc")


def test_store_list_filters_remove_prune(tmp_path: Path) -> None:
    users: dict[str, list[str]] = {"busy": ["c1", "c2"]}
    st = VolumeStore(tmp_path / "volumes", users=lambda n: users.get(n, []))
    st.create("busy", labels={"env": "prod"})
    st.create("idle", labels={"env": "dev"})
    st.create("other")
    (Path(st.mountpoint("idle")) / "f").write_bytes(b"x" * 1000)
    names = lambda f: [v["Name"] for v in st.list(f)]
    assert names({}) == ["busy", "idle", "other"]
    assert names({"name": ["id"]}) == ["idle"]
    assert names({"label": ["env"]}) == ["busy", "idle"]
    assert names({"label": ["env=dev"]}) == ["idle"]
    assert names({"dangling": ["true"]}) == ["idle", "other"]
    assert names({"dangling": ["false"]}) == ["busy"]
    assert names({"driver": ["local"]}) == ["busy", "idle", "other"]
    with pytest.raises(errors.InvalidArgumentError, match="invalid filter 'colour'"):
        st.list({"colour": ["x"]})
    with pytest.raises(errors.ConflictError, match=r"^remove busy: volume is in use - \[c1, c2\]$"):
        st.remove("busy")
    with pytest.raises(errors.ConflictError):
        st.remove("busy", force=True)  # -f does not remove a volume in use (Docker)
    st.remove("nosuch", force=True)
    with pytest.raises(VolumeNotFoundError):
        st.remove("nosuch")
    out = st.prune({"label": ["env"]})
    assert out == {"VolumesDeleted": ["idle"], "SpaceReclaimed": 1000}
    assert st.prune() == {"VolumesDeleted": ["other"], "SpaceReclaimed": 0}
    assert names({}) == ["busy"]
    users.clear()
    st.remove("busy")
    assert names({}) == [] and list((tmp_path / "volumes").iterdir()) == []


def test_resolve_holds_and_cleans(tmp_path: Path) -> None:
    st = VolumeStore(tmp_path / "volumes")
    pts = st.resolve(vs.from_binds(["named:/n", "/a", f"{tmp_path}/made:/m"]))
    assert pts[0]["Source"] == st.mountpoint("named").__str__()
    assert len(pts[1]["Name"]) == 64 and (tmp_path / "made").is_dir()
    with pytest.raises(errors.ConflictError, match="in use"):
        st.remove("named")  # held until the container's record names it
    assert st.prune()["VolumesDeleted"] == []
    st.release(pts)
    st.remove_anonymous(pts)
    assert [v["Name"] for v in st.list()] == ["named"]
    # a failure half way removes the anonymous volumes made before it
    bad = vs.from_binds(["/x"]) + [{"Type": "volume", "Name": "a/b", "Destination": "/y",
                                    "RW": True, "Labels": {}}]
    with pytest.raises(errors.InvalidArgumentError):
        st.resolve(bad)
    assert [v["Name"] for v in st.list()] == ["named"]


def test_copy_tree_keeps_links_modes_owners(tmp_path: Path) -> None:
    from labkit.engine.volumes.copyup import copy_tree
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    os.chmod(src / "sub" / "f", 0o4751)
    (src / "escape").symlink_to("/etc")  # copied as a link, never followed
    (src / "sub").chmod(0o750)
    dst.mkdir()
    sfd, dfd = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)
    try:
        copy_tree(sfd, dfd)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert os.readlink(dst / "escape") == "/etc" and (dst / "escape").is_symlink()
    assert (dst / "sub" / "f").read_text() == "x"
    assert stat.S_IMODE(os.stat(dst / "sub" / "f").st_mode) == 0o4751
    assert stat.S_IMODE(os.stat(dst / "sub").st_mode) == 0o750
    assert os.stat(dst / "sub" / "f").st_mtime_ns == os.stat(src / "sub" / "f").st_mtime_ns


def test_populate_only_when_empty(tmp_path: Path) -> None:
    st = VolumeStore(tmp_path / "volumes")
    st.create("vv")
    src = tmp_path / "img"
    src.mkdir()
    (src / "a").write_text("1")
    fd = os.open(src, os.O_RDONLY)
    try:
        assert st.populate("vv", fd) is True
        (src / "b").write_text("2")
        assert st.populate("vv", fd) is False  # has data now: never copied over
    finally:
        os.close(fd)
    assert sorted(os.listdir(st.mountpoint("vv"))) == ["a"]
