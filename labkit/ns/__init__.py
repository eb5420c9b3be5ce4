"""labkit.ns: Linux namespaces (namespaces(7)) — describe, spawn into, enter, inspect.

The eight kinds: mnt, uts, ipc, pid, net, user, cgroup, time.  Nothing here changes the
caller's namespaces except ``with netns(path):`` (net only, calling thread only): commands
run in a fresh helper process (STYLE C9), so this is safe from a Jupyter kernel.

Example::

    from labkit.ns import NamespaceSpec, run
    run(NamespaceSpec(new={"uts"}, hostname="lk-demo"), ["hostname"]).stdout  # 'lk-demo\\n'
"""

from labkit.ns._spawn import Child, enter, run, spawn
from labkit.ns.inspect import NsId, NsRow, compare, list_namespaces, namespaces
from labkit.ns.netns import create_netns, list_netns, netns, netns_path, remove_netns
from labkit.ns.spec import KINDS, IdMap, NamespaceSpec

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
