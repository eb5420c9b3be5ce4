"""Isolation measured: what a process in one new namespace sees, beside what its creator sees.

For each namespace kind (namespaces(7): pid, mnt, uts, net, ipc, user, cgroup, time) an
*insider* is spawned with labkit.ns in a new namespace of that kind, and both sides read
the same eight things while it is alive:

=========== ======================================================================
processes   pids in /proc and its own pid (pid_namespaces(7))
hostname    uname nodename (uts_namespaces(7))
mounts      /proc/self/mountinfo: how many, and the mount id of "/" (mount_namespaces(7))
interfaces  if_nameindex(3), answered by the netns of the caller (network_namespaces(7))
users       its uid and /proc/self/uid_map; outside, the uid it has there (user_namespaces(7))
ipc         whether a SysV shm segment and msg queue made outside are in /proc/sysvipc
clocks      CLOCK_MONOTONIC / CLOCK_BOOTTIME inside minus outside (time_namespaces(7))
cgroup      its memory cgroup path in /proc/self/cgroup and as the host reads it
=========== ======================================================================

A pid namespace is read through a fresh /proc, so the pid insider also gets a mount
namespace (a runtime does the same).  An insider with its own mount namespace mounts a tmpfs
on a scratch directory, which the outside must not see.  The cgroup insider is moved into
an ``lk-iso-*`` cgroup and then unshares its cgroup namespace itself (the namespace's root
is the cgroup the process is in at unshare(2), cgroup_namespaces(7)); every insider is in
that cgroup, so the outside path is the same for all.

Every object made (the SysV segment and queue, the cgroup, the scratch directory, the
insiders) is removed before ``measure`` returns, also on error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from labkit import errors
from labkit.cgroups import Cgroup, open_cgroup
from labkit.ns import KINDS, IdMap, NamespaceSpec, spawn

__all__ = [
    "ASPECTS",
    "PROMISES",
    "SPECS",
    "IsolationRow",
    "SysvObjects",
    "measure",
    "rows_for",
    "to_dataframe",
]

ASPECTS = ("processes", "hostname", "mounts", "interfaces", "users", "ipc", "clocks", "cgroup")
DAY = 86400
_MAP = (IdMap(0, 100000, 65536),)

# The aspect each kind exists to isolate: the diagonal of the kind x aspect table.
PROMISES = {"pid": "processes", "mnt": "mounts", "uts": "hostname", "net": "interfaces",
            "ipc": "ipc", "user": "users", "cgroup": "cgroup", "time": "clocks"}

# What each insider is given; "cgroup" makes its own namespace after it was moved (above).
SPECS: dict[str, NamespaceSpec] = {
    "pid": NamespaceSpec(new=frozenset({"pid", "mnt"})),
    "mnt": NamespaceSpec(new=frozenset({"mnt"})),
    "uts": NamespaceSpec(new=frozenset({"uts"}), hostname="lk-iso-uts"),
    "net": NamespaceSpec(new=frozenset({"net"})),
    "ipc": NamespaceSpec(new=frozenset({"ipc"})),
    "user": NamespaceSpec(new=frozenset({"user"}), uid_map=_MAP, gid_map=_MAP),
    "cgroup": NamespaceSpec(),
    "time": NamespaceSpec(new=frozenset({"time"}),
                          time_offsets={"monotonic": DAY, "boottime": 2 * DAY}),
}

# The insider: stdlib only (-S), so it runs as any uid; one JSON line out, then it waits for
# stdin to close so the outside reads while its mounts and namespaces are still there.
_INSIDER = r"""
import json, os, socket, subprocess, sys, time
opts = json.loads(sys.argv[1])
sys.stdin.readline()                       # the gate: moved into the cgroup by now
if opts["unshare_cgroup"]:
    from labkit._sys import consts, syscalls
    syscalls.unshare(consts.NS_FLAGS["cgroup"])
if opts["mount_proc"]:
    subprocess.run(["mount", "-t", "proc", "proc", "/proc"], check=True)
if opts["mount_tmp"]:
    subprocess.run(["mount", "-t", "tmpfs", "lk-iso", opts["mount_tmp"]], check=True)
def sysv(name):
    with open("/proc/sysvipc/" + name) as f:
        return [l.split()[:2] for l in f.readlines()[1:]]
