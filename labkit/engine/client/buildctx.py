"""The build context a client sends: a directory as a tar, ``.dockerignore`` applied.

As the Docker CLI does: files the ignore rules exclude are not sent (a secret or a big
build dir stays home); the Dockerfile and ``.dockerignore`` always are; a Dockerfile from
outside the directory (``-f ../x``) travels under a private name, which the request's
``dockerfile`` parameter then names.  Symlinks travel as links, never followed.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from labkit import errors
from labkit.engine.build.ignore import Ignore

__all__ = ["pack_context"]


def pack_context(directory: str | Path, dockerfile: str | Path | None = None) -> tuple[bytes, str]:
    """(tar bytes, the Dockerfile's name inside the tar)."""
    root = Path(directory)
    if not root.is_dir():
        raise errors.NotFoundError("build context directory", str(root))
    df = Path(dockerfile) if dockerfile else root / "Dockerfile"
    if not df.is_absolute() and dockerfile:
        df = Path.cwd() / df
    try:
        inside = df.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        inside = ""
    if not df.is_file():
        raise errors.NotFoundError("Dockerfile", str(df))
    ig_file = root / ".dockerignore"
    ignore = Ignore(ig_file.read_text() if ig_file.is_file() else "",
                    always=(inside or "Dockerfile", ".dockerignore"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            for name in sorted(dirs) + sorted(files):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if ignore.excluded(rel):
                    continue
                ti = tf.gettarinfo(os.path.join(dirpath, name), arcname=rel)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(os.path.join(dirpath, name), "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
        if not inside:  # a Dockerfile from elsewhere: sent under a name of its own
            inside = ".lk-dockerfile"
            data = df.read_bytes()
            ti = tarfile.TarInfo(inside)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue(), inside
