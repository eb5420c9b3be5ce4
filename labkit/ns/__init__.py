"""labkit.ns: Linux namespaces (namespaces(7)) — describe, spawn into, enter, inspect.

The eight kinds: mnt, uts, ipc, pid, net, user, cgroup, time.  Nothing here changes the
caller's namespaces except ``with netns(path):`` (net only, calling thread only): commands
run in a fresh helper process (STYLE C9), so this is safe from a Jupyter kernel.

Example::

    from labkit.ns import NamespaceSpec, run
    run(NamespaceSpec(new={"uts"}, hostname="lk-demo"), ["hostname"]).stdout  # 'lk-demo\\n'
"""

from __future__ import annotations

import importlib

from labkit.ns.netns import create_netns, list_netns, netns, netns_path, remove_netns
from labkit.ns.spec import KINDS, IdMap, NamespaceSpec

# Not typing.TYPE_CHECKING: importing typing costs ~8 ms on the helper's start path; mypy
# treats any name TYPE_CHECKING as always true.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from labkit.ns._spawn import Child, enter, run, spawn
    from labkit.ns.inspect import NsId, NsRow, compare, list_namespaces, namespaces

# Lazy re-exports (PEP 562): labkit.ns.apply and the labkit.ns.child helper import this
# package on their start path, and must not pay for subprocess/socket/pathlib (~30 ms).
# netns is imported eagerly (it is light) so that ``labkit.ns.netns`` is always the
# function: a lazy import would leave the submodule in its place.
_LAZY = {
    **dict.fromkeys(("Child", "enter", "run", "spawn"), "labkit.ns._spawn"),
    **dict.fromkeys(("NsId", "NsRow", "compare", "list_namespaces", "namespaces"),
                    "labkit.ns.inspect"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labkit.ns' has no attribute {name!r}")

__all__ = [
    "KINDS",
    "Child",
    "IdMap",
    "NamespaceSpec",
    "NsId",
    "NsRow",
    "compare",
    "create_netns",
    "enter",
    "list_namespaces",
    "list_netns",
    "namespaces",
    "netns",
    "netns_path",
    "remove_netns",
    "run",
    "spawn",
]
