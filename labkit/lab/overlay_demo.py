"""Notebook 13's overlay networks: what one overlay network is on each node (a VXLAN link and
a bridge in the node's namespace, forwarding entries told by the managers), packets counted
on the VXLAN links with an eBPF probe (labkit.probes.netio: tracepoints only), the encrypted
overlay's ESP security associations, and what encryption costs (iperf3 between two tasks).

Every number comes from the kernel: ``ip -d -j link``, ``bridge -j fdb``, ``ip -s xfrm
state`` and ``ip -s -j link`` run with nsenter(1) in a node's namespace, netio's counters,
iperf3's own report.  Key material never leaves the kernel: the ESP table keeps the
algorithm and the counters and drops the key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.lab.services_demo import ServiceLab, _net_id, require
from labkit.lab.swarm_demo import _until

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from matplotlib.axes import Axes

__all__ = ["PING_COUNT", "OverlayLab", "Throughput", "esp_unsupported", "mac_of",
           "parse_fdb", "parse_ping", "parse_vxlan_links", "parse_xfrm_states",
           "plot_throughput", "require"]

PING_COUNT = 23  # a prime: a doubled or a lost packet shows (bcc's CONTRIBUTING-SCRIPTS)
ZERO_MAC = "00:00:00:00:00:00"
IPERF_PORT = 5201


# -- pure helpers (unit-tested) ------------------------------------------------------------

def mac_of(ip: str) -> str:
    """The MAC an overlay endpoint gets from its IPv4 address: 02:42 then the address's
    four bytes (as Docker does), so peers need no MACs from one another."""
    parts = ip.split("/")[0].split(".")
    if len(parts) != 4 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise errors.InvalidArgumentError("ip", f"{ip!r} is not an IPv4 address")
    return "02:42:" + ":".join(f"{int(p):02x}" for p in parts)


def parse_vxlan_links(links: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The VXLAN links of ``ip -d -j link show`` output: name, VNI, local address, UDP
    port, learning, MTU, master bridge, state."""
    out = []
    for link in links:
        info = link.get("linkinfo") or {}
        if info.get("info_kind") != "vxlan":
            continue
        d = info.get("info_data") or {}
        out.append({"device": link.get("ifname"), "vni": d.get("id"), "local": d.get("local"),
                    "dstport": d.get("port"), "learning": d.get("learning"),
                    "mtu": link.get("mtu"), "master": link.get("master", ""),
                    "state": link.get("operstate")})
    return out


