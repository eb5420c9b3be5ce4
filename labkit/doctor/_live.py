"""Doctor rows that try things for real (root only): bcc, a BPF tracepoint, links, nft.

Reading /proc cannot say whether bcc compiles against the linked headers, or whether the
ipvlan module loads: the only honest test is to do it.  Everything made here is removed
again: the BPF program is detached, the links die with the throwaway netns lk-doctor-<pid>.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from typing import Any

from labkit import errors
from labkit.doctor._check import VM, Check
from labkit.ns.rtnl import off_loop

__all__ = ["LIVE_CHECKS"]


def bcc_import() -> list[Check]:
    t0 = time.monotonic()
    try:
        import bcc  # type: ignore[import-untyped,unused-ignore]
    except (ImportError, OSError) as err:  # a broken libbcc raises OSError from ctypes
        return [Check("bcc import", False, f"{type(err).__name__}: {err}",
                      "apt-get install python3-bpfcc, then make setup")]
    ms = (time.monotonic() - t0) * 1000
    version = getattr(bcc, "__version__", "?")
    return [Check("bcc import", True, f"bcc {version} ({ms:.0f} ms)", None)]


def bpf_tracepoint() -> list[Check]:
    from labkit.probes import selftest

    t0 = time.monotonic()
    try:
        res = selftest.run(23)
    except errors.LabkitError as err:
        return [Check("BPF tracepoint attach", False, str(err), err.hint)]
    ms = (time.monotonic() - t0) * 1000
    detail = (f"{res.counted}/{res.calls} getpid calls counted at "
              f"syscalls:sys_enter_getpid ({ms:.0f} ms)")
    return [Check("BPF tracepoint attach", res.ok, detail,
                  None if res.ok else "the program loaded but miscounted: report a bug")]


def _try_links(ns: Any) -> list[Check]:
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped,unused-ignore]

    rows = []
    # macvlan and ipvlan need a parent link; veth is built in wherever netns are.  Each gets
    # its own: a device that carries macvlans cannot also carry ipvlans (EBUSY; the two
    # drivers each claim the parent's rx_handler, net/core/dev.c netdev_rx_handler_register).
    parents = {}
    for kind in ("macvlan", "ipvlan"):
        ns.link("add", ifname=f"lkd-{kind[:3]}0", kind="veth", peer=f"lkd-{kind[:3]}1")
        parents[kind] = ns.link_lookup(ifname=f"lkd-{kind[:3]}0")[0]
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("vxlan", {"vxlan_id": 42, "vxlan_port": 4789}),
        ("macvlan", {"link": parents["macvlan"], "macvlan_mode": "bridge"}),
        ("ipvlan", {"link": parents["ipvlan"], "ipvlan_mode": 0}),
    ]
    for kind, kw in attempts:
        try:
            ns.link("add", ifname=f"lkd-{kind}", kind=kind, **kw)
            rows.append(Check(kind, True, "created in a throwaway netns", None))
        except NetlinkError as err:
            if err.code == errno.EOPNOTSUPP:
                rows.append(Check(kind, False, f"kernel module {kind} absent",
                                  f"kernel module {kind} absent: for {kind} networks {VM}"))
            else:
                rows.append(Check(kind, False, f"creating one failed: {os.strerror(err.code)}",
                                  None))
    return rows


@off_loop
def link_kinds() -> list[Check]:
    from pyroute2 import NetNS, netns  # type: ignore[import-untyped,unused-ignore]

    name = f"lk-doctor-{os.getpid()}"
    try:
        netns.create(name)
    except Exception as err:  # noqa: BLE001 - pyroute2 raises several kinds; report, not crash
        return [Check("netns links", False, f"cannot create netns {name}: {err}", None)]
    try:
        with NetNS(name) as ns:
            return _try_links(ns)
    finally:
        # Removing the netns destroys every link made inside it.
        netns.remove(name)


def nftables() -> list[Check]:
    nft = shutil.which("nft")
    if nft is None:
        return [Check("nftables", False, "nft not found", "apt-get install nftables")]
    try:
        out = subprocess.run([nft, "list", "tables"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return [Check("nftables", False, f"nft list tables: {err}", None)]
    if out.returncode != 0:
        return [Check("nftables", False, f"nft list tables: {out.stderr.strip()}",
                      "the kernel needs CONFIG_NF_TABLES: " + VM)]
    n = sum(1 for line in out.stdout.splitlines() if line.startswith("table"))
    return [Check("nftables", True, f"nft works ({n} tables)", None)]


LIVE_CHECKS = (bcc_import, bpf_tracepoint, link_kinds, nftables)
