"""Read namespaces from /proc: which a process is in, whether two share them, lsns(8)'s table.

namespaces(7): /proc/PID/ns/KIND is a magic symlink whose target reads "KIND:[INODE]"; two
processes share a namespace iff device and inode of those files are equal.  Every reader
takes ``procfs=`` so unit tests can point it at a fake tree (symlinks "net:[123]").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from labkit import errors
from labkit.ns.spec import KINDS

__all__ = ["NsId", "NsRow", "compare", "list_namespaces", "namespaces"]

_LINK = re.compile(r"^(?P<kind>[a-z_]+):\[(?P<inode>\d+)\]$")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class NsId:
    """One namespace: its kind, its nsfs inode, and the nsfs device (None in a fake /proc)."""

    kind: str
    inode: int
    dev: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:[{self.inode}]"


@dataclass(frozen=True, slots=True)
class NsRow:
    """One row of lsns(8): a namespace, how many processes are in it, the lowest pid and its command."""

    kind: str
    inode: int
    nprocs: int
    pid: int
    command: str


def _read(link: Path, kind: str) -> NsId | None:
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None  # a kind this kernel lacks (time before 5.6), or the process exited
    m = _LINK.match(target)
    if m is None or m["kind"] != kind:
        return None
    try:
        dev: int | None = os.stat(link).st_dev
    except OSError:
        dev = None  # fake /proc: the symlink dangles
    return NsId(kind, int(m["inode"]), dev)


def namespaces(pid: int | str = "self", procfs: Path | str = PROC) -> dict[str, NsId]:
    """proc(5) /proc/PID/ns: the namespaces of ``pid`` ("self" by default), kind -> NsId.

    Kinds the kernel does not have are left out.  Raises NotFoundError if the process
    does not exist, SyscallPermissionError if its ns links may not be read.
    """
    nsdir = Path(procfs) / str(pid) / "ns"
    if not nsdir.is_dir():
        raise errors.NotFoundError("process", str(pid))
    out: dict[str, NsId] = {}
    for kind in KINDS:
        try:
            ns = _read(nsdir / kind, kind)
        except PermissionError as err:
            raise errors.from_errno(err.errno or 13, "readlink", str(nsdir / kind)) from None
        if ns is not None:
            out[kind] = ns
    return out


def compare(
    pid_a: int | str, pid_b: int | str = "self", procfs: Path | str = PROC
) -> dict[str, bool]:
    """For each kind both processes have: True if they share that namespace."""
    a, b = namespaces(pid_a, procfs), namespaces(pid_b, procfs)
    return {k: a[k] == b[k] for k in KINDS if k in a and k in b}


def _command(piddir: Path) -> str:
    try:
        raw = (piddir / "cmdline").read_bytes()
    except OSError:
        raw = b""
    if raw:
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    try:
        return "[" + (piddir / "comm").read_text().strip() + "]"  # kernel threads
    except OSError:
        return ""


def list_namespaces(procfs: Path | str = PROC, kinds: tuple[str, ...] = KINDS) -> list[NsRow]:
    """lsns(8): every namespace some process is in, sorted by kind (NS_FLAGS order), inode.

    Processes that exit while we read, or whose links we may not read, are skipped.
    """
    root = Path(procfs)
    seen: dict[tuple[str, int], list[int]] = {}
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        for kind in kinds:
            try:
                ns = _read(entry / "ns" / kind, kind)
            except OSError:
                continue
            if ns is not None:
                seen.setdefault((kind, ns.inode), []).append(pid)
    rows = []
    for (kind, inode), pids in seen.items():
        low = min(pids)
        rows.append(NsRow(kind, inode, len(pids), low, _command(root / str(low))))
    rows.sort(key=lambda r: (KINDS.index(r.kind), r.inode))
    return rows
