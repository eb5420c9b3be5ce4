"""labkit.vm without booting anything: qemu command lines, recipe hashes, the cache layout,
the accelerator choice and the failure paths that need no VM (no qemu, no space)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from labkit import errors
from labkit.vm import image, qemu
from labkit.vm._errors import NoSpaceError
from labkit.vm.recipe import Layout, Recipe, host_mirror


def _spec(tmp_path: Path, **kw: object) -> qemu.BootSpec:
    return qemu.BootSpec(kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img",
                         rootfs=tmp_path / "rootfs.ext4", agent_socket=tmp_path / "a.sock",
                         console_log=tmp_path / "console.log", **kw)  # type: ignore[arg-type]


def test_command_is_disposable_and_offline(tmp_path: Path) -> None:
    argv = qemu.command(_spec(tmp_path, share=Path("/repo")))
    joined = " ".join(argv)
    assert f"file={tmp_path}/rootfs.ext4,format=raw,if=virtio,snapshot=on" in argv
    assert argv[argv.index("-nic") + 1] == "none"  # no network device at all
    assert "hostfwd" not in joined and "0.0.0.0" not in joined
    assert "mount_tag=labkit" in joined and "path=/repo" in joined
    assert argv[argv.index("-accel") + 1].startswith("tcg")
    assert f"path={tmp_path}/a.sock,server=on,wait=off" in joined
    assert "init=/usr/local/sbin/labkit-init" in argv[argv.index("-append") + 1]


def test_command_kvm_shell_and_no_share(tmp_path: Path) -> None:
    argv = qemu.command(_spec(tmp_path, accel="kvm", shell=True, share=None))
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"
    assert argv[argv.index("-serial") + 1] == "mon:stdio"
    assert "labkit.shell=1" in argv[argv.index("-append") + 1]
    assert "-virtfs" not in argv


def test_no_qemu_is_unsupported_with_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(errors.UnsupportedError) as ei:
        qemu.qemu_binary()
    assert "qemu-system-x86" in (ei.value.hint or "")


def test_accel_env_override_and_cached_probe(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_VM_ACCEL", "kvm")
    assert qemu.choose_accel(tmp_path / "k", tmp_path, "qemu")[0] == "kvm"
    monkeypatch.delenv("LABKIT_VM_ACCEL")
    monkeypatch.setattr(qemu, "_qemu_version", lambda q: "QEMU 7.2")
    calls: list[Path] = []

    def probe(kernel: Path, q: str, timeout: float = 1.0) -> tuple[bool, str]:
        calls.append(kernel)
        return False, "kvm probe boot failed (exit -6)"
    monkeypatch.setattr(qemu, "probe_kvm", probe)
    assert qemu.choose_accel(tmp_path / "k", tmp_path, "qemu")[0] == "tcg"
    assert qemu.choose_accel(tmp_path / "k", tmp_path, "qemu")[0] == "tcg"
    assert len(calls) == 1  # the second answer came from accel.json
    saved = json.loads((tmp_path / "accel.json").read_text())
    assert saved["accel"] == "tcg" and "exit -6" in saved["why"]


def test_probe_without_dev_kvm_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu.os.path, "exists", lambda p: False)
    assert qemu.probe_kvm(tmp_path / "k", "qemu") == (False, "no /dev/kvm")


def test_recipe_hashes_change_with_their_inputs() -> None:
    r = Recipe.current()
    agent = dataclasses.replace(r, agent=r.agent + b"#")
    assert agent.base_hash == r.base_hash and agent.image_hash != r.image_hash
    reqs = dataclasses.replace(r, requirements=(*r.requirements, "six"))
    assert reqs.base_hash != r.base_hash and reqs.image_hash != r.image_hash
    pkgs = dataclasses.replace(r, packages=(*r.packages, "etcd-server"))
    assert pkgs.base_hash != r.base_hash
    assert "pytest>=8.0" in r.requirements and "runc" in r.packages


@pytest.mark.parametrize("text,want", [
    ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n",
     "http://mirror.example/debian"),
    ("deb [arch=amd64] http://ftp.example.org/debian/ bookworm main\n",
     "http://ftp.example.org/debian"),
    ("deb https://packages.cloud.google.com/apt cloud-sdk main\n", "http://deb.debian.org/debian"),
])
def test_host_mirror(tmp_path: Path, text: str, want: str) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "x.sources").write_text(text)
    assert host_mirror(tmp_path) == want


def test_no_space_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoSpaceError, match="no space for the VM image") as ei:
        image.check_space(tmp_path, need=1 << 60)
    assert "LABKIT_VM_CACHE" in (ei.value.hint or "")


def test_half_built_image_is_never_loaded_and_is_swept(tmp_path: Path) -> None:
    lay = Layout(tmp_path, Recipe.current())
    lay.image.mkdir(parents=True)
    (lay.image / "rootfs.ext4").write_bytes(b"")  # no stamp.json: interrupted
    assert image.load(lay) is None
    tmp = tmp_path / "images" / f".tmp-{lay.recipe.image_hash}-1"
    tmp.mkdir()
    (tmp_path / ".tmp-base-x-1").mkdir()
    image._sweep(tmp_path)
    assert not tmp.exists() and not (tmp_path / ".tmp-base-x-1").exists()
    (lay.image / "stamp.json").write_text(json.dumps(
        {"kernel_release": "6.1.0-x", "image_hash": lay.recipe.image_hash,
         "build_seconds": 80.0}))
    img = image.load(lay)
    assert img is not None and img.kernel_release == "6.1.0-x" and img.cached


def test_build_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(errors.UnsupportedError, match="needs root"):
        image.build(tmp_path)


def test_security_mirror_only_when_the_host_has_one(tmp_path: Path) -> None:
    from labkit.vm.recipe import host_security_mirror
    (tmp_path / "sources.list").write_text("deb http://m.example/debian bookworm main\n")
    assert host_security_mirror(tmp_path) is None
    assert "security" not in image._sources("http://m.example/debian", None)
    (tmp_path / "sources.list").write_text(
        "deb http://m.example/debian bookworm main\n"
        "deb http://s.example/debian-security bookworm-security main\n")
    assert host_security_mirror(tmp_path) == "http://s.example/debian-security"
    assert host_mirror(tmp_path) == "http://m.example/debian"
