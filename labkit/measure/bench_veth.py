"""Micro-benchmark: a veth end created inside the container's netns vs created and moved.

``python -m labkit.measure.bench_veth [-n N]`` (root) prints medians and the ratio; nothing
is asserted (STYLE: benchmarks print).  Everything happens in two namespaces made for the
run ("host" and "container", lk- names) that are removed at the end, so the machine's own
links are never touched.

* in place: one RTM_NEWLINK whose VETH_INFO_PEER carries IFLA_NET_NS_FD (what
  labkit.engine.net.bridge.attach does);
* moved: RTM_NEWLINK with both ends in the host, then RTM_NEWLINK on the peer with
  IFLA_NET_NS_FD (``ip link set PEER netns NS``): dev_change_net_namespace() unregisters and
  re-registers the device, waiting out an RCU grace period;
* attach: the whole labkit.engine.net.bridge.attach (pair, address, lo up, default route);
* detach: bridge.detach, one RTM_DELLINK -- synchronous unregistration waits out RCU grace
  periods (synchronize_net in unregister_netdevice_many), so it costs far more than the
  creation.  When the container's netns dies anyway, the kernel deletes the pair itself
  (default_device_exit_batch, in the netns cleanup work), off the caller's path.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import time
from dataclasses import dataclass

from pyroute2 import IPRoute

from labkit.engine.net import bridge
from labkit.ns.netns import create_netns, netns, remove_netns

__all__ = ["VethBench", "main", "run"]


@dataclass(frozen=True)
class VethBench:
    """Per-iteration samples in milliseconds."""

    in_place_ms: list[float]
    moved_ms: list[float]
    attach_ms: list[float]
    detach_ms: list[float]

    def table(self) -> str:
        rows = [("veth created in the netns", self.in_place_ms),
                ("veth created, then moved", self.moved_ms),
                ("bridge.attach (whole endpoint)", self.attach_ms),
                ("bridge.detach (RTM_DELLINK)", self.detach_ms)]
        out = [f"{'':32} {'median ms':>10} {'min ms':>8} {'n':>4}"]
        for name, s in rows:
            out.append(f"{name:32} {statistics.median(s):10.2f} {min(s):8.2f} {len(s):4}")
        ratio = statistics.median(self.moved_ms) / statistics.median(self.in_place_ms)
        out.append(f"moved / in place (medians): {ratio:.1f}x")
        return "\n".join(out)


def run(n: int = 20) -> VethBench:
    """``n`` iterations of each way; every link goes before the next iteration."""
    tag = f"{os.getpid() % 100000}"
    host, ctr = f"lk-bvh-{tag}", f"lk-bvc-{tag}"
    made: list[str] = []
    in_place: list[float] = []
    moved: list[float] = []
    attach: list[float] = []
    detach: list[float] = []
    try:
        for name in (host, ctr):
            create_netns(name)
            made.append(name)
        with netns(f"/run/netns/{host}"):
            h = IPRoute()
        with netns(f"/run/netns/{ctr}"):
            c = IPRoute()
        fd = os.open(f"/run/netns/{ctr}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            bridge.create_bridge("lkbench0", [ipaddress.ip_interface("10.250.0.1/24")],
                                 host_netns=host)
            for _ in range(n):
                t = time.perf_counter()
                h.link("add", ifname="lkbva", kind="veth",
                       peer={"ifname": "lkbvb", "net_ns_fd": fd})
                in_place.append((time.perf_counter() - t) * 1e3)
                h.link("del", index=h.link_lookup(ifname="lkbva")[0])

                t = time.perf_counter()
                h.link("add", ifname="lkbva", kind="veth", peer="lkbvb")
                h.link("set", index=h.link_lookup(ifname="lkbvb")[0], net_ns_fd=fd)
                moved.append((time.perf_counter() - t) * 1e3)
                h.link("del", index=h.link_lookup(ifname="lkbva")[0])

                t = time.perf_counter()
                bridge.attach("lkbench0", "lkbvh", ctr,
                              [ipaddress.ip_interface("10.250.0.2/24")],
                              gateways=[ipaddress.ip_address("10.250.0.1")], host_netns=host)
                attach.append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                bridge.detach("lkbvh", host_netns=host)
                detach.append((time.perf_counter() - t) * 1e3)
            bridge.delete_bridge("lkbench0", host_netns=host)
        finally:
            os.close(fd)
            h.close()
            c.close()
    finally:
        for name in made:
            remove_netns(name)  # the namespaces take any link left in them along
    return VethBench(in_place, moved, attach, detach)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.measure.bench_veth", description=__doc__)
    p.add_argument("-n", type=int, default=20, help="iterations of each way (default 20)")
    args = p.parse_args(argv)
    print(run(args.n).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
