"""What this kernel offers, detected once, cheaply, from /proc, /sys and /boot (STYLE C7).

Two ways in:

* module attributes ``HAS_*`` (``features.HAS_KPROBES``), computed on first access through
  the module ``__getattr__`` (PEP 562) and cached, so ``import labkit._sys.features`` costs
  nothing on the runtime's start path;
* functions taking ``root=`` (STYLE C8), each cached per root with functools.cache, so unit
  tests can point them at a fake tree in tmp_path.

Everything here only *reads* files.  Checks that need to create something to be sure (a
vxlan link in a throwaway netns, a BPF program attached to a tracepoint) live in
labkit.doctor, which sits above this layer.  The cgroup mode is not here either: only
labkit.cgroups asks for the cgroup version (STYLE C6).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import re
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "NAMESPACE_KINDS",
    "ROOT",
    "config_option",
    "filesystems",
    "has_bcc",
    "has_btf",
    "has_kprobes",
    "has_namespace",
    "has_overlayfs",
    "has_tracepoints",
    "kallsyms_has",
    "kernel_config",
    "kernel_headers",
    "kernel_release",
    "kernel_version",
    "link_kind_builtin",
    "namespaces",
    "nearest_headers",
    "seccomp",
    "tracefs",
    "tracepoint_exists",
    "tracepoint_fields",
    "userns_allowed",
]

ROOT = Path("/")

# namespaces(7): the eight kinds, by their /proc/PID/ns link names.
NAMESPACE_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@functools.cache
def kernel_release(root: Path = ROOT) -> str:
    """uname(2) release, read from /proc/sys/kernel/osrelease so a fake root can set it."""
    text = _read(root / "proc/sys/kernel/osrelease")
    return text.strip() if text else os.uname().release


@functools.cache
def kernel_version(root: Path = ROOT) -> tuple[int, int]:
    """(major, minor) of the running kernel, e.g. (6, 18)."""
    m = re.match(r"(\d+)\.(\d+)", kernel_release(root))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@functools.cache
def namespaces(root: Path = ROOT) -> frozenset[str]:
    """namespaces(7): the kinds this kernel has, i.e. those with a /proc/self/ns/<kind> link."""
    ns = root / "proc/self/ns"
    return frozenset(k for k in NAMESPACE_KINDS if os.path.lexists(ns / k))


def has_namespace(kind: str, root: Path = ROOT) -> bool:
    """True when the kernel has namespaces of ``kind`` ("net", "user", "time", ...)."""
    return kind in namespaces(root)


@functools.cache
def userns_allowed(root: Path = ROOT) -> bool:
    """user_namespaces(7): may new user namespaces be created at all?

    /proc/sys/user/max_user_namespaces of 0 forbids them for everyone; Debian and Ubuntu
    kernels add kernel.unprivileged_userns_clone, which when 0 forbids them for non-root.
    """
    if "user" not in namespaces(root):
        return False
    limit = _read(root / "proc/sys/user/max_user_namespaces")
    if limit is not None and limit.strip() == "0":
        return False
    clone = _read(root / "proc/sys/kernel/unprivileged_userns_clone")
    return not (clone is not None and clone.strip() == "0" and os.geteuid() != 0)


@functools.cache
def filesystems(root: Path = ROOT) -> frozenset[str]:
    """Filesystem types the kernel knows now (proc(5) /proc/filesystems)."""
    text = _read(root / "proc/filesystems") or ""
    return frozenset(line.split()[-1] for line in text.splitlines() if line.strip())


def has_overlayfs(root: Path = ROOT) -> bool:
    """overlay in /proc/filesystems (a module not yet loaded shows up only after modprobe)."""
    return "overlay" in filesystems(root)


@functools.cache
def seccomp(root: Path = ROOT) -> tuple[bool, tuple[str, ...]]:
    """seccomp(2): (supported, actions) from /proc/self/status and .../seccomp/actions_avail.

    The Seccomp: line exists only with CONFIG_SECCOMP (proc(5)); actions_avail lists the
    filter return actions the kernel knows, e.g. ("kill_process", ..., "user_notif", ...).
    """
    status = _read(root / "proc/self/status") or ""
    has = any(line.startswith("Seccomp:") for line in status.splitlines())
    actions = (_read(root / "proc/sys/kernel/seccomp/actions_avail") or "").split()
    return has, tuple(actions)


@functools.cache
def kernel_config(root: Path = ROOT) -> dict[str, str] | None:
    """The kernel's build config (CONFIG_X -> "y"/"m"/"n"/value), or None when unpublished.

    Looks in /boot/config-$(uname -r) (Debian) and then /proc/config.gz (CONFIG_IKCONFIG_PROC).
    "# CONFIG_X is not set" lines become "n", so a missing option differs from a disabled one.
    """
    text = _read(root / "boot" / f"config-{kernel_release(root)}")
    if text is None:
        try:
            with gzip.open(root / "proc/config.gz", "rt") as f:
                text = f.read()
        except OSError:
            return None
    conf: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            conf[key] = value.strip('"')
        elif (m := re.match(r"# (CONFIG_\w+) is not set", line)):
            conf[m.group(1)] = "n"
    return conf


def config_option(name: str, root: Path = ROOT) -> bool | None:
    """True for =y/=m, False for "is not set", None when the config is not published."""
    conf = kernel_config(root)
    if conf is None:
        return None
    return conf.get(name, "n") in ("y", "m")


@functools.cache
def tracefs(root: Path = ROOT) -> Path | None:
    """The mounted tracefs (Documentation/trace/ftrace.rst), or None when none is mounted.

    /sys/kernel/tracing is the modern place; /sys/kernel/debug/tracing is where debugfs
    automounts it on older systems.  An empty directory means "not mounted".
    """
    for rel in ("sys/kernel/tracing", "sys/kernel/debug/tracing"):
        d = root / rel
        # os.path never raises: tracefs is 0700, so a non-root caller cannot look inside,
        # but can still see that it is a mount point.
        if os.path.isdir(d / "events") or os.path.ismount(d):
            return d
    return None


def has_tracepoints(root: Path = ROOT) -> bool:
    """Tracepoints are usable: tracefs is mounted with an events/ dir, or could be mounted."""
    if tracefs(root) is not None:
        return True
    return "tracefs" in filesystems(root) and config_option("CONFIG_TRACEPOINTS", root) is not False


def tracepoint_exists(category: str, event: str, root: Path = ROOT) -> bool:
    """True when tracefs has events/<category>/<event> (e.g. "oom", "mark_victim")."""
    t = tracefs(root)
    return t is not None and os.path.isfile(t / "events" / category / event / "format")


@functools.cache
def tracepoint_fields(category: str, event: str, root: Path = ROOT) -> dict[str, str]:
    """The tracepoint's own fields (name -> C type) from its tracefs format file.

    ``__data_loc char[] comm`` comes back as ``{"comm": "__data_loc char[]"}``; bcc's
    TRACEPOINT_PROBE exposes such a field as ``args->data_loc_comm``.  Common fields
    (common_pid, ...) are left out.  Empty when the tracepoint does not exist.
    """
    t = tracefs(root)
    text = _read(t / "events" / category / event / "format") if t else None
    fields: dict[str, str] = {}
    for m in re.finditer(r"field:([^;]+);", text or ""):
        decl = m.group(1).strip()
        fm = re.match(r"(.*?)\s*([A-Za-z_]\w*)\s*(\[\d*\])?$", decl)
        if not fm or fm.group(2).startswith("common_"):
            continue
        ctype = fm.group(1) + (fm.group(3) or "")
        fields[fm.group(2)] = ctype
    return fields


@functools.cache
def has_kprobes(root: Path = ROOT) -> bool:
    """kprobes (Documentation/trace/kprobes.rst): CONFIG_KPROBES, or tracefs kprobe_events.

    The config is the stronger answer; without it, the kprobe_events file in a mounted
    tracefs exists exactly when the kernel was built with kprobe events.
    """
    conf = config_option("CONFIG_KPROBES", root)
    if conf is not None:
        return conf
    t = tracefs(root)
    return t is not None and os.path.exists(t / "kprobe_events")


def has_btf(root: Path = ROOT) -> bool:
    """The kernel describes its own types (CONFIG_DEBUG_INFO_BTF): /sys/kernel/btf/vmlinux."""
    return os.path.exists(root / "sys/kernel/btf/vmlinux")


@functools.cache
def has_bcc() -> bool:
    """The bcc Python package can be found (python3-bpfcc); does not import it (slow)."""
    return importlib.util.find_spec("bcc") is not None


def kernel_headers(root: Path = ROOT) -> Path | None:
    """/lib/modules/$(uname -r)/build when it holds a kernel tree bcc can compile against."""
    build = root / "lib/modules" / kernel_release(root) / "build"
    ok = os.path.exists(build / "Makefile") or os.path.isdir(build / "include")
    return build if ok else None


def nearest_headers(root: Path = ROOT) -> str | None:
    """Name of the stand-in headers scripts/kernel-headers.sh linked, or None when exact."""
    text = _read(root / "lib/modules" / kernel_release(root) / ".labkit-nearest-headers")
    return (text.strip() or None) if text is not None else None


@functools.cache
def link_kind_builtin(kind: str, root: Path = ROOT) -> bool | None:
    """A cheap guess whether the kernel can make ``kind`` links ("vxlan", "ipvlan", ...).

    Loaded or built-in modules appear in /sys/module; modules.builtin and the config say
    the rest.  None means "cannot tell without trying" (labkit.doctor tries for real).
    """
    if os.path.isdir(root / "sys/module" / kind):
        return True
    conf = config_option(f"CONFIG_{kind.upper()}", root)
    if conf is not None:
        return conf
    moddir = root / "lib/modules" / kernel_release(root)
    if os.path.isdir(moddir) and any(moddir.glob(f"kernel/drivers/net/{kind}*")):
        return True
    return None


def kallsyms_has(symbol: str, root: Path = ROOT) -> bool:
    """True when /proc/kallsyms lists ``symbol`` as a text symbol (a kprobe-able function)."""
    try:
        with open(root / "proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == symbol and parts[1] in "tTwW":
                    return True
    except OSError:
        return False
    return False


# --- HAS_* module attributes (PEP 562), each computed once on first access -------------
_FLAGS: dict[str, Callable[[], bool]] = {
    "HAS_USERNS": lambda: userns_allowed(),
    "HAS_OVERLAYFS": lambda: has_overlayfs(),
    "HAS_SECCOMP": lambda: seccomp()[0],
    "HAS_TRACEPOINTS": lambda: has_tracepoints(),
    "HAS_KPROBES": lambda: has_kprobes(),
    "HAS_BTF": lambda: has_btf(),
    "HAS_BCC": lambda: has_bcc(),
    "HAS_KERNEL_HEADERS": lambda: kernel_headers() is not None,
    # clone3(2) and pidfd_open(2) both arrived in Linux 5.3.
    "HAS_CLONE3": lambda: kernel_version() >= (5, 3),
    "HAS_PIDFD": lambda: kernel_version() >= (5, 3),
    # openat2(2) with RESOLVE_IN_ROOT / RESOLVE_NO_SYMLINKS arrived in Linux 5.6.
    "HAS_OPENAT2": lambda: kernel_version() >= (5, 6),
    **{f"HAS_NS_{k.upper()}": functools.partial(has_namespace, k) for k in NAMESPACE_KINDS},
}
__all__ += list(_FLAGS)


def __getattr__(name: str) -> bool:
    if name in _FLAGS:
        value = bool(_FLAGS[name]())
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FLAGS))
