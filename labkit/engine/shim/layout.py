"""What a shim keeps in its state dir, shims_dir()/<id>/, and how it writes it.

    ctl.sock     control socket (protocol.py), bound by the template before the fork
    io.sock      attach socket (wire format in supervisor.proto)
    config.json  the create request: bundle, rootfs mounts, terminal, stdin, log, labels
    state.json   {"status", "pid", "shim_pid", "started_at"}, rewritten at each transition
    exit.json    {"exit_status", "exited_at", "oom_killed"} once the init has exited
    shim.log     the shim's own stderr (diagnostics only)

Every file is replaced atomically (write a temp file, rename(2) it over the old one), so a
supervisor that restarts after a crash reads the old or the new version, never half of one.
No fsync(2): these files live under LABKIT_RUN, which is volatile by design (a tmpfs in
production; DESIGN "Where state lives"), and fsync only protects against losing the
machine, after which there is no container left to describe.  A crash of any *process*
(shim, supervisor, daemon) loses nothing that write(2) + rename(2) already did.  This
saves one fsync per transition on the start path (milliseconds on a disk-backed /run).
"""

from __future__ import annotations

import json
import os
from typing import Any

CTL, IO, CONFIG, STATE, EXIT, LOG = ("ctl.sock", "io.sock", "config.json", "state.json",
                                     "exit.json", "shim.log")


def short_sockets(sockets_root: str, cid: str) -> tuple[str, str]:
    """(ctl, io) socket paths that fit in sun_path (108 bytes, unix(7)) whatever the id.

    A Docker id alone is 64 characters, so <run>/shims/<id>/ctl.sock overflows under a
    longish LABKIT_RUN; containerd names its shim sockets /run/containerd/s/<sha256> for
    the same reason.  16 hex digits of SHA-256 of the id keep them unique and derivable."""
    import hashlib

    h = hashlib.sha256(cid.encode()).hexdigest()[:16]
    return os.path.join(sockets_root, f"{h}-ctl.sock"), os.path.join(sockets_root, f"{h}-io.sock")


def sockets(cfg: dict[str, Any]) -> tuple[str, str]:
    """The (ctl, io) paths of the shim described by ``cfg`` (config.json)."""
    d = str(cfg["dir"])
    return (str(cfg.get("ctl_sock") or os.path.join(d, CTL)),
            str(cfg.get("io_sock") or os.path.join(d, IO)))


def remove_sockets(cfg: dict[str, Any]) -> None:
    for path in sockets(cfg):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def write_atomic(path: str, obj: dict[str, Any], *, durable: bool = False) -> None:
    """rename(2) a temp file over ``path``; ``durable`` adds fsync(2) first (see above)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(obj).encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when missing or unreadable."""
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def remove_dir(d: str) -> None:
    """Remove a shim dir and its files (no subdirectories by design)."""
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        try:
            os.unlink(os.path.join(d, n))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