def parse_fdb(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`bridge -j fdb show dev lkvxN`: the entries that send somewhere (with a ``dst``):
    the all-zero MAC (flooding: copied to every peer) and one per remote endpoint."""
    out = []
    for e in entries:
        if not e.get("dst"):
            continue  # the link's own MAC on its bridge
        mac = str(e.get("mac", ""))
        out.append({"mac": mac, "dst": e["dst"],
                    "kind": "flood (broadcast, ARP)" if mac == ZERO_MAC else "endpoint",
                    "state": e.get("state", "")})
    return out


_SPI = re.compile(r"proto (\w+) spi (0x[0-9a-f]+)")
_ALG = re.compile(r"^\s*(aead|enc|auth|auth-trunc)\s+(\S+)")
_CUR = re.compile(r"(\d+)\(bytes\),\s*(\d+)\(packets\)")


def parse_xfrm_states(text: str) -> list[dict[str, Any]]:
    """`ip -s xfrm state` as rows: src, dst, protocol, SPI, mode, algorithm and the bytes
    and packets the state has processed (its "lifetime current").  The key (the hex after
    the algorithm's name) is deliberately not kept."""
    rows: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    expect_current = False
    for line in text.splitlines():
        if line.startswith("src "):
            f = line.split()
            cur = {"src": f[1], "dst": f[3], "proto": "", "spi": "", "mode": "",
                   "algorithm": "", "bytes": 0, "packets": 0}
            rows.append(cur)
            continue
        if cur is None:
            continue
        if m := _SPI.search(line):
            cur["proto"], cur["spi"] = m.group(1), m.group(2)
            mode = re.search(r"mode (\w+)", line)
            cur["mode"] = mode.group(1) if mode else ""
        elif m := _ALG.match(line):
            cur["algorithm"] = m.group(2)
        elif "lifetime current" in line:
            expect_current = True
        elif expect_current and (m := _CUR.search(line)):
            cur["bytes"], cur["packets"] = int(m.group(1)), int(m.group(2))
            expect_current = False
    return rows


def parse_ping(text: str) -> dict[str, Any]:
    """busybox ping's summary: sent, received, average round trip (ms)."""
    sent = re.search(r"(\d+) packets transmitted", text)
    got = re.search(r"(\d+) packets received", text)
    rtt = re.search(r"min/avg/max = [\d.]+/([\d.]+)/", text)
    return {"sent": int(sent.group(1)) if sent else 0,
            "received": int(got.group(1)) if got else 0,
            "avg_ms": float(rtt.group(1)) if rtt else None}


@dataclass(frozen=True, slots=True)
class Throughput:
    """One iperf3 run between two tasks of one network."""

    network: str
    encrypted: bool
    seconds: float
    gbit_s: float
    retransmits: int


def plot_throughput(rows: Sequence[Throughput], ax: Axes | None = None) -> Axes:
    """Bars: Gbit/s per network, plain and encrypted side by side."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3))
    labels = [f"{r.network}\n({'encrypted' if r.encrypted else 'plain'})" for r in rows]
    ax.bar(labels, [r.gbit_s for r in rows],
           color=["tab:red" if r.encrypted else "tab:blue" for r in rows])
    for i, r in enumerate(rows):
        ax.annotate(f"{r.gbit_s:.2f}", (i, r.gbit_s), ha="center", va="bottom")
    ax.set_ylabel("Gbit/s (iperf3, TCP)")
    ax.set_title("task to task across two nodes")
    return ax


# -- the host ------------------------------------------------------------------------------

def esp_unsupported() -> str | None:
    """Why this kernel cannot do the encrypted overlay (None when it can): it must accept
    an ESP transport state with AES-GCM (rfc4106), tried in a throwaway namespace with a
    throwaway key given on stdin (`ip -batch -`)."""
    ns = f"lk-nb13esp-{os.getpid()}"
    add = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True,
                         check=False)
    if add.returncode != 0:
        return f"ip netns add: {add.stderr.strip()}"
    try:
        key = "0x" + os.urandom(20).hex()
        r = subprocess.run(["ip", "-n", ns, "-batch", "-"], capture_output=True, text=True,
                           check=False, input="xfrm state add src 192.0.2.1 dst 192.0.2.2 "
                           "proto esp spi 0x100 mode transport "
                           f"aead rfc4106(gcm(aes)) {key} 128\n")
        if r.returncode != 0:
            return ("this kernel has no ESP with AES-GCM for XFRM (CONFIG_INET_ESP, "
                    f"CONFIG_CRYPTO_GCM): ip says {r.stderr.strip()!r}")
        return None
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


# -- the lab -------------------------------------------------------------------------------

class OverlayLab(ServiceLab):
    """1 manager + 1 worker; a global service puts one task on each."""

    def __init__(self, name: str = "nb13", subnet: str = "10.216.0.0/24") -> None:
        super().__init__(name, subnet, managers=1, workers=1)

    def pair(self, service: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The service's running tasks: (the one on m1, the one on w1)."""
        by_node = {self.node_of(t).name: t for t in self.tasks(service, running=True)}
        try:
            return by_node["m1"], by_node["w1"]
        except KeyError:
            raise errors.NotFoundError("a task on m1 and one on w1 of", service) from None

    def ip_of(self, task: Mapping[str, Any], network: str) -> str:
        net = self.network(network)
        for att in task.get("NetworksAttachments") or []:
            if _net_id(att) == net["Id"]:
                return str(att["Addresses"][0]).split("/")[0]
        raise errors.NotFoundError(f"address of task {task.get('ID', '?')[:12]} on", network)

    def wait_reachable(self, service: str, network: str, timeout: float = 30.0) -> float:
        """Wait until the task on m1 gets an answer from the task on w1 (each node learns
        of the other's task, and programs its FDB, from its next assignment snapshot);
        the seconds it took."""
        t0 = time.monotonic()
        a, b = self.pair(service)
        dst = self.ip_of(b, network)
        _until(lambda: self.exec(a, ["ping", "-c", "1", "-W", "1", dst], timeout=10).code == 0,
               timeout, f"{dst} answering on {network}")
        return round(time.monotonic() - t0, 2)

    def ping(self, service: str, network: str, count: int = PING_COUNT) -> dict[str, Any]:
        """The task on m1 pings the task on w1 across the overlay; the summary."""
        a, b = self.pair(service)
        dst = self.ip_of(b, network)
        r = self.exec(a, ["ping", "-c", str(count), "-i", "0.05", "-W", "2", dst],
                      timeout=30 + count)
        return {"from": f"{self.ip_of(a, network)} (m1)", "to": f"{dst} (w1)",
                **parse_ping(r.out)}

    def _json(self, ref: str, argv: Sequence[str]) -> Any:
        r = self.run_in_node(ref, argv)
        if r.returncode != 0:
            raise errors.LabkitError(f"{' '.join(argv)} on {ref}: {r.stderr.strip()}")
        return json.loads(r.stdout or "[]")

    def links(self, network: str) -> pd.DataFrame:
        """Per node, the network's VXLAN link (``ip -d -j link show lkvxN``) and bridge."""
        import pandas as pd

        vni = self.vni(network)
        rows = []
        for n in self.lab.nodes:
            for row in parse_vxlan_links(self._json(n.name, ["ip", "-d", "-j", "link", "show",
                                                           f"lkvx{vni}"])):
                rows.append({"node": n.name, "underlay": n.addr, **row})
        return pd.DataFrame(rows)

    def fdb(self, network: str) -> pd.DataFrame:
        """Per node, the forwarding entries of the network's VXLAN link: which node's
        underlay address a frame for a MAC goes to."""
        import pandas as pd

        vni = self.vni(network)
        rows = []
        for n in self.lab.nodes:
            for e in parse_fdb(self._json(n.name, ["bridge", "-j", "fdb", "show", "dev",
                                                   f"lkvx{vni}"])):
                rows.append({"node": n.name, **e})
        return pd.DataFrame(rows)

    def link_counters(self, device: str) -> dict[str, dict[str, int]]:
        """{node: {rx_packets, tx_packets, rx_bytes, tx_bytes}} of ``device`` in each node's
        namespace (the kernel's own per-device counters)."""
        from labkit.probes.netio import link_stats

        return {n.name: link_stats([device], f"/run/netns/{n.netns}")[device]
                for n in self.lab.nodes}

    def count_vxlan(self, service: str, network: str, count: int = PING_COUNT
                    ) -> dict[str, Any]:
        """Count what the network's VXLAN links move while the task on m1 pings the one on
        w1 ``count`` times: netio's eBPF counters (every namespace at once, by device name)
        and, as the cross-check, each node's own device counters before and after."""
        from labkit.probes import netio

        dev = f"lkvx{self.vni(network)}"
        before = self.link_counters(dev)
        probe = netio.open_probe(netio.Options(devices={dev: "vxlan"},
                                               netns=f"/run/netns/{self.lab.nodes[0].netns}"))
        try:
            probe.read()  # compiled and attached: from here on it counts
            ping = self.ping(service, network, count)
            rows = [r for r in probe.read() if r.device == dev and r.via == "device"]
        finally:
            probe.close()
        after = self.link_counters(dev)
        delta = {n: {k: after[n][k] - before[n][k] for k in after[n]} for n in after}
        ipv4 = {d: sum(r.packets for r in rows if r.direction == d and r.proto in ("ipv4", "all"))
                for d in ("tx", "rx")}
        return {"device": dev, "mode": probe.mode, "ipv4_packets": ipv4,
                "why_not_ebpf": getattr(probe, "reason", ""), "ping": ping,
                "probe": [{"direction": r.direction, "proto": r.proto,
                           "packets": r.packets, "bytes": r.bytes} for r in rows],
                "per_node": delta}

    def xfrm(self) -> pd.DataFrame:
        """Every node's ESP security associations (`ip -s xfrm state`), keys left out."""
        import pandas as pd

        rows = []
        for n in self.lab.nodes:
            r = self.run_in_node(n.name, ["ip", "-s", "xfrm", "state"])
            rows += [{"node": n.name, **s} for s in parse_xfrm_states(r.stdout)]
        return pd.DataFrame(rows, columns=["node", "src", "dst", "proto", "spi", "mode",
                                           "algorithm", "bytes", "packets"])

    def iperf(self, service: str, network: str, encrypted: bool, seconds: float = 2.0
              ) -> Throughput:
        """iperf3 (Debian's, run in the tasks' network namespaces): the task on w1
        serves once, the one on m1 sends TCP for ``seconds``."""
        a, b = self.pair(service)
        dst = self.ip_of(b, network)
        server = subprocess.Popen(["nsenter", f"--net=/proc/{self.pid(b)}/ns/net", "iperf3",
                                   "-s", "-1", "-B", dst, "-p", str(IPERF_PORT)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            out: dict[str, Any] = {}
            for _ in range(50):  # until the server listens
                r = self.run_in_task_netns(a, ["iperf3", "-c", dst, "-p", str(IPERF_PORT),
                                               "-t", str(seconds), "-J"],
                                           timeout=seconds + 30)
                out = json.loads(r.stdout or "{}")
                if "error" not in out and r.returncode == 0:
                    break
                time.sleep(0.1)
            if "end" not in out:
                raise errors.LabkitError(f"iperf3 to {dst}: {out.get('error', r.stderr)}")
            end = out["end"]
            return Throughput(str(self.network(network)["Name"]), encrypted, seconds,
                              round(end["sum_received"]["bits_per_second"] / 1e9, 3),
                              int(end.get("sum_sent", {}).get("retransmits", 0)))
        finally:
            if server.poll() is None:
                server.kill()  # by its pid: we started it
            server.wait(10)
