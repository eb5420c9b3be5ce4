"""Where the engine keeps its state (DESIGN.md, "Where state lives").

Persistent state lives under LABKIT_ROOT (default /var/lib/labkit) and runtime state
(sockets, shim state, runtime state) under LABKIT_RUN (default /run/labkit, a tmpfs that a
reboot clears). Tests and the swarm's per-node daemons point both elsewhere through the
environment, so every path is computed from these two functions, never hard-coded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Who may see what (the CVE-2021-41091 lesson: a host user must not walk into a container's
# upper dir and run a setuid file made there, nor read config.json, which holds Env).
# LABKIT_ROOT and LABKIT_RUN may be crossed (0711: clients reach the socket by its name) but
# not listed; everything per container, per image and per runtime state is the owner's only.
# The directories that must stay readable to a container's non-root user (a layer's own
# root, the upper dir, the rootfs mount point) are *below* these and keep their modes: the
# kernel reaches them through the overlay mount, not by walking these host paths.
ROOT_MODE = 0o711
PRIVATE_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600


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


def networks_dir() -> Path:
    """The daemon's networks (one 0600 JSON record each) and the IPAM state."""
    return root() / "networks"


def netns_dir() -> Path:
    """Containers' network namespaces, bind-mounted as files (Docker's /run/docker/netns)."""
    return run() / "netns"


def make_dir(path: Path, mode: int) -> Path:
    """Make ``path`` (and missing parents) and give it exactly ``mode``.

    mkdir(2) creates it with ``mode`` masked by the umask, never wider, so there is no
    moment when others may enter; the chmod then only restores bits a umask removed (a
    0711 under umask 077) or narrows a directory an older labkit made 0755.
    """
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    return path


def secure_state() -> None:
    """Create the state roots with their modes, and fix an existing install's (daemon start).

    LABKIT_ROOT and LABKIT_RUN 0711; containers/, images/ and every containers/<id>/ 0700;
    the files there that carry secrets (config.v2.json, bundle/config.json, the json-file
    logs) 0600.  Symlinks are never followed: these are the owner's own directories.
    """
    make_dir(root(), ROOT_MODE)
    make_dir(run(), ROOT_MODE)
    make_dir(containers_dir(), PRIVATE_DIR_MODE)
    make_dir(images_dir(), PRIVATE_DIR_MODE)
    for d in containers_dir().iterdir():
        if d.is_symlink() or not d.is_dir():
            continue
        os.chmod(d, PRIVATE_DIR_MODE)
        secrets = [d / "config.v2.json", d / "bundle" / "config.json", *d.glob("*-json.log*")]
        for f in secrets:
            if not f.is_symlink() and f.is_file():
                os.chmod(f, SECRET_FILE_MODE)


def write_secret(path: Path, data: bytes) -> None:
    """Write ``path`` as a 0600 file, atomically (a temp file made 0600 by open(2), then
    rename(2)): an older, wider file of that name is replaced, not reused with its mode."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 SECRET_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
