"""Doctor rows that only read files (work against a fake root in unit tests)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from labkit._sys import features
from labkit.doctor._check import VM, Check

__all__ = ["headers", "kernel", "link_kinds_static", "namespaces", "overlay", "privileges",
           "seccomp", "tools", "tracing"]

LINK_KINDS = ("vxlan", "macvlan", "ipvlan")


def kernel(root: Path) -> list[Check]:
    rel = features.kernel_release(root)
    return [Check("kernel", True, rel, None)]


def privileges(root: Path) -> list[Check]:
    if os.geteuid() == 0:
        return [Check("root", True, "euid 0", None)]
    return [Check("root", False, f"euid {os.geteuid()}",
                  "most of labkit (namespaces, cgroups, probes) needs root: run as root")]


def namespaces(root: Path) -> list[Check]:
    have = features.namespaces(root)
    missing = [k for k in features.NAMESPACE_KINDS if k not in have]
    ok: bool | None = not missing if have else False
    if missing and have:
        ok = None
    detail = " ".join(sorted(have)) or "none"
    if missing:
        detail += f" (missing: {' '.join(missing)})"
    rows = [Check("namespaces", ok, detail,
                  f"this kernel lacks {', '.join(missing)} namespaces: {VM}" if missing else None)]
    allowed = features.userns_allowed(root)
    rows.append(Check(
        "user namespaces", allowed,
        "allowed" if allowed else "disabled (max_user_namespaces or unprivileged_userns_clone)",
        None if allowed else "sysctl user.max_user_namespaces=15000 "
                             "(and kernel.unprivileged_userns_clone=1 on Debian kernels)"))
    return rows


def overlay(root: Path) -> list[Check]:
    ok = features.has_overlayfs(root)
    return [Check("overlayfs", ok, "in /proc/filesystems" if ok else "not in /proc/filesystems",
                  None if ok else f"modprobe overlay; if there is no module: {VM}")]


def seccomp(root: Path) -> list[Check]:
    ok, actions = features.seccomp(root)
    detail = f"filter actions: {' '.join(actions)}" if actions else "filters supported"
    if not ok:
        return [Check("seccomp", False, "no Seccomp: line in /proc/self/status",
                      f"kernel built without CONFIG_SECCOMP: {VM}")]
    partial = "user_notif" not in actions if actions else False
    return [Check("seccomp", None if partial else True, detail,
                  "no SECCOMP_RET_USER_NOTIF (Linux >= 5.0): notify rules fall back to errno"
                  if partial else None)]


def tracing(root: Path) -> list[Check]:
    rows: list[Check] = []
    tfs = features.tracefs(root)
    if tfs is not None:
        try:
            groups = f", {sum(1 for e in os.scandir(tfs / 'events') if e.is_dir())} event groups"
        except OSError:  # tracefs is 0700: only root may look inside
            groups = ""
        rows.append(Check("tracepoints", True, f"tracefs at {tfs}{groups}", None))
    elif features.has_tracepoints(root):
        rows.append(Check("tracepoints", None, "available, but tracefs is not mounted",
                          "labkit probes mount it on first use; or: "
                          "mount -t tracefs tracefs /sys/kernel/tracing"))
    else:
        rows.append(Check("tracepoints", False, "no tracefs in this kernel",
                          f"probes cannot run here: {VM}"))
    kp = features.has_kprobes(root)
    how = ("CONFIG_KPROBES" if features.kernel_config(root) is not None else "kprobe_events")
    rows.append(Check(
        "kprobes", kp, f"{how}: {'yes' if kp else 'no'}",
        None if kp else f"this kernel has no kprobes: probes fall back to tracepoints; "
                        f"for kprobes {VM}"))
    btf = features.has_btf(root)
    rows.append(Check("BTF", btf, "/sys/kernel/btf/vmlinux" + ("" if btf else " missing"),
                      None if btf else "CO-RE tools need CONFIG_DEBUG_INFO_BTF; bcc works without"))
    return rows


def headers(root: Path) -> list[Check]:
    build = features.kernel_headers(root)
    rel = features.kernel_release(root)
    if build is None:
        return [Check("kernel headers", False, f"/lib/modules/{rel}/build missing",
                      "bcc needs them: scripts/kernel-headers.sh (run by make setup)")]
    near = features.nearest_headers(root)
    if near:
        return [Check("kernel headers", None, f"nearest headers linked: {near}",
                      f"no headers for {rel}: tracepoint probes work, kprobes on struct "
                      f"fields may read wrong offsets")]
    return [Check("kernel headers", True, str(build.resolve()), None)]


def link_kinds_static(root: Path) -> list[Check]:
    rows = []
    for kind in LINK_KINDS:
        guess = features.link_kind_builtin(kind, root)
        if guess is False:
            rows.append(Check(kind, False, f"kernel module {kind} absent",
                              f"kernel module {kind} absent: for {kind} networks {VM}"))
        else:
            rows.append(Check(kind, None, "built in or loadable (not tried: needs root)",
                              "run labkit doctor as root to create one in a throwaway netns"))
    return rows


def tools(root: Path) -> list[Check]:
    # labkit-runtime is installed beside this interpreter (the venv), maybe not on PATH.
    venv = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = [n for n in ("labkit-runtime", "runc", "crun") if shutil.which(n, path=venv)]
    missing = [n for n in ("runc", "crun") if n not in found]
    return [Check("OCI runtimes", bool(found), " ".join(found) or "none found",
                  f"peers for labkit bench: apt-get install {' '.join(missing)}"
                  if missing else None)]

