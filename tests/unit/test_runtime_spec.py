"""`labkit-runtime spec`: the default config and our seccomp allow-list."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.runtime import seccomp, spec


def test_default_config_shape() -> None:
    cfg = spec.default_config()
    p = cfg["process"]
    assert p["terminal"] is True and p["args"] == ["sh"]
    assert p["capabilities"]["bounding"] == list(spec.DEFAULT_CAPS)
    assert "CAP_SYS_ADMIN" not in spec.DEFAULT_CAPS and len(spec.DEFAULT_CAPS) == 14
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    assert cfg["hostname"] == "labkit"
    dests = [m["destination"] for m in cfg["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert [n["type"] for n in cfg["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
    assert "/proc/sys" in cfg["linux"]["readonlyPaths"]


def test_rootless_variant() -> None:
    cfg = spec.default_config(rootless=True)
    types = [n["type"] for n in cfg["linux"]["namespaces"]]
    assert "user" in types and "network" not in types
    assert all(m["destination"] != "/sys/fs/cgroup" for m in cfg["mounts"])


def test_write_spec_never_overwrites(tmp_path: Path) -> None:
    path = spec.write_spec(str(tmp_path))
    assert json.loads(Path(path).read_text())["ociVersion"] == spec.OCI_VERSION
    with pytest.raises(errors.AlreadyExistsError):
        spec.write_spec(str(tmp_path))
    with pytest.raises(errors.NotFoundError):
        spec.write_spec(str(tmp_path / "missing"))


def test_default_seccomp_profile() -> None:
    prof = seccomp.default_profile()
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO" and prof["defaultErrnoRet"] == errno.EPERM
    assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                     "SCMP_ARCH_AARCH64"]
    allowed = set(prof["syscalls"][0]["names"])
    assert {"execve", "read", "write", "exit_group", "openat"} <= allowed
    for escape in ("mount", "umount2", "pivot_root", "unshare", "setns", "bpf", "ptrace",
                   "kexec_load", "init_module", "open_by_handle_at", "keyctl", "reboot"):
        assert escape not in allowed, escape
    clone = next(r for r in prof["syscalls"] if r["names"] == ["clone"])
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"


def test_profile_compiles_to_bpf_and_is_cached(tmp_path: Path) -> None:
    prof = seccomp.default_profile()
    prog = seccomp.program(prof, str(tmp_path))
    assert len(prog) % 8 == 0 and len(prog) > 8 * 100
    (cached,) = list(tmp_path.iterdir())
    assert cached.read_bytes() == prog
    assert seccomp.program(prof, str(tmp_path)) == prog
    other = dict(prof, defaultErrnoRet=errno.EACCES)
    assert seccomp.program(other, str(tmp_path)) != prog
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize("bad, field", [
    ({"defaultAction": "SCMP_ACT_BOGUS"}, "linux.seccomp.defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"]},
     "linux.seccomp.architectures"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_WAT"}]}]},
     "linux.seccomp.syscalls[0].args[0].op"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAT"]},
     "linux.seccomp.flags[0]"),
])
def test_bad_profiles_are_named(bad: dict[str, object], field: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=field.replace("[", r"\[").replace("]", r"\]")):
        seccomp.program(bad)
        seccomp.load_flags(bad)


def test_unknown_syscall_names_are_skipped() -> None:
    prog = seccomp.program({"defaultAction": "SCMP_ACT_ERRNO",
                            "syscalls": [{"names": ["read", "no_such_call"], "action": "SCMP_ACT_ALLOW"}]})
    assert len(prog) % 8 == 0
