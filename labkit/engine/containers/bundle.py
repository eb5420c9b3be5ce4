"""A container's OCI bundle: config.json and the /etc files, read from its image's layers.

Stateless: ``Bundles`` only holds what every bundle needs (the image store, the static init
binary for --init).  Files are looked up in the layers top first, as the container's
overlay would show them (runc's LookPath, in the image).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.images.store import ImageStore

__all__ = ["Bundles", "find_executable", "layer_lookup"]


def layer_lookup(dirs: list[Path]) -> Callable[[str], str | None]:
    """Read a file as the container would see it: the first of ``dirs`` (top first)."""
    def lookup(path: str) -> str | None:
        for d in dirs:
            p = d / path.lstrip("/")
            if p.is_file():
                try:
                    return p.read_text(errors="replace")
                except OSError:
                    return None
        return None
    return lookup


def find_executable(name: str, env: list[str], dirs: list[Path]) -> bool:
    """Whether ``name`` resolves in the rootfs layers ``dirs`` (runc's LookPath, in the image)."""
    def exists(path: str) -> bool:
        for d in dirs:
            p = d / path.lstrip("/")
            if os.path.lexists(p):
                return True
        return False
    if "/" in name:
        return exists(name)
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
    return any(exists(os.path.join(p or "/", name)) for p in path.split(":"))


class Bundles:
    """Translate records into OCI bundles (ocispec.translate) against the image store."""

    def __init__(self, images: ImageStore, init_binary: str | None = None) -> None:
        self.images = images
        self.init_binary = init_binary

    def layers(self, rec: ContainerRecord) -> list[Path]:
        """The container's rootfs layers, top first (its own upper dir, then the image's)."""
        return [Path(rec.dir) / "upper", *reversed(self.images.get(rec.image_id).layers)]

    def oci_config(self, rec: ContainerRecord, write: bool = True) -> dict[str, Any]:
        """Translate the record into config.json; write it (and the /etc files) when asked."""
        from labkit.engine.containers.ocispec import translate
        image = self.images.get(rec.image_id)
        d = Path(rec.dir)
        hostname = rec.config.get("Hostname") or (
            socket.gethostname() if rec.host_config.get("NetworkMode") == "host" else rec.id[:12])
        etc = {"/etc/hostname": f"{hostname}\n", "/etc/resolv.conf": "",
               "/etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"}
        etc_files = {}
        for dest, text in etc.items():
            if write:
                (d / dest.rsplit("/", 1)[1]).write_text(text)
            etc_files[dest] = str(d / dest.rsplit("/", 1)[1])
        init = self.init_binary if rec.host_config.get("Init") else None
        if rec.host_config.get("Init") and not init:
            raise errors.UnsupportedError("HostConfig.Init", "no static init binary found",
                                          hint="apt-get install tini (tini-static)")
        spec = translate(rec.id, rec.config, rec.host_config, image.container_config,
                         layer_lookup(self.layers(rec)), etc_files=etc_files, init_binary=init)
        if write:  # compact: json's C encoder (indent= falls back to the Python one)
            rec.bundle.mkdir(parents=True, exist_ok=True)
            (rec.bundle / "config.json").write_text(json.dumps(spec))
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