mi = [l.split() for l in open("/proc/self/mountinfo")]
out = {
  "npids": sum(1 for d in os.listdir("/proc") if d.isdigit()), "pid": os.getpid(),
  "hostname": socket.gethostname(),
  "nmounts": len(mi), "root_mount": next(int(f[0]) for f in mi if f[4] == "/"),
  "ifaces": sorted(n for _, n in socket.if_nameindex()),
  "uid": os.getuid(), "uid_map": " ".join(open("/proc/self/uid_map").read().split()),
  "shm": sysv("shm"), "msg": sysv("msg"),
  "cgroup": open("/proc/self/cgroup").read(),
  "monotonic": time.clock_gettime(time.CLOCK_MONOTONIC),
  "boottime": time.clock_gettime(time.CLOCK_BOOTTIME),
}
print(json.dumps(out), flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True, slots=True)
class IsolationRow:
    """One aspect seen from inside a new ``kind`` namespace and from outside it.

    ``created`` lists the namespace kinds the insider got ("pid+mnt" for pid), ``isolated``
    says whether the insider's view differs in the way that namespace promises.
    """

    kind: str
    created: str
    aspect: str
    inside: str
    outside: str
    isolated: bool


@dataclass(frozen=True, slots=True)
class SysvObjects:
    """A SysV shared memory segment and message queue made outside (ipcmk(1)): (key, id)."""

    shm: tuple[str, str]
    msg: tuple[str, str]


def _cgroup_path(text: str) -> str:
    """The memory controller's path in a /proc/PID/cgroup text (v1), else the v2 "0::" one."""
    paths = {}
    for line in text.splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            paths[c] = path
    return paths.get("memory", paths.get("", "?"))


def _mountinfo(pid: int | str = "self") -> tuple[int, int, list[str]]:
    with open(f"/proc/{pid}/mountinfo") as f:
        mi = [line.split() for line in f]
    root = next(int(x[0]) for x in mi if x[4] == "/")
    return len(mi), root, [x[4] for x in mi]


def _outside(insider_pid: int) -> dict[str, Any]:
    """The same readings, taken by the caller (the host side) while the insider lives."""
    n, root, points = _mountinfo()
    with open("/proc/self/uid_map") as f:
        uid_map = " ".join(f.read().split())
    with open(f"/proc/{insider_pid}/cgroup") as f:
        insider_cgroup = f.read()
    return {
        "monotonic": time.clock_gettime(time.CLOCK_MONOTONIC),
        "boottime": time.clock_gettime(time.CLOCK_BOOTTIME),
        "npids": len(psutil.pids()), "hostname": socket.gethostname(),
        "nmounts": n, "root_mount": root, "points": points,
        "ifaces": sorted(name for _, name in socket.if_nameindex()),
        "uid": os.getuid(), "uid_map": uid_map,
        "insider_uid": psutil.Process(insider_pid).uids().real,
        "cgroup": insider_cgroup,
    }


def rows_for(kind: str, created: str, inside: dict[str, Any], outside: dict[str, Any],
             insider_pid: int, objs: SysvObjects, scratch: str | None) -> list[IsolationRow]:
    """Shape one insider's and the outside's readings into the eight rows (pure)."""
    def row(aspect: str, i: str, o: str, iso: bool) -> IsolationRow:
        return IsolationRow(kind, created, aspect, i, o, iso)

    shm_in = [objs.shm[0], objs.shm[1]] in inside["shm"]
    msg_in = [objs.msg[0], objs.msg[1]] in inside["msg"]
    mono = inside["monotonic"] - outside["monotonic"]
    boot = inside["boottime"] - outside["boottime"]
    tmp_out = scratch is not None and scratch in outside["points"]
    return [
        row("processes", f"{inside['npids']} pids, its own is {inside['pid']}",
            f"{outside['npids']} pids, the insider is {insider_pid}",
            inside["pid"] != insider_pid),
        row("hostname", inside["hostname"], outside["hostname"],
            inside["hostname"] != outside["hostname"]),
        row("mounts", f"{inside['nmounts']} mounts, / is mount {inside['root_mount']}",
            f"{outside['nmounts']} mounts, / is mount {outside['root_mount']}"
            + (", sees its tmpfs" if tmp_out else ""),
            inside["root_mount"] != outside["root_mount"] and not tmp_out),
        row("interfaces", ",".join(inside["ifaces"]), ",".join(outside["ifaces"]),
            inside["ifaces"] != outside["ifaces"]),
        row("users", f"uid {inside['uid']}, uid_map {inside['uid_map']}",
            f"uid {outside['uid']}, uid_map {outside['uid_map']}; the insider is uid "
            f"{outside['insider_uid']}", inside["uid_map"] != outside["uid_map"]),
        row("ipc", f"shm {'seen' if shm_in else 'not seen'}, msg {'seen' if msg_in else 'not seen'}",
            f"shm id {objs.shm[1]}, msg id {objs.msg[1]}", not shm_in and not msg_in),
        row("clocks", f"monotonic {round(mono):+d} s, boottime {round(boot):+d} s", "+0 s",
            abs(mono) >= 1 or abs(boot) >= 1),
        row("cgroup", _cgroup_path(inside["cgroup"]), _cgroup_path(outside["cgroup"]),
            _cgroup_path(inside["cgroup"]) != _cgroup_path(outside["cgroup"])),
    ]


