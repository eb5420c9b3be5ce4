"""A container's OCI bundle: config.json and the /etc files, read from its image's layers.

Stateless: ``Bundles`` only holds what every bundle needs (the image store, the static init
binary for --init).  Files (passwd, group) are looked up in the layers top first, as the
container's overlay would show them.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine import paths
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.store import ContainerStore
from labkit.engine.images.store import ImageStore
from labkit.engine.networks.endpoints import NetPlan

__all__ = ["Bundles", "layer_lookup"]


def layer_lookup(dirs: list[Path]) -> Callable[[str], str | None]:
    """Read a file as the container would see it: the first of ``dirs`` (top first) that has
    it.  Each layer is read as its own root (images._rootdir, RESOLVE_IN_ROOT): a symlink in
    an image (``etc -> /etc``, ``passwd -> /etc/shadow``) resolves inside that layer, never
    on the host, whose files an image must not get the daemon to read."""
    from labkit.engine.images._rootdir import RootDir

    def read(root: Path, path: str) -> str | None:
        try:
            rd = RootDir(str(root), follow=True)
        except OSError:
            return None
        try:
            dirfd, name = rd.parent(path)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=dirfd)
            finally:
                os.close(dirfd)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return None  # a fifo or device would block or leak: not a passwd file
                return f.read(1 << 20).decode(errors="replace")
        except OSError:
            return None
        finally:
            rd.close()

    def lookup(path: str) -> str | None:
        for d in dirs:
            text = read(d, path)
            if text is not None:
                return text
        return None
    return lookup


class Bundles:
    """Translate records into OCI bundles (ocispec.translate) against the image store."""

    def __init__(self, images: ImageStore, init_binary: str | None = None,
                 store: ContainerStore | None = None) -> None:
        self.images = images
        self.init_binary = init_binary
        self.store = store  # resolves PidMode/IpcMode container:NAME (ocihost.store_peer)

    def layers(self, rec: ContainerRecord) -> list[Path]:
        """The container's rootfs layers, top first (its own upper dir, then the image's)."""
        return [Path(rec.dir) / "upper", *reversed(self.images.for_container(rec.image_id).layers)]

    def oci_config(self, rec: ContainerRecord, write: bool = True,
                   plan: NetPlan | None = None) -> dict[str, Any]:
        """Translate the record into config.json; write it (and the /etc files) when asked.
        ``plan`` is what the network service made for this start (networks/endpoints.py):
        the namespace to join, /etc/hosts and resolv.conf, the --link environment."""
        from labkit.engine.containers.ocihost import store_peer
        from labkit.engine.containers.ocispec import etc_files_text, translate
        image = self.images.for_container(rec.image_id)
        d = Path(rec.dir)
        etc = etc_files_text(rec.id, rec.config, rec.host_config)
        if plan is not None:
            etc["/etc/hosts"], etc["/etc/resolv.conf"] = plan.hosts, plan.resolv
        etc_files = {}
        for dest, text in etc.items():
            if write:
                (d / dest.rsplit("/", 1)[1]).write_text(text)
            etc_files[dest] = str(d / dest.rsplit("/", 1)[1])
        init = self.init_binary if rec.host_config.get("Init") else None
        if rec.host_config.get("Init") and not init:
            raise errors.UnsupportedError("HostConfig.Init", "no static init binary found",
                                          hint="apt-get install tini (tini-static)")
        peer = store_peer(self.store, running=write) if self.store is not None else None
        config = rec.config
        if plan is not None and plan.env:  # --link variables: before the container's own
            config = {**config, "Env": [*plan.env, *(config.get("Env") or [])]}
        spec = translate(rec.id, config, rec.host_config, image.container_config,
                         layer_lookup(self.layers(rec)), etc_files=etc_files, init_binary=init,
                         peer=peer, netns=plan.netns if plan is not None else None)
        if rec.mounts:  # -v / --mount / VOLUME: over whatever else sits at that destination
            from labkit.engine.volumes.oci import to_oci
            dests = {m["Destination"] for m in rec.mounts}
            spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in dests]
            spec["mounts"] += to_oci(rec.mounts)
        if write:  # compact: json's C encoder (indent= falls back to the Python one)
            rec.bundle.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            paths.write_secret(rec.bundle / "config.json", json.dumps(spec).encode())
        return spec

    def exec_process(self, rec: ContainerRecord, cmd: list[str], env: list[str], tty: bool,
                     workdir: str, user: str) -> dict[str, Any]:
        """An exec's OCI process: the container's, with the exec's command, env, cwd, user."""
        from labkit.engine.containers.ocispec import merge_env, resolve_user
        spec = json.loads((rec.bundle / "config.json").read_text())
        proc: dict[str, Any] = spec["process"]
        proc["env"] = merge_env(proc["env"], env, {})
        proc["args"] = cmd
        proc["terminal"] = tty
        if workdir:
            proc["cwd"] = workdir
        if user:
            proc["user"] = resolve_user(user, layer_lookup(self.layers(rec)))
        return proc
