"""Where the engine keeps its state (DESIGN.md, "Where state lives").

Persistent state lives under LABKIT_ROOT (default /var/lib/labkit) and runtime state
(sockets, shim state, runtime state) under LABKIT_RUN (default /run/labkit, a tmpfs that a
reboot clears). Tests and the swarm's per-node daemons point both elsewhere through the
environment, so every path is computed from these two functions, never hard-coded.
"""

from __future__ import annotations

import os
from pathlib import Path


def root() -> Path:
    """LABKIT_ROOT: images, containers/<id>/, volumes, networks, swarm."""
    return Path(os.environ.get("LABKIT_ROOT", "/var/lib/labkit"))


def run() -> Path:
    """LABKIT_RUN: sockets, shim and runtime state; lost on reboot by design."""
    return Path(os.environ.get("LABKIT_RUN", "/run/labkit"))


def daemon_socket() -> Path:
    """The Docker Engine API socket (DOCKER_HOST=unix:///run/labkit/labkit.sock)."""
    return Path(os.environ.get("LABKIT_SOCKET", str(run() / "labkit.sock")))


def supervisor_socket() -> Path:
    """The supervisor's gRPC socket."""
    return run() / "supervisor.sock"


def shims_dir() -> Path:
    """One directory per shim: its config, state and exit status.

    The shims' sockets live apart, in run()/s/, under short hashed names: a unix socket
    path must fit sun_path (108 bytes, unix(7)) and Docker's ids are 64 characters long.
    """
    return run() / "shims"


def runtime_root() -> Path:
    """labkit-runtime's state root (runc's --root)."""
    return run() / "runtime"


def containers_dir() -> Path:
    """The daemon's container records: containers/<id>/ (config, logs, bundle)."""
    return root() / "containers"


def images_dir() -> Path:
    """The image store (blobs/sha256, unpacked layers)."""
    return root() / "images"
