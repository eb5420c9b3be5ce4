"""Docker config -> OCI config.json: pure translation, no rootfs needed."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.containers import ocispec
from labkit.engine.containers.createbody import parse_create

PASSWD = "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n"
GROUP = "root:x:0:\nstaff:x:50:\n"
FILES = {"/etc/passwd": PASSWD, "/etc/group": GROUP}


def lookup(path: str) -> str | None:
    return FILES.get(path)


@pytest.mark.parametrize("config,image,args", [
    ({"Cmd": None, "Entrypoint": None}, {"Cmd": ["sh"]}, ["sh"]),
    ({"Cmd": ["echo", "hi"], "Entrypoint": None}, {"Entrypoint": ["/e"], "Cmd": ["x"]},
     ["/e", "echo", "hi"]),
    # an Entrypoint in the request drops the image's Cmd (moby)
    ({"Cmd": None, "Entrypoint": ["top"]}, {"Cmd": ["sh"]}, ["top"]),
    ({"Cmd": ["-b"], "Entrypoint": ["top"]}, {"Entrypoint": ["x"], "Cmd": ["sh"]}, ["top", "-b"]),
])
def test_command(config: dict, image: dict, args: list[str]) -> None:
    assert ocispec.command(config, image) == args


def test_no_command() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="No command specified"):
        ocispec.command({"Cmd": None, "Entrypoint": None}, {})


def test_env_merge_request_wins_and_extras_only_fill_gaps() -> None:
    env = ocispec.merge_env(["PATH=/bin", "A=1"], ["A=2", "B"], {"HOSTNAME": "h", "A": "3"})
    assert env == ["PATH=/bin", "A=2", "B", "HOSTNAME=h"]


@pytest.mark.parametrize("user,uid,gid", [("", 0, 0), ("www", 33, 34), ("33", 33, 34),
                                          ("1000", 1000, 0), ("www:staff", 33, 50),
                                          ("1000:7", 1000, 7)])
def test_user_resolution(user: str, uid: int, gid: int) -> None:
    assert ocispec.resolve_user(user, lookup) == {"uid": uid, "gid": gid}


def test_unknown_user_names_it() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="unable to find user nobody"):
        ocispec.resolve_user("nobody", lookup)


def test_resources() -> None:
    res = ocispec.resources({"Memory": 64 << 20, "MemorySwap": 0, "NanoCpus": 500_000_000,
                             "CpuShares": 512, "PidsLimit": 20})
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"] == {"period": 100_000, "quota": 50_000, "shares": 512}
    assert res["pids"] == {"limit": 20}
    assert ocispec.resources({"Memory": 64 << 20, "MemorySwap": -1})["memory"]["swap"] == -1
    assert "memory" not in ocispec.resources({})


def test_capabilities() -> None:
    base = ("CAP_CHOWN", "CAP_KILL")
    assert ocispec.capabilities(base, ["CAP_NET_ADMIN"], ["CAP_KILL"]) == ["CAP_CHOWN",
                                                                          "CAP_NET_ADMIN"]
    assert ocispec.capabilities(base, ["CAP_KILL"], ["ALL"]) == ["CAP_KILL"]
    assert "CAP_SYS_ADMIN" in ocispec.capabilities(base, ["ALL"], None)


def _translate(body: dict, **kw: object) -> dict:
    spec = parse_create({"Image": "busybox", **body})
    return ocispec.translate("ab" * 32, spec.config, spec.host_config,
                             {"Cmd": ["sh"], "Env": ["PATH=/bin"]}, lookup, **kw)  # type: ignore[arg-type]


def test_translate_shape() -> None:
    cfg = _translate({"Cmd": ["echo", "hi"], "Tty": True, "User": "www", "WorkingDir": "/tmp",
                      "Env": ["X=1"], "HostConfig": {"Memory": 64 << 20}})
    p = cfg["process"]
    assert p["args"] == ["echo", "hi"] and p["terminal"] is True and p["cwd"] == "/tmp"
    assert p["user"] == {"uid": 33, "gid": 34}
    assert "X=1" in p["env"] and "TERM=xterm" in p["env"] and f"HOSTNAME={'ab' * 6}" in p["env"]
    assert cfg["hostname"] == "ab" * 6
    assert cfg["linux"]["resources"]["memory"]["limit"] == 64 << 20
    assert {"type": "network"} in cfg["linux"]["namespaces"]
    assert cfg["linux"]["cgroupsPath"] == f"lk/{'ab' * 32}"


def test_translate_host_network_and_init_and_etc_files() -> None:
    cfg = _translate({"HostConfig": {"NetworkMode": "host", "Init": True}},
                     init_binary="/usr/bin/tini-static", etc_files={"/etc/hosts": "/x/hosts"})
    assert all(ns["type"] != "network" for ns in cfg["linux"]["namespaces"])
    assert cfg["process"]["args"] == [ocispec.INIT_PATH, "--", "sh"]
    dests = {m["destination"]: m for m in cfg["mounts"]}
    assert dests[ocispec.INIT_PATH]["source"] == "/usr/bin/tini-static"
    assert dests["/etc/hosts"]["source"] == "/x/hosts"


def test_merge_image_as_dockerd_stores_it() -> None:
    image = {"Cmd": ["sh"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w",
             "Labels": {"x": "1"}}
    out = ocispec.merge_image({"Cmd": None, "Entrypoint": None, "Env": ["A=2"],
                               "Labels": {"y": "2"}}, image)
    assert out["Cmd"] == ["sh"] and out["Env"] == ["PATH=/bin", "A=2"]
    assert out["WorkingDir"] == "/w" and out["Labels"] == {"x": "1", "y": "2"}
    # an Entrypoint in the request drops the image's Cmd; the command is unchanged
    out = ocispec.merge_image({"Cmd": None, "Entrypoint": ["top"]}, image)
    assert out["Cmd"] is None and ocispec.command(out, image) == ["top"]
