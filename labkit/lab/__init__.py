"""Notebook helpers: one-line privilege gates, tables and plots.  No logic the library lacks.

    import labkit.lab as lab
    lab.require("root", "cgroup_v1", "bcc")     # stops the notebook with a readable reason
    lab.show_table(rows)                        # dataclass rows -> DataFrame (displayed)
    lab.plot_series(rows, "memory_current", limit=16 << 20)
    lab.exercises.check("01.lo_up", globals())  # a "Your turn" cell's check
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import unittest
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit._sys import features

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from matplotlib.axes import Axes

__all__ = ["REQUIREMENTS", "MissingFeatureError", "exercises", "plot_series", "require",
           "show_table"]


def __getattr__(name: str) -> Any:
    # ``lab.exercises`` without importing it (and its checks) for every notebook that never
    # checks anything (PEP 562 module __getattr__).
    if name == "exercises":
        import importlib

        return importlib.import_module("labkit.lab.exercises")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_VM = "use the VM: labkit vm"


class MissingFeatureError(errors.LabkitError, unittest.SkipTest):
    """This host lacks what a notebook (or test) needs; pytest and nbval treat it as a skip.

    In Jupyter it prints one short block instead of a traceback (IPython calls
    ``_render_traceback_`` when an exception defines it).
    """

    def __init__(self, missing: Sequence[tuple[str, str, str | None]]) -> None:
        self.missing = tuple(missing)
        names = ", ".join(f"{n} ({why})" for n, why, _ in self.missing)
        super().__init__(f"skipped: this host lacks {names}")
        hints = sorted({h for _, _, h in self.missing if h})
        self.hint = "; ".join(hints) or None
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.missing,))

    def _render_traceback_(self) -> list[str]:
        lines = [str(self)]
        lines += [f"  {n}: {why}" + (f" -> {h}" if h else "") for n, why, h in self.missing]
        return lines


Check = Callable[[], tuple[bool, str, str | None]]


def _flag(ok: Callable[[], bool], why: str, hint: str | None) -> Check:
    return lambda: (ok(), why, hint)


def _cgroup(version: str) -> Check:
    def check() -> tuple[bool, str, str | None]:
        from labkit.doctor import cgroup_mode

        mode = cgroup_mode()
        ok = mode == "unified" if version == "v2" else mode in ("hybrid", "legacy")
        return ok, f"cgroup layout here is {mode or 'none'}", None if ok else _VM

    return check


def _binary(name: str, hint: str) -> Check:
    return _flag(lambda: shutil.which(name) is not None, f"{name} not on PATH", hint)


REQUIREMENTS: dict[str, Check] = {
    "root": _flag(lambda: os.geteuid() == 0, "not running as root", "run as root (sudo)"),
    "cgroup_v1": _cgroup("v1"),
    "cgroup_v2": _cgroup("v2"),
    "bcc": _flag(features.has_bcc, "the bcc module is missing", "apt-get install python3-bpfcc"),
    "tracepoints": _flag(features.has_tracepoints, "no tracefs", _VM),
    "kprobes": _flag(features.has_kprobes, "kernel built without CONFIG_KPROBES", _VM),
    "btf": _flag(features.has_btf, "no /sys/kernel/btf/vmlinux", _VM),
    "overlayfs": _flag(features.has_overlayfs, "overlay not in /proc/filesystems",
                       "modprobe overlay"),
    "seccomp": _flag(lambda: features.seccomp()[0], "kernel without CONFIG_SECCOMP", _VM),
    "userns": _flag(features.userns_allowed, "user namespaces disabled",
                    "sysctl user.max_user_namespaces=15000"),
    **{f"ns:{k}": _flag(lambda k=k: features.has_namespace(k), f"no {k} namespaces", _VM)  # type: ignore[misc]
       for k in features.NAMESPACE_KINDS},
    **{k: _flag(lambda k=k: features.link_kind_builtin(k) is not False,  # type: ignore[misc]
                f"kernel module {k} absent", _VM)
       for k in ("vxlan", "macvlan", "ipvlan")},
    "nftables": _binary("nft", "apt-get install nftables"),
    "runc": _binary("runc", "apt-get install runc"),
    "crun": _binary("crun", "apt-get install crun"),
    "labkit-runtime": _binary("labkit-runtime", "make setup (installs labkit editable)"),
}


def _kernel_at_least(spec: str) -> tuple[bool, str, str | None]:
    want = spec.removeprefix("kernel>=")
    try:
        major, minor = (int(x) for x in want.split(".")[:2])
    except ValueError:
        raise errors.InvalidArgumentError(
            "requirement", f"{spec!r}: write kernel>=MAJOR.MINOR, e.g. kernel>=5.8") from None
    have = features.kernel_version()
    return have >= (major, minor), f"kernel {have[0]}.{have[1]} < {want}", _VM


def require(*names: str) -> None:
    """Stop here (skip) unless the host has every named feature.

    Names: root, cgroup_v1, cgroup_v2, bcc, tracepoints, kprobes, btf, overlayfs, seccomp,
    userns, ns:<kind>, vxlan, macvlan, ipvlan, nftables, runc, crun, labkit-runtime, and
    kernel>=X.Y.

    Raises:
        MissingFeatureError: one or more are missing (a unittest.SkipTest, so pytest skips).
        InvalidArgumentError: a name is not one of the above.
    """
    missing: list[tuple[str, str, str | None]] = []
    for name in names:
        if name.startswith("kernel>="):
            ok, why, hint = _kernel_at_least(name)
        elif name in REQUIREMENTS:
            ok, why, hint = REQUIREMENTS[name]()
        else:
            raise errors.InvalidArgumentError(
                "requirement", f"unknown feature {name!r}",
                hint="one of: " + ", ".join(sorted(REQUIREMENTS)) + ", kernel>=X.Y")
        if not ok:
            missing.append((name, why, hint))
    if missing:
        raise MissingFeatureError(missing)


def _as_dict(row: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if hasattr(row, "_asdict") and not isinstance(row, type):
        # labkit's Frozen records (cgroups Stats/Resources, NamespaceSpec: labkit/_record.py)
        # and namedtuples.
        return dict(row._asdict())
    if isinstance(row, dict):
        return row
    raise errors.InvalidArgumentError("rows", f"{type(row).__name__} is not a dataclass or dict")


def show_table(rows: Iterable[Any], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Dataclass (or dict) rows as a DataFrame; the notebook displays the returned value."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    df = pd.DataFrame([_as_dict(r) for r in rows])
    return df[list(columns)] if columns is not None else df


def plot_series(rows: Iterable[Any], y: str | Sequence[str], *, x: str = "t",
                limit: float | None = None, title: str | None = None,
                ax: Axes | None = None) -> Axes:
    """Plot one or more fields of sampler rows against ``x`` (default: t, seconds).

    ``limit`` draws a dashed horizontal line (e.g. the cgroup's memory limit).
    """
    import matplotlib.pyplot as plt

    df = show_table(rows)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for col in [y] if isinstance(y, str) else list(y):
        ax.plot(df[x], df[col], label=col)
    if limit is not None:
        ax.axhline(limit, linestyle="--", color="grey", label="limit")
    ax.set_xlabel(x)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax
