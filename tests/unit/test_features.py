"""labkit._sys.features against fake /proc, /sys, /boot and /lib/modules trees (STYLE C8)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from labkit._sys import features

REL = "6.18.0-test"

EXEC_FORMAT = """name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;
"""


def write(root: Path, rel: str, text: str = "") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def fake_root(root: Path, *, ns: tuple[str, ...] = features.NAMESPACE_KINDS,
              config: str | None = ("CONFIG_KPROBES=y\nCONFIG_TRACEPOINTS=y\n"
                                     "# CONFIG_IPVLAN is not set\nCONFIG_VXLAN=m\n"),
              tracefs: bool = True) -> Path:
    write(root, "proc/sys/kernel/osrelease", REL + "\n")
    for kind in ns:
        write(root, f"proc/self/ns/{kind}")
    write(root, "proc/sys/user/max_user_namespaces", "1000\n")
    write(root, "proc/filesystems", "nodev\tsysfs\nnodev\ttracefs\n\text4\nnodev\toverlay\n")
    write(root, "proc/self/status", "Name:\tpython\nSeccomp:\t0\nSeccomp_filters:\t0\n")
    write(root, "proc/sys/kernel/seccomp/actions_avail", "kill_process errno user_notif allow\n")
    if config is not None:
        write(root, f"boot/config-{REL}", config)
    if tracefs:
        write(root, "sys/kernel/tracing/events/sched/sched_process_exec/format", EXEC_FORMAT)
    return root


def test_kernel_release_and_version(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert features.kernel_release(root) == REL
    assert features.kernel_version(root) == (6, 18)


def test_namespaces_lists_only_present_kinds(tmp_path: Path) -> None:
    root = fake_root(tmp_path, ns=("mnt", "net", "pid"))
    assert features.namespaces(root) == frozenset({"mnt", "net", "pid"})
    assert features.has_namespace("net", root)
    assert not features.has_namespace("time", root)


def test_userns_disabled_by_max_zero(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    write(root, "proc/sys/user/max_user_namespaces", "0\n")
    assert features.userns_allowed(root) is False


def test_userns_needs_the_user_kind(tmp_path: Path) -> None:
    root = fake_root(tmp_path, ns=("mnt",))
    assert features.userns_allowed(root) is False


def test_overlay_and_seccomp(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert features.has_overlayfs(root)
    assert features.seccomp(root) == (True, ("kill_process", "errno", "user_notif", "allow"))


def test_no_seccomp_line_means_unsupported(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    write(root, "proc/self/status", "Name:\tpython\n")
    assert features.seccomp(root)[0] is False


def test_config_from_boot_distinguishes_unset_from_absent(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert features.config_option("CONFIG_KPROBES", root) is True
    assert features.config_option("CONFIG_VXLAN", root) is True  # =m counts
    assert features.config_option("CONFIG_IPVLAN", root) is False
    assert features.kernel_config(root)["CONFIG_IPVLAN"] == "n"  # type: ignore[index]


def test_config_falls_back_to_proc_config_gz(tmp_path: Path) -> None:
    root = fake_root(tmp_path, config=None)
    with gzip.open(root / "proc/config.gz", "wt") as f:
        f.write("# CONFIG_KPROBES is not set\n")
    assert features.has_kprobes(root) is False


def test_kprobes_without_config_uses_kprobe_events(tmp_path: Path) -> None:
    root = fake_root(tmp_path, config=None)
    assert features.has_kprobes(root) is False
    other = fake_root(tmp_path / "b", config=None)
    write(other, "sys/kernel/tracing/kprobe_events")
    assert features.has_kprobes(other) is True


def test_tracefs_and_tracepoints(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert features.tracefs(root) == root / "sys/kernel/tracing"
    assert features.tracepoint_exists("sched", "sched_process_exec", root)
    assert not features.tracepoint_exists("oom", "mark_victim", root)


def test_unmounted_tracefs_still_counts_as_available(tmp_path: Path) -> None:
    root = fake_root(tmp_path, tracefs=False)
    (root / "sys/kernel/tracing").mkdir(parents=True)  # the empty mount point
    assert features.tracefs(root) is None
    assert features.has_tracepoints(root)  # tracefs is in /proc/filesystems


def test_tracepoint_fields_parses_format(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    fields = features.tracepoint_fields("sched", "sched_process_exec", root)
    assert fields == {"filename": "__data_loc char[]", "pid": "pid_t", "comm": "char[16]"}


def test_headers_exact_and_nearest(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    assert features.kernel_headers(root) is None
    write(root, f"lib/modules/{REL}/build/Makefile")
    assert features.kernel_headers(root) == root / f"lib/modules/{REL}/build"
    assert features.nearest_headers(root) is None
    write(root, f"lib/modules/{REL}/.labkit-nearest-headers", "linux-headers-6.1.0-56-amd64\n")
    assert features.nearest_headers(root) == "linux-headers-6.1.0-56-amd64"


def test_link_kind_guess(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "sys/module/macvlan").mkdir(parents=True)
    assert features.link_kind_builtin("macvlan", root) is True
    assert features.link_kind_builtin("vxlan", root) is True
    assert features.link_kind_builtin("ipvlan", root) is False


def test_kallsyms_text_symbols_only(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    write(root, "proc/kallsyms", "ffff0001 T do_sys_openat2\nffff0002 d some_data\n")
    assert features.kallsyms_has("do_sys_openat2", root)
    assert not features.kallsyms_has("some_data", root)
    assert not features.kallsyms_has("nope", root)


def test_has_flags_are_lazy_module_attributes() -> None:
    assert isinstance(features.HAS_NS_NET, bool)
    assert "HAS_KPROBES" in dir(features)
    with pytest.raises(AttributeError):
        features.HAS_NO_SUCH_THING  # noqa: B018
