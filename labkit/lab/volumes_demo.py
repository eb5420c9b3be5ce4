"""Notebook 06 helpers: volumes seen from the API, from the host's disk and from inside a
container's mount namespace (/proc/PID/mountinfo, proc(5)); bind vs volume vs tmpfs compared.

Everything goes through labkit's engine client (the Docker Engine API), as the Docker CLI
would; the only things read directly are the kernel's view (/proc) and the host's disk.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.engine.client import Client
from labkit.engine.client.run import RunResult, run
from labkit.engine.client.streams import demux_all

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MountLine", "MountRow", "check_exercise", "compare_mounts", "container_pid",
           "host_files", "mount_line", "plot_mounts", "sh", "start", "volume_rows"]

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class MountLine:
    """One line of /proc/PID/mountinfo (proc(5)): what the kernel has mounted where."""

    mount_id: int
    root: str          # the path inside the source filesystem that is mounted
    mount_point: str   # where, inside the process's mount namespace
    options: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal (proc(5))
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_line(pid: int, mount_point: str) -> MountLine:
    """The mount at ``mount_point`` as process ``pid`` sees it (the last one wins, as the
    kernel's lookup does when mounts are stacked)."""
    found = None
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            a, b = left.split(), right.split()
            if _unescape(a[4]) == mount_point:
                found = MountLine(int(a[0]), _unescape(a[3]), mount_point, a[5], b[0],
                                  _unescape(b[1]))
    if found is None:
        raise errors.NotFoundError("mount", f"{mount_point} in /proc/{pid}/mountinfo")
    return found


def container_pid(client: Client, cid: str) -> int:
    """The host pid of a running container's first process (State.Pid)."""
    pid = int(client.containers.inspect(cid)["State"]["Pid"])
    if pid <= 0:
        raise errors.InvalidStateError("not running", "inspect", what=f"container {cid[:12]}")
    return pid


def start(client: Client, name: str, mounts: list[dict[str, Any]],
          cmd: tuple[str, ...] = ("sleep", "600")) -> str:
    """`docker run -d --name NAME --mount ... busybox sleep 600`: the container's ID."""
    cid = str(client.containers.create(
        {"Image": "busybox", "Cmd": list(cmd),
         "HostConfig": {"NetworkMode": "none", "Mounts": mounts}}, name=name)["Id"])
    client.containers.start(cid)
    return cid


def sh(client: Client, cid: str, script: str) -> tuple[int, str]:
    """`docker exec CID sh -c SCRIPT`: (exit status, stdout + stderr as text)."""
    eid = client.execs.create(cid, ["sh", "-c", script])
    hj = client.execs.start(eid)
    chunks = []
    while data := hj.recv():
        chunks.append(data)
    hj.close()
    out, err = demux_all(b"".join(chunks))
    return int(client.execs.inspect(eid)["ExitCode"]), (out + err).decode()


def volume_rows(client: Client, prefix: str = "") -> list[dict[str, Any]]:
    """`docker volume ls` as rows (name, driver, mountpoint, labels), optionally by prefix."""
    return [{"name": v["Name"], "driver": v["Driver"], "mountpoint": v["Mountpoint"],
             "labels": v.get("Labels") or {}}
            for v in client.volumes.list() if v["Name"].startswith(prefix)]


def host_files(path: str | Path) -> dict[str, str]:
    """The files in a host directory and their text (``ls -l`` + ``cat`` of the seed)."""
    p = Path(path)
    return {f.name: f.read_text(errors="replace") for f in sorted(p.iterdir()) if f.is_file()}


# -- bind vs volume vs tmpfs vs the container's own layer ---------------------------------------

@dataclass(frozen=True, slots=True)
class MountRow:
    """One kind of storage: where a container's write landed and whether it outlived it."""

    kind: str
    host_path: str       # where the bytes are on the host ("(RAM)" for tmpfs)
    mb_per_s: float      # timed inside the container around dd conv=fsync (10 ms steps)
    bytes_on_disk: int   # measured on the host after the write, before the container goes
    survives_rm: bool    # the file is still on the host after `docker rm`


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _one(client: Client, kind: str, mount: dict[str, Any] | None, target: str, size_mib: int,
         root: Path, host: Path | None) -> MountRow:
    hc: dict[str, Any] = {"NetworkMode": "none", "Mounts": [mount] if mount else []}
    # busybox's dd prints no timing, and clock reads other than /proc/uptime (10 ms steps)
    # are refused by the seccomp profile (adjtimex), so the container reads it around dd.
    script = (f"a=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero of={target}/blob bs=1M "
              f"count={size_mib} conv=fsync 2>/dev/null; b=$(cut -d' ' -f1 /proc/uptime); "
              'echo "$a $b"')
    res: RunResult = run(client, "busybox", ["sh", "-c", script], remove=False,
                         HostConfig=hc)
    try:
        if res.status != 0:
            raise errors.ConflictError(f"dd in the {kind} container failed: {res.stderr!r}")
        a, b = (float(x) for x in res.stdout.split())
        secs = max(b - a, 0.01)  # at least one tick of /proc/uptime
        if host is None and kind == "container layer":
            host = root / "containers" / res.id / "upper" / target.lstrip("/")
        on_disk = _dir_bytes(host) if host is not None and host.exists() else 0
    finally:
        client.containers.remove(res.id, force=True)
    survives = host is not None and (host / "blob").exists()
    where = "(RAM: tmpfs)" if kind == "tmpfs" else str(host)
    mbps = size_mib * MIB / 1e6 / secs
    return MountRow(kind, where, round(mbps, 1), on_disk, survives)


def compare_mounts(client: Client, root: Path, volume: str, size_mib: int = 16
                   ) -> list[MountRow]:
    """Write ``size_mib`` MiB with dd (fsync) through four kinds of storage, one container
    each: a named volume, a bind mount of a host dir, a tmpfs, the container's own layer
    (overlay upper).  ``root`` is the engine's LABKIT_ROOT; ``volume`` is created here (if
    missing) and left for the caller to remove.  The bind dir is temporary and removed."""
    vol = client.volumes.create(volume)
    bind = Path(tempfile.mkdtemp(prefix="lk-nb-bind-"))
    try:
        return [
            _one(client, "volume", {"Type": "volume", "Source": volume, "Target": "/v"}, "/v",
                 size_mib, root, Path(vol["Mountpoint"])),
            _one(client, "bind", {"Type": "bind", "Source": str(bind), "Target": "/b"}, "/b",
                 size_mib, root, bind),
            _one(client, "tmpfs", {"Type": "tmpfs", "Target": "/t",
                                   "TmpfsOptions": {"SizeBytes": 4 * size_mib * MIB}},
                 "/t", size_mib, root, None),
            _one(client, "container layer", None, "/root", size_mib, root, None),
        ]
    finally:
        shutil.rmtree(bind, ignore_errors=True)


def plot_mounts(rows: list[MountRow], ax: tuple[Axes, Axes] | None = None) -> tuple[Axes, Axes]:
    """Two bars per kind: dd's throughput, and the bytes that landed on the host's disk."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        ax = (axes[0], axes[1])
    kinds = [r.kind for r in rows]
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:grey"][:len(rows)]
    ax[0].bar(kinds, [r.mb_per_s for r in rows], color=colours)
    ax[0].set_ylabel("MB/s (dd, conv=fsync)")
    ax[0].set_title("write throughput inside the container")
    ax[1].bar(kinds, [r.bytes_on_disk / MIB for r in rows], color=colours)
    ax[1].set_ylabel("MiB on the host's disk")
    ax[1].set_title("where the bytes landed")
    for a in ax:
        a.tick_params(axis="x", labelrotation=15)
    return ax


# -- the exercise -----------------------------------------------------------------------------

def check_exercise(client: Client, volume: str, expected: str = "hello volumes") -> bool:
    """The exercise: volume ``volume`` holds /greeting with ``expected`` in it, written by a
    container that is gone.  Prints PASS, or a hint for the first thing missing."""
    def hint(text: str) -> bool:
        print(f"not yet: {text}")
        return False

    try:
        vol = client.volumes.inspect(volume)
    except errors.NotFoundError:
        return hint(f"no volume {volume!r}: create it (client.volumes.create) or let the "
                    "first --mount create it")
    f = Path(vol["Mountpoint"]) / "greeting"
    if not f.exists():
        return hint(f"{f} does not exist: mount the volume (Target /data, say) and write "
                    "the file at the volume's root, e.g. /data/greeting")
    if f.read_text().strip() != expected:
        return hint(f"/greeting holds {f.read_text().strip()!r}, not {expected!r}")
    users = [c["Names"][0] for c in client.containers.list(all=True)
             if any(m.get("Name") == volume for m in c.get("Mounts") or [])]
    if users:
        return hint(f"containers still use it: {users}; remove them (the data stays)")
    print("PASS: the data outlived the container that wrote it")
    return True
