"""The first image: a root filesystem made from the host's busybox-static (Debian package).

One static binary plus a symlink per applet is a complete userland for teaching and tests,
with no registry needed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from labkit import errors
from labkit.engine.images.diff import write_layer
from labkit.engine.images.layers import LayerDigests

BUSYBOX = Path("/bin/busybox")

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applet paths this busybox provides (``busybox --list-full``), e.g. ``bin/sh``."""
    if not busybox.exists():
        raise errors.UnsupportedError(
            "busybox", f"{busybox} not found", hint="apt-get install busybox-static")
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.split() if line]


def _has_interpreter(path: Path) -> bool:
    """True when the ELF file has a PT_INTERP program header, i.e. is dynamically linked."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2:  # 64-bit ELF only (elf(5))
            return False
        order = "<" if ident[5] == 1 else ">"
        phoff, = struct.unpack_from(order + "Q", ident, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    PT_INTERP = 3
    return any(struct.unpack_from(order + "I", table, i * phentsize)[0] == PT_INTERP
               for i in range(phnum))


def build_rootfs(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """Lay a busybox root filesystem out at ``dest`` (created; must be empty or absent).

    Raises UnsupportedError when busybox is missing or not static (a dynamic one would need
    the host's libc inside the rootfs).
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise errors.AlreadyExistsError("rootfs", str(dest), hint="give an empty or new directory")
    names = applets(busybox)
    if _has_interpreter(busybox):
        raise errors.UnsupportedError(
            "busybox", f"{busybox} is dynamically linked", hint="apt-get install busybox-static")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "run", "var/tmp"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(busybox, dest / "bin/busybox")
    for name in names:
        link = dest / name
        if name == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        # Relative links keep the rootfs valid wherever it is mounted.
        link.symlink_to(os.path.relpath(dest / "bin/busybox", link.parent))
    (dest / "etc/passwd").write_text(_PASSWD)
    (dest / "etc/group").write_text(_GROUP)
    (dest / "etc/hostname").write_text("labkit\n")
    (dest / "etc/hosts").write_text("127.0.0.1\tlocalhost\n")
    (dest / "etc/resolv.conf").write_text("")
    return dest


def pack_rootfs_layer(out: Path, busybox: Path = BUSYBOX, *, compression: str = "gzip",
                      mtime: int | None = 0) -> LayerDigests:
    """Build the busybox rootfs in a temporary directory and pack it as an OCI layer blob.

    ``mtime=0`` (the default) makes the blob reproducible: the same busybox always gives the
    same diffID.  Returns the layer's digests (labkit.engine.images.diff.write_layer).
    """
    with tempfile.TemporaryDirectory(prefix="lk-busybox-") as tmp:
        root = build_rootfs(Path(tmp) / "rootfs", busybox)
        return write_layer(root, Path(out), compression=compression, mtime=mtime)
