"""Notebook tables: live kernel state (namespaces, mounts, directory layers) as DataFrames.

Each function reads, never changes, and returns a pandas DataFrame for the notebook to show.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.cgroups import Cgroup
from labkit.engine.images.diff import classify_mode

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["cgroup_files", "mountinfo", "ns_table", "tree_table"]


def ns_table(pids: Mapping[str, int | str]) -> pd.DataFrame:
    """proc(5) /proc/PID/ns for several processes: one row per kind, one inode column each.

    A ``same`` column says whether every process shares that namespace (same nsfs inode,
    namespaces(7)).
    """
    import pandas as pd

    from labkit.ns import KINDS, namespaces

    seen = {label: namespaces(pid) for label, pid in pids.items()}
    rows = []
    for kind in KINDS:
        row: dict[str, object] = {"kind": kind}
        for label, ns in seen.items():
            row[label] = ns[kind].inode if kind in ns else None
        vals = [row[label] for label in seen]
        row["same"] = len(set(vals)) == 1
        rows.append(row)
    return pd.DataFrame(rows).set_index("kind")


def mountinfo(under: str | os.PathLike[str], pid: int | str = "self") -> pd.DataFrame:
    """proc(5) /proc/PID/mountinfo lines whose mount point is ``under`` or below it.

    Columns: mount_id, parent_id, mount point, fstype, source, super options (for overlay:
    lowerdir=, upperdir=, workdir=).
    """
    import pandas as pd

    root = os.path.abspath(os.fspath(under))
    rows = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            pre, _, post = line.rstrip("\n").partition(" - ")
            fields, tail = pre.split(), post.split()
            point = fields[4]
            if point == root or point.startswith(root.rstrip("/") + "/"):
                rows.append({"mount_id": int(fields[0]), "parent_id": int(fields[1]),
                             "mount_point": point, "fstype": tail[0], "source": tail[1],
                             "super_options": tail[2] if len(tail) > 2 else ""})
    return pd.DataFrame(rows, columns=["mount_id", "parent_id", "mount_point", "fstype",
                                       "source", "super_options"])


def tree_table(dirs: Mapping[str, str | os.PathLike[str]], sub: str = "") -> pd.DataFrame:
    """Which of several directories (overlay layers, the merged view) hold which entries.

    One row per name found under ``sub`` in any of ``dirs`` (recursively), one column per
    directory: the entry's kind ("file", "dir", "symlink", "whiteout" for a char device
    0:0, overlayfs.rst) or "" where that directory lacks it.
    """
    import pandas as pd

    found: dict[str, dict[str, str]] = {}
    for label, d in dirs.items():
        base = Path(d) / sub
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                rel = os.path.relpath(p, Path(d))
                found.setdefault(rel, {})[label] = classify_mode(st.st_mode, st.st_rdev)
    rows = [{"path": rel, **{label: kinds.get(label, "") for label in dirs}}
            for rel, kinds in sorted(found.items())]
    return pd.DataFrame(rows, columns=["path", *dirs]).set_index("path")


def cgroup_files(cg: Cgroup, names: tuple[str, ...]) -> pd.DataFrame:
    """The first line of each named control file of a labkit.cgroups Cgroup, and where it is.

    v1 keeps each controller's files in its own hierarchy (``cg.dirs``), v2 all in one
    directory (``cg.path``); absent files show as None.
    """
    import pandas as pd

    dirs = list(dict.fromkeys([*getattr(cg, "dirs", {}).values(), cg.path]))
    rows = []
    for name in names:
        where, text = None, None
        for d in dirs:
            f = Path(d) / name
            if f.exists():
                lines = f.read_text().strip().splitlines()
                where, text = str(f), (lines[0] if lines else "")
                break
        rows.append({"file": name, "value": text, "path": where})
    return pd.DataFrame(rows).set_index("file")
