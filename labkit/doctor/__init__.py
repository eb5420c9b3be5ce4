"""labkit doctor: what this host's kernel offers labkit, row by row, with a hint for each gap.

``check()`` returns frozen ``Check`` rows; ``labkit doctor`` prints them as a table and
``doctor_table()`` gives a pandas DataFrame for notebooks.  Rows come from two sources:

* files only (labkit._sys.features, mountinfo): fast, and testable against a fake root;
* live attempts, as root on the real host: import bcc, load a BPF program on a tracepoint
  and count 23 getpid calls, create vxlan/macvlan/ipvlan links in a throwaway netns, run
  ``nft list tables``.  Without root (or with a fake root) they are reported as not tried.

Example::

    import labkit.doctor
    [c for c in labkit.doctor.check() if c.ok is False]
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from labkit._sys import features
from labkit.doctor import _cgroups, _live, _static
from labkit.doctor._check import Check

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["Check", "cgroup_mode", "check", "doctor_table", "to_json_rows"]


def _not_tried() -> list[Check]:
    hint = "run labkit doctor as root on the host to try it"
    rows = [Check("bcc import", None if features.has_bcc() else False,
                  "found, not imported" if features.has_bcc() else "bcc module not found",
                  hint if features.has_bcc() else "apt-get install python3-bpfcc")]
    rows.append(Check("BPF tracepoint attach", None, "not tried (needs root)", hint))
    nft = shutil.which("nft")
    rows.append(Check("nftables", None if nft else False,
                      f"{nft}, not tried (needs root)" if nft else "nft not found",
                      hint if nft else "apt-get install nftables"))
    return rows


def check(root: Path = Path("/"), *, live: bool | None = None) -> list[Check]:
    """Examine the host (or a fake tree at ``root``) and return one Check per feature.

    ``live`` runs the checks that create things (BPF program, netns links, nft); by default
    it is on when ``root`` is "/" and we are root.  Never raises for a missing feature:
    a missing feature is a row with ``ok=False`` and a hint.
    """
    root = Path(root)
    if live is None:
        live = root == Path("/") and os.geteuid() == 0
    rows: list[Check] = []
    for fn in (_static.kernel, _static.privileges, _static.namespaces, _static.overlay,
               _static.seccomp, _cgroups.cgroup_checks):
        rows += fn(root)
    rows += _static.tracing(root)
    rows += _static.headers(root)
    if live:
        rows += _live.bcc_import()
        rows += _live.bpf_tracepoint()
        rows += _live.link_kinds()
        rows += _live.nftables()
    else:
        bcc_row, bpf_row, nft_row = _not_tried()
        rows += [bcc_row, bpf_row, *_static.link_kinds_static(root), nft_row]
    rows += _static.tools(root)
    return rows


def cgroup_mode(root: Path = Path("/")) -> str | None:
    """The cgroup layout: "unified", "hybrid", "legacy", or None when none is mounted."""
    return _cgroups.cgroup_mode(root)


def to_json_rows(rows: list[Check]) -> list[dict[str, object]]:
    """Rows as plain dicts (name, ok, status, detail, hint) for ``--json``."""
    return [{"name": r.name, "ok": r.ok, "status": r.status, "detail": r.detail,
             "hint": r.hint} for r in rows]


def doctor_table(rows: list[Check] | None = None) -> pd.DataFrame:
    """check() as a pandas DataFrame (columns name, status, detail, hint) for a notebook."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    rows = check() if rows is None else rows
    return pd.DataFrame(
        [{"name": r.name, "status": r.status, "detail": r.detail, "hint": r.hint or ""}
         for r in rows]).set_index("name")
