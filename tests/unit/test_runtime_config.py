"""config.json validation (labkit.engine.runtime.config): every refusal names its field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labkit import errors
from labkit.engine.runtime import config
from labkit.engine.runtime.spec import default_config


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def check(bundle: Path, cfg: Any) -> config.Config:
    return config.validate(cfg, str(bundle), "lk-unit")


def refused(bundle: Path, cfg: Any) -> str:
    with pytest.raises(errors.InvalidArgumentError) as ei:
        check(bundle, cfg)
    return str(ei.value)


def test_default_spec_is_valid(bundle: Path) -> None:
    c = check(bundle, default_config())
    assert c.rootfs == str(bundle / "rootfs")
    assert c.namespaces.new == frozenset({"pid", "net", "ipc", "uts", "mnt"})
    assert c.namespaces.hostname == "labkit"
    assert c.namespaces.propagation == "unchanged"  # init applies rootfsPropagation itself
    assert c.cgroup_name == "lk/lk-unit"
    assert c.terminal is True


def test_unknown_namespace_type_named_by_index(bundle: Path) -> None:
    cfg = default_config()
    cfg["linux"]["namespaces"][2] = {"type": "foo"}
    assert refused(bundle, cfg).startswith(
        "linux.namespaces[2].type: unknown namespace type 'foo'")


def test_missing_rootfs_names_the_path(bundle: Path) -> None:
    cfg = default_config()
    cfg["root"]["path"] = "nowhere"
    assert f"rootfs {bundle / 'nowhere'} does not exist" in refused(bundle, cfg)


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c.pop("ociVersion"), "ociVersion: is required"),
    (lambda c: c["process"].__setitem__("args", "sh"), "process.args: must be an array"),
    (lambda c: c["process"].__setitem__("args", []), "process.args"),
    (lambda c: c["process"].__setitem__("terminal", "yes"), "process.terminal: must be a boolean"),
    (lambda c: c["process"]["user"].__setitem__("uid", True), "process.user.uid: must be an integer"),
    (lambda c: c["process"].__setitem__("cwd", "tmp"), "process.cwd"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_NOPE"),
     "process.capabilities.bounding[14]: unknown capability 'CAP_NOPE'"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}),
     "process.rlimits[1].type: unknown rlimit"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_CORE", "soft": 2, "hard": 1}),
     "process.rlimits[1]: soft limit 2 is above hard limit 1"),
    (lambda c: c["mounts"].append({"destination": "relative"}), "mounts[7].destination"),
    (lambda c: c["mounts"].append({"destination": "/x", "options": [1]}), "mounts[7].options[0]"),
    (lambda c: c["linux"].__setitem__("namespaces", [{"type": "pid"}]),
     "mounts: needs a mount namespace"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "listed twice"),
    (lambda c: c["linux"]["namespaces"].remove({"type": "uts"}),
     "hostname: setting the hostname requires a new or joined UTS namespace"),
    (lambda c: c["linux"].__setitem__("uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
     "linux.uidMappings: id mappings need a new user namespace"),
    (lambda c: c["linux"].__setitem__("rootfsPropagation", "sideways"),
     "linux.rootfsPropagation: unknown propagation"),
    (lambda c: c["linux"].__setitem__("sysctl", {"net.ipv4.ip_forward": 1}),
     "linux.sysctl.net.ipv4.ip_forward: must be a string"),
    (lambda c: c.__setitem__("mounts", {}), "mounts: must be an array"),
])
def test_wrong_fields_are_named(bundle: Path, mutate: Any, field: str) -> None:
    cfg = default_config()
    mutate(cfg)
    assert field in refused(bundle, cfg)


def test_unknown_mount_type_is_left_to_the_kernel(bundle: Path) -> None:
    cfg = default_config()
    cfg["mounts"].append({"destination": "/x", "type": "no-such-fs", "source": "none"})
    check(bundle, cfg)


def test_joined_namespace_path_must_exist(bundle: Path) -> None:
    cfg = default_config()
    cfg["linux"]["namespaces"][1] = {"type": "network", "path": str(bundle / "no-netns")}
    assert "linux.namespaces[1].path" in refused(bundle, cfg)


def test_user_namespace_maps(bundle: Path) -> None:
    c = check(bundle, default_config(rootless=True))
    assert "user" in c.namespaces.new
    assert c.namespaces.uid_map[0].inside == 0 and c.namespaces.uid_map[0].count == 1


def test_load_reports_bad_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFoundError):
        config.load(str(tmp_path), "lk-unit")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(errors.InvalidArgumentError, match="not valid JSON"):
        config.load(str(tmp_path), "lk-unit")
    (tmp_path / "config.json").write_text(json.dumps([1]))
    with pytest.raises(errors.InvalidArgumentError, match="must be a JSON object"):
        config.load(str(tmp_path), "lk-unit")


def test_hooks_are_accepted_and_checked_field_by_field(bundle: Path) -> None:
    # Hooks were refused while the runtime could not run them; now every phase runs
    # (tests/privileged/test_runtime.py) and a malformed entry is named.
    cfg = default_config()
    cfg["hooks"] = {p: [{"path": "/bin/true", "args": ["true"], "env": ["A=b"], "timeout": 5}]
                    for p in ("prestart", "createRuntime", "createContainer", "startContainer",
                              "poststart", "poststop")}
    assert check(bundle, cfg).hooks["poststop"][0]["path"] == "/bin/true"
    cfg["hooks"] = {"prestart": []}
    check(bundle, cfg)
    for hooks, field in (
        ({"prestart": [{"args": ["x"]}]}, "hooks.prestart[0].path: is required"),
        ({"poststop": [{"path": "true"}]}, "hooks.poststop[0].path: 'true' must be an absolute"),
        ({"poststart": [{"path": "/x", "timeout": 0}]}, "hooks.poststart[0].timeout"),
        ({"createRuntime": [{"path": "/x", "env": [1]}]}, "hooks.createRuntime[0].env"),
        ({"onBoot": [{"path": "/x"}]}, "hooks.onBoot: unknown hook phase"),
        ({"prestart": {"path": "/x"}}, "hooks.prestart: must be an array"),
    ):
        cfg["hooks"] = hooks
        assert field in refused(bundle, cfg)
    cfg["hooks"] = {"prestart": []}
    check(bundle, cfg)


def test_hostname_in_a_joined_uts_namespace_is_set_by_init(bundle: Path) -> None:
    cfg = default_config()
    cfg["linux"]["namespaces"].remove({"type": "uts"})
    cfg["linux"]["namespaces"].append({"type": "uts", "path": "/proc/self/ns/uts"})
    cfg["domainname"] = "lk.example"
    c = check(bundle, cfg)
    assert c.namespaces.hostname is None  # not child_enter's job: it only names a new one
    assert config.joined_uts_names(c) == ("labkit", "lk.example")
    assert config.joined_uts_names(check(bundle, default_config())) == (None, None)


def test_mount_namespace_joined_or_left_out(bundle: Path) -> None:
    cfg = default_config()
    cfg["linux"]["namespaces"].remove({"type": "mount"})
    cfg["linux"]["namespaces"].append({"type": "mount", "path": "/proc/self/ns/mnt"})
    assert config.own_mounts(check(bundle, cfg))
    cfg["linux"]["namespaces"].pop()
    # Without one, whatever needs a mount is refused by name; the rest is a chroot.
    for field in ("mounts", "root.readonly", "linux.maskedPaths", "linux.readonlyPaths"):
        assert f"{field}: needs a mount namespace" in refused(bundle, cfg)
        if field == "mounts":
            cfg["mounts"] = []
        elif field == "root.readonly":
            cfg["root"]["readonly"] = False
        else:
            del cfg["linux"][field.split(".")[1]]
    for key, val in (("devices", [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]),
                     ("rootfsPropagation", "shared")):
        assert f"linux.{key}: needs a mount namespace" in refused(bundle, dict(cfg, linux=dict(cfg["linux"], **{key: val})))
    # A chroot is all that holds the container: CAP_SYS_CHROOT would get it out.
    assert "process.capabilities.bounding: CAP_SYS_CHROOT" in refused(bundle, cfg)
    cfg["process"]["capabilities"]["bounding"].remove("CAP_SYS_CHROOT")
    assert not config.own_mounts(check(bundle, cfg))
