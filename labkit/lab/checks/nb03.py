"""Checks of notebook 03's exercises: predictions compared with a fresh lk overlay."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.lab.exercises import Namespace, defined, exercise, need

KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
         stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo",
         stat.S_IFSOCK: "socket"}


@contextmanager
def overlay(files: dict[str, bytes]) -> Iterator[tuple[Path, Path]]:
    """A one-lower overlay in a lk-ex-03-* temp dir holding ``files``: (merged, upper).
    Unmounted and removed on the way out."""
    from labkit.engine.images import mount_overlay, unmount

    work = Path(tempfile.mkdtemp(prefix="lk-ex-03-"))
    lower, upper, ovl, merged = (work / d for d in ("lower", "upper", "work", "merged"))
    try:
        for d in (lower, upper, ovl, merged):
            d.mkdir()
        for name, data in files.items():
            (lower / name).write_bytes(data)
        mount_overlay([lower], upper, ovl, merged)
        try:
            yield merged, upper
        finally:
            unmount(merged)
    finally:
        shutil.rmtree(work)


def entry(upper: Path) -> list[tuple[str, str, tuple[int, int], int]]:
    """(name, kind, (major, minor), size) of each entry of upper."""
    out = []
    for name in sorted(os.listdir(upper)):
        st = os.lstat(upper / name)
        out.append((name, KINDS.get(stat.S_IFMT(st.st_mode), "?"),
                    (os.major(st.st_rdev), os.minor(st.st_rdev)), st.st_size))
    return out


@exercise("03.whiteout")
def whiteout(ns: Namespace) -> str:
    fn = defined(ns, "predict_whiteout")
    name = f"lk-notes-{os.getpid()}.txt"
    guess = fn(name)
    need(isinstance(guess, tuple) and len(guess) == 3,
         f"predict_whiteout returned {guess!r}; return a tuple (name, kind, (major, minor))")
    with overlay({name: b"secret\n"}) as (merged, upper):
        (merged / name).unlink()
        seen = entry(upper)
    need(len(seen) == 1, f"upper holds {seen}")
    real = seen[0][:3]
    g_name, g_kind, g_dev = guess
    need(g_name == real[0], f"you predicted the name {g_name!r}; upper holds {real[0]!r} "
                            "(a whiteout has the deleted file's own name: '.wh.' is only "
                            "how an OCI layer tar spells it)")
    need(g_kind == real[1], f"you predicted a {g_kind!r}; the whiteout is a {real[1]!r} "
                            "device (overlayfs.rst, 'whiteouts and opaque directories')")
    need(tuple(g_dev) == real[2], f"you predicted device numbers {g_dev}; they are {real[2]}")
    return f"deleting {name} left a {real[1]} device {real[2][0]}:{real[2][1]} of that name in upper"


@exercise("03.copy_up")
def copy_up(ns: Namespace) -> str:
    fn = defined(ns, "predict_upper_size")
    size = 40_009  # bytes in the lower file; prime, so no guess lands on it by accident
    guess = fn(size, 3)
    with overlay({"data.bin": bytes(size)}) as (merged, upper):
        with open(merged / "data.bin", "ab") as f:
            f.write(b"abc")
        (real,) = entry(upper)
    need(guess == real[3], f"you predicted {guess!r} bytes in upper after appending 3 bytes to "
                           f"a {size}-byte lower file; upper holds {real[3]}: the first write "
                           "copies the whole file up, then the bytes land on the copy")
    return f"upper holds the whole copy: {size} + 3 = {real[3]} bytes"
