"""netio: network bytes and packets per device and per container, split by protocol.

Hooks (tracepoints; no kprobes, no sk_buff reads, whose layout the nearest kernel headers may
get wrong):

* net:net_dev_start_xmit, just before a driver's ndo_start_xmit (net/core/dev.c): the device
  (``name``, a __data_loc string), the ethertype (``protocol``, host order) and ``len``, which
  includes the link-layer header.  It also remembers skbaddr -> protocol for the receive side.
* net:netif_receive_skb, in __netif_receive_skb_core, once per packet a device hands to the
  stack, whatever the driver (NAPI, backlog, veth): device and ``len``, which starts at the
  network header (eth_type_trans already pulled the Ethernet header).  It has no protocol
  field: the protocol is the one remembered for the same skb at its transmit (a veth pair
  forwards the very skb to its peer, net/core/dev.c __dev_forward_skb), or at the drivers'
  entry tracepoints (netif_receive_skb_entry, napi_gro_receive_entry, netif_rx_entry), and
  ``0`` (unknown) otherwise.

Attribution to a container, two ways:

* by device: the host-side end of its veth pair (the engine names it ``lkv`` + 11 hex of the
  endpoint id: labkit/engine/net/bridge.py veth_name; ``veths(inspect)`` lists them).  What
  the host end transmits the container receives, and the other way round (``per_target``).
  Exact for every packet, whichever task or softirq moved it.
* by cgroup: transmits while a task of the container (its cgroup or one below, matched by
  labkit.probes.attribution) is current, per device.  Exact for the container's own sends
  from process context over a device without a queue (a veth's default, noqueue), and only
  for those: whatever runs in a softirq is charged to the task it interrupted.  On a veth
  pair that includes the sender itself: the peer's receive runs in the softirq the send
  raised, on the sender's CPU, so the bridge forwarding it and a local reply (an ICMP echo
  reply, an ARP answer) are charged to the sender too; packets held while the neighbour is
  resolved (ARP) leave from the softirq that receives the answer; a qdisc, TCP timers and
  forwarding from a NIC are charged to whoever was running.

Device names are per network namespace: every container's ``eth0`` is counted under one
key; name host-side veths (unique on their host) to tell containers apart.

Overhead: a hash update per packet on every device (~0.3 us); meant for a measurement.

Without bcc, ``procfs(opts)`` reads the device counters (``ip -s -j link``, the
/sys/class/net/DEV/statistics numbers): per device and direction, no protocol split and no
cgroup attribution.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit._sys import features
from labkit.probes import attribution, base
from labkit.probes.target import Target

__all__ = ["BPF_TEXT", "NetProbe", "NetRow", "Options", "ProcfsNet", "attach", "open_probe",
           "per_target", "procfs", "proto_name", "render", "veths"]

TOOL = "netio"
IFNAMSIZ = 16
PROTOCOLS = {0x0800: "ipv4", 0x86DD: "ipv6", 0x0806: "arp"}  # include/uapi/linux/if_ether.h

BPF_TEXT = r"""
#define IFNAMSIZ 16

struct dev_key_t {
    char name[IFNAMSIZ];
    u32 dir;            // 0 transmit, 1 receive
    u32 proto;          // ethertype, host order; 0 unknown
};

struct cg_key_t {
    u64 who;            // with targets: 1 + the target's index; without: the cgroup id
    char name[IFNAMSIZ];
    u32 proto;
    u32 pad;
};

struct count_t {
    u64 packets;
    u64 bytes;
};

ATTRIBUTION
BPF_HASH(devs, struct dev_key_t, struct count_t, 4096);
BPF_HASH(cgroups, struct cg_key_t, struct count_t, 4096);
BPF_TABLE("lru_hash", u64, u32, proto_of, 65536);     // skbaddr -> ethertype, for receive

static void add(struct count_t *c, u32 len) {
    __sync_fetch_and_add(&c->packets, 1);
    __sync_fetch_and_add(&c->bytes, len);
}

static void count_dev(void *name, u32 dir, u32 proto, u32 len) {
    struct dev_key_t key = {};
    bpf_probe_read_kernel_str(&key.name, sizeof(key.name), name);
    key.dir = dir;
    key.proto = proto;
    struct count_t zero = {};
    struct count_t *c = devs.lookup_or_try_init(&key, &zero);
    if (c)
        add(c, len);
}

TRACEPOINT_PROBE(net, net_dev_start_xmit) {
    void *name = (void *)args + (args->data_loc_name & 0xFFFF);
    u32 proto = args->protocol;
    u64 skb = (u64)args->skbaddr;
    proto_of.update(&skb, &proto);
    count_dev(name, 0, proto, args->len);
    WHO
    struct cg_key_t ck = {.who = who, .proto = proto};
    bpf_probe_read_kernel_str(&ck.name, sizeof(ck.name), name);
    struct count_t zero = {};
    struct count_t *c = cgroups.lookup_or_try_init(&ck, &zero);
    if (c)
        add(c, args->len);
    return 0;
}