def _ipcmk(flag: str) -> str:
    out = subprocess.run(["ipcmk", flag], capture_output=True, text=True, check=True).stdout
    m = re.search(r"id:\s*(\d+)", out)
    if m is None:
        raise errors.LabkitError(f"ipcmk {flag}: no id in {out!r}")
    return m.group(1)


def _key_of(table: str, ident: str) -> str:
    with open(f"/proc/sysvipc/{table}") as f:
        for line in f.readlines()[1:]:
            key, i = line.split()[:2]
            if i == ident:
                return key
    raise errors.NotFoundError(f"SysV {table}", ident)


def _make_sysv() -> SysvObjects:
    if shutil.which("ipcmk") is None:
        raise errors.UnsupportedError("ipcmk", "not on PATH", hint="apt-get install util-linux")
    shm = _ipcmk("-M4096")
    try:
        msg = _ipcmk("-Q")
    except BaseException:
        subprocess.run(["ipcrm", "-m", shm], check=False)
        raise
    return SysvObjects((_key_of("shm", shm), shm), (_key_of("msg", msg), msg))


def _insider(kind: str, cg: Cgroup, objs: SysvObjects, scratch: str) -> list[IsolationRow]:
    spec = SPECS[kind]
    has_mnt = "mnt" in spec.new
    opts = {"unshare_cgroup": kind == "cgroup", "mount_proc": kind == "pid",
            "mount_tmp": scratch if has_mnt else None}
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(errors.__file__)))}
    child = spawn(spec, [sys.executable, "-S", "-c", _INSIDER, json.dumps(opts)], env=env,
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdin is not None and child.stdout is not None
        cg.add(child.pid)
        child.stdin.write(b"go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            err = child.stderr.read() if child.stderr is not None else b""
            raise errors.LabkitError(f"the {kind} insider said nothing: "
                                     f"{err.decode(errors='replace').strip()}")
        inside = json.loads(line)
        outside = _outside(child.pid)
        created = "+".join(sorted(spec.new)) or "cgroup (unshared inside)"
        return rows_for(kind, created, inside, outside, child.pid, objs,
                        scratch if has_mnt else None)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for f in (child.stdout, child.stderr):
            if f is not None:
                f.close()


def measure(kinds: Iterable[str] = KINDS, *, cgroup: str = "") -> list[IsolationRow]:
    """Spawn one insider per namespace kind and return 8 rows per kind (see the module doc).

    ``cgroup`` names the cgroup the insiders are put in (default lk-iso-PID).

    Raises:
        InvalidArgumentError: an unknown kind.
        AlreadyExistsError: the cgroup exists.
        UnsupportedError: a namespace kind or ipcmk(1) is missing.
    """
    from labkit._sys import features

    kinds = list(kinds)
    for k in kinds:
        if k not in SPECS:
            raise errors.InvalidArgumentError("kinds", f"unknown namespace kind {k!r}",
                                              hint=f"one of: {', '.join(KINDS)}")
        if not features.has_namespace(k) or (k == "user" and not features.userns_allowed()):
            raise errors.UnsupportedError(f"{k} namespaces", "this kernel cannot make them",
                                          hint="leave the kind out, or use the VM: labkit vm")
    cg = open_cgroup(cgroup or f"lk-iso-{os.getpid()}")
    cg.create(exist_ok=False)
    rows: list[IsolationRow] = []
    try:
        objs = _make_sysv()
        try:
            scratch = tempfile.mkdtemp(prefix="lk-iso-")
            try:
                for k in kinds:
                    rows += _insider(k, cg, objs, scratch)
            finally:
                os.rmdir(scratch)  # the tmpfs lived only in the insiders' mount namespaces
        finally:
            subprocess.run(["ipcrm", "-m", objs.shm[1], "-q", objs.msg[1]], check=False,
                           capture_output=True)
    finally:
        try:
            cg.kill()
        finally:
            cg.remove()
    return rows


def to_dataframe(rows: Iterable[IsolationRow], column: str = "isolated") -> Any:
    """The rows as a kind x aspect table of ``column`` ("isolated", "inside" or "outside")."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    df = pd.DataFrame([{"kind": r.kind, "aspect": r.aspect, column: getattr(r, column)}
                       for r in rows])
    return df.pivot(index="kind", columns="aspect", values=column).reindex(
        columns=list(ASPECTS))