TRACEPOINT_PROBE(net, netif_receive_skb) {
    void *name = (void *)args + (args->data_loc_name & 0xFFFF);
    u64 skb = (u64)args->skbaddr;
    u32 proto = 0;
    u32 *p = proto_of.lookup(&skb);
    if (p) {
        proto = *p;
        proto_of.delete(&skb);
    }
    count_dev(name, 1, proto, args->len);
    return 0;
}

ENTRY_PROBES
"""

# Receive entry points of drivers that carry the protocol (net_dev_rx_verbose_template).
ENTRY_TRACEPOINTS = ("netif_receive_skb_entry", "napi_gro_receive_entry", "netif_rx_entry",
                     "napi_gro_frags_entry")

ENTRY_TEXT = r"""
TRACEPOINT_PROBE(net, EVENT) {
    u64 skb = (u64)args->skbaddr;
    u32 proto = args->protocol;
    proto_of.update(&skb, &proto);
    return 0;
}
"""


@dataclass(frozen=True, slots=True)
class Options:
    """``targets``: containers whose cgroup is charged for what its tasks transmit (none:
    every cgroup); ``devices``: device name -> container name (host-side veths: ``veths``);
    ``netns``: for the procfs fallback, the namespace file the devices live in."""

    targets: Sequence[Target] = ()
    devices: Mapping[str, str] = field(default_factory=dict)
    netns: str | None = None


@dataclass(frozen=True, slots=True)
class NetRow:
    """Packets and bytes of one (device, direction, protocol), seen by ``via`` ("device":
    what the device moved; "cgroup": what the container's tasks transmitted on it).
    ``direction`` is the device's; ``proto`` is ipv4/ipv6/arp/0xNNNN, "?" when unknown,
    "all" in procfs mode."""

    target: str | None
    via: str
    device: str
    direction: str
    proto: str
    packets: int
    bytes: int


def proto_name(ethertype: int) -> str:
    """ipv4 / ipv6 / arp, ``0xNNNN`` for another ethertype, ``?`` for 0 (not known)."""
    if ethertype == 0:
        return "?"
    return PROTOCOLS.get(ethertype, f"0x{ethertype:04x}")


def _check_devices(devices: Mapping[str, str]) -> None:
    for dev in devices:
        if not dev or len(dev.encode()) >= IFNAMSIZ or "/" in dev or dev.strip() != dev:
            raise errors.InvalidArgumentError(
                "devices", f"{dev!r} is not an interface name (1-15 bytes, no '/' or spaces)")


def render(opts: Options, events: Sequence[str] | None = None) -> str:
    """The BPF C program; ``events``: which receive entry tracepoints exist (default: read
    from tracefs)."""
    _check_devices(opts.devices)
    if events is None:
        events = [e for e in ENTRY_TRACEPOINTS if features.tracepoint_exists("net", e)]
    # With targets, the sender is matched by labkit.probes.attribution (its cgroup or an
    # ancestor is a target's); without, every cgroup counts under its own id.
    who = ("u32 ix = 0;\n    if (!lk_target_of(&ix)) return 0;\n    u64 who = ix;"
           if opts.targets else "u64 who = bpf_get_current_cgroup_id();")
    entries = "".join(ENTRY_TEXT.replace("EVENT", e) for e in events)
    return (BPF_TEXT.replace("ATTRIBUTION", attribution.render(opts.targets, host=False))
            .replace("WHO", who).replace("ENTRY_PROBES", entries))


def per_target(rows: Sequence[NetRow], *, host_side: bool = True) -> dict[str, dict[str, int]]:
    """{container: {rx_packets, rx_bytes, tx_packets, tx_bytes}} from device rows, in the
    container's view: on a host-side veth (``host_side``), the device's tx is the
    container's rx.  Rows of unnamed devices and cgroup rows are left out."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.target is None or r.via != "device":
            continue
        d = r.direction
        if host_side:
            d = "rx" if d == "tx" else "tx"
        t = out.setdefault(r.target, {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0,
                                      "tx_bytes": 0})
        t[f"{d}_packets"] += r.packets
        t[f"{d}_bytes"] += r.bytes
    return out


def veths(inspect: Mapping[str, Any]) -> list[str]:
    """The host-side veth of each bridge endpoint of a container, from its inspect JSON
    (NetworkSettings.Networks.*.EndpointID; labkit/engine/net/bridge.py veth_name)."""
    from labkit.engine.net.bridge import veth_name

    nets = ((inspect.get("NetworkSettings") or {}).get("Networks") or {})
    out = []
    for settings in nets.values():
        eid = (settings or {}).get("EndpointID") or ""
        if eid:
            out.append(veth_name(eid))
    return out


class NetProbe(base.BccProbe[NetRow]):
    """An attached netio; ``read()`` is a snapshot of the counters since attach."""

    mode = "tracepoint"
    missing: tuple[str, ...] = ()

    def __init__(self, bpf: Any, tool: str, opts: Options) -> None:
        super().__init__(bpf, tool)
        self.opts = opts

    def read(self) -> list[NetRow]:
        targets = self.opts.targets
        rows = []
        for k, v in self.bpf[b"devs"].items():
            dev = base.c_string(bytes(k.name))
            rows.append(NetRow(self.opts.devices.get(dev), "device", dev,
                               "tx" if int(k.dir) == 0 else "rx", proto_name(int(k.proto)),
                               int(v.packets), int(v.bytes)))
        for k, v in self.bpf[b"cgroups"].items():
            w = int(k.who)
            rows.append(NetRow(targets[w - 1].name if targets else f"cgroup:{w}", "cgroup",
                               base.c_string(bytes(k.name)), "tx", proto_name(int(k.proto)),
                               int(v.packets), int(v.bytes)))
        return sorted(rows, key=lambda r: (r.via, r.device, r.direction, r.proto,
                                           r.target or ""))

    def clear(self) -> None:
        self.bpf[b"devs"].clear()
        self.bpf[b"cgroups"].clear()


def attach(opts: Options | None = None) -> NetProbe:
    """Compile and attach netio.

    Raises:
        InvalidArgumentError: a device name is not an interface name.
        UnsupportedError: no bcc, not root, no tracefs or no net tracepoints.
    """
    opts = opts or Options()
    text = render(opts)
    attribution.check(opts.targets)
    base.require_root(TOOL)
    for event in ("net_dev_start_xmit", "netif_receive_skb"):
        base.require_tracepoint("net", event, TOOL)
    probe = NetProbe(base.load_bpf(text, TOOL), TOOL, opts)
    try:
        attribution.fill(probe.bpf, opts.targets)
    except BaseException:
        probe.close()
        raise
    return probe


# -- the fallback: the devices' own counters ----------------------------------------------------

def link_stats(devices: Sequence[str], netns: str | None = None) -> dict[str, dict[str, int]]:
    """{device: {rx_packets, rx_bytes, tx_packets, tx_bytes}} from ``ip -s -j link`` (the
    kernel's rtnl_link_stats64, the numbers under /sys/class/net/DEV/statistics), run in
    ``netns`` (a namespace file) with nsenter when given."""
    cmd = ["ip", "-s", "-j", "link", "show"]
    if netns is not None:
        cmd = ["nsenter", f"--net={netns}", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if r.returncode != 0:
        raise errors.LabkitError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    out = {}
    for link in json.loads(r.stdout or "[]"):
        name = link.get("ifname")
        if name in devices:
            s = link.get("stats64") or {}
            out[name] = {f"{d}_{k}": int((s.get(d) or {}).get(k, 0))
                         for d in ("rx", "tx") for k in ("packets", "bytes")}
    gone = [d for d in devices if d not in out]
    if gone:
        raise errors.NotFoundError("network device", ", ".join(gone),
                                   hint="name devices of the namespace given as netns")
    return out


class ProcfsNet(base.CounterFallback):
    """netio without bcc: device counters (packets, bytes per direction) since open."""

    missing = ("protocol split", "cgroup attribution")

    def __init__(self, opts: Options, reason: str = "") -> None:
        _check_devices(opts.devices)
        if not opts.devices:
            raise errors.InvalidArgumentError(
                "devices", "the procfs fallback reads device counters: name the devices",
                hint="Options(devices={'lkv...': 'web'}); veths(inspect) lists a container's")
        self.opts = opts
        self.tool = TOOL
        super().__init__(reason)  # why eBPF did not run (the front door says)
        self._base = link_stats(list(opts.devices), opts.netns)

    def read(self) -> list[NetRow]:
        if self._closed:
            raise errors.InvalidStateError("closed", "read", what=f"probe {self.tool}")
        now = link_stats(list(self.opts.devices), self.opts.netns)
        rows = []
        for dev, target in self.opts.devices.items():
            for d in ("rx", "tx"):
                rows.append(NetRow(target, "device", dev, d, "all",
                                   now[dev][f"{d}_packets"] - self._base[dev][f"{d}_packets"],
                                   now[dev][f"{d}_bytes"] - self._base[dev][f"{d}_bytes"]))
        return rows

    def clear(self) -> None:
        self._base = link_stats(list(self.opts.devices), self.opts.netns)



def procfs(opts: Options, reason: str = "") -> ProcfsNet:
    """The fallback: the named devices' counters (needs ``devices``); ``reason``: why eBPF
    is not used."""
    return ProcfsNet(opts, reason)


def open_probe(opts: Options | None = None) -> NetProbe | ProcfsNet:
    """eBPF when it can load, else the device counters (``.mode`` says which ran)."""
    opts = opts or Options()
    try:
        return attach(opts)
    except errors.UnsupportedError as err:
        return procfs(opts, str(err))
