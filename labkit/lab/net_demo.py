"""Notebook 08 (networking) helpers: a lab "host" network namespace with a labkit engine in it,
and the seed's walkthrough as library calls -- the default bridge, a published port, bridges
isolated from each other, a user-defined network with DNS, macvlan where it exists -- plus a
round-trip measurement and the exercise's check.

The lab host itself (``NetLab``: a namespace of its own, the engine in it, both removed when
the notebook closes the lab or dies) is labkit.lab.netlab's; it is re-exported here so the
notebook needs one import.

Everything goes through public surfaces: the real Docker CLI against the lab engine, and
``ip`` / ``nft`` / ``busybox wget`` / python run *inside* the lab namespace with
``nsenter --net`` (never ``ip netns exec``, which remounts /sys).  The parsers of what those
tools print are pure functions, unit-tested in tests/unit/test_net_demo.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.lab.netlab import NetLab

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "GAP",
    "HTTP_TIMER",
    "MACVLAN_PARENT",
    "MACVLAN_SUBNET",
    "LinkRow",
    "NetLab",
    "PortRow",
    "Sample",
    "address",
    "can_ping",
    "check_dns",
    "check_publish",
    "dns_hint",
    "host_links",
    "http_times",
    "lookup",
    "macvlan_cleanup",
    "macvlan_demo",
    "macvlan_report",
    "macvlan_status",
    "measure",
    "network_summary",
    "parse_http_times",
    "parse_ip_br",
    "parse_nslookup",
    "parse_ping",
    "parse_port",
    "ping_times",
    "plot_rtts",
    "publish_hint",
    "published",
    "reach_rows",
    "resolv_conf",
    "sleeper",
    "summarize",
    "web",
]


def host_links(lab: NetLab) -> list[LinkRow]:
    """``ip -br link`` and ``ip -br addr`` of the lab host, merged per interface."""
    return parse_ip_br(lab.host("ip", "-br", "link").stdout,
                       lab.host("ip", "-br", "addr").stdout)


# -- starting things ---------------------------------------------------------------------------

def web(lab: NetLab, name: str, *publish: str, network: str | None = None,
        page: str | None = None, extra: Sequence[str] = ()) -> str:
    """``docker run -d --name NAME [-p SPEC...] busybox httpd`` serving /www on port 80, with
    ``index.html`` holding ``page`` (default: the container's hostname).  Its ID."""
    args = ["run", "-d", "--name", name]
    for p in publish:
        args += ["-p", p]
    if network:
        args += ["--network", network]
    if page is not None:  # through the environment: the text never becomes shell syntax
        args += ["-e", f"PAGE={page}"]
    script = ('mkdir -p /www && echo "${PAGE:-$(hostname)}" > /www/index.html && '
              "exec httpd -f -p 80 -h /www")
    return lab.must(*args, *extra, "busybox", "sh", "-c", script).strip()


def sleeper(lab: NetLab, name: str, network: str | None = None, *extra: str) -> str:
    """``docker run -d --name NAME [--network N] busybox sleep 600``: its ID."""
    args = ["run", "-d", "--name", name, *(["--network", network] if network else []), *extra]
    return lab.must(*args, "busybox", "sleep", "600").strip()


def address(lab: NetLab, container: str, network: str = "bridge") -> str:
    """The container's IPv4 address on ``network`` (inspect)."""
    nets = lab.inspect(container)["NetworkSettings"]["Networks"]
    return str(nets[network]["IPAddress"])


def network_summary(net: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``docker network inspect NAME`` the seed looks at, flat: driver, subnet,
    gateway, the Linux bridge's name, flags, and the containers attached (name -> IPv4)."""
    ipam = (net.get("IPAM") or {}).get("Config") or [{}]
    opts = net.get("Options") or {}
    return {"name": net.get("Name"), "id": str(net.get("Id", ""))[:12],
            "driver": net.get("Driver"), "scope": net.get("Scope"),
            "subnet": ipam[0].get("Subnet"), "gateway": ipam[0].get("Gateway"),
            "bridge": opts.get("com.docker.network.bridge.name", ""),
            "internal": net.get("Internal"),
            "containers": {c.get("Name"): str(c.get("IPv4Address", "")).split("/")[0]
                           for c in (net.get("Containers") or {}).values()}}


# -- parsers (pure) ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LinkRow:
    """One interface of ``ip -br link`` / ``ip -br addr`` (ip(8) --brief)."""

    name: str
    peer: str        # after '@': the veth's peer index (if<N>) or the master's link
    state: str
    mac: str
    flags: str
    addresses: str


def parse_ip_br(link_out: str, addr_out: str) -> list[LinkRow]:
    """Merge ``ip -br link`` (name state mac <flags>) and ``ip -br addr`` (name state addr...)."""
    addrs: dict[str, str] = {}
    for line in addr_out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            addrs[parts[0].split("@")[0]] = " ".join(parts[2:])
    rows = []
    for line in link_out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, _, peer = parts[0].partition("@")
        mac = next((p for p in parts[2:] if re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", p)),
                   "")
        flags = next((p for p in parts[2:] if p.startswith("<")), "")
        rows.append(LinkRow(name, peer, parts[1], mac, flags, addrs.get(name, "")))
    return rows


@dataclass(frozen=True, slots=True)
class PortRow:
    """One line of ``docker port NAME``: container port -> host address and port."""

    container_port: str
    host_ip: str
    host_port: int


def parse_port(out: str) -> list[PortRow]:
    """``80/tcp -> 0.0.0.0:8080`` (and ``[::]:8080``) lines as rows."""
    rows = []
    for line in out.splitlines():
        m = re.fullmatch(r"\s*(\d+/\w+) -> (\[[0-9a-fA-F:.]*\]|[\d.]+):(\d+)\s*", line)
        if m:
            rows.append(PortRow(m.group(1), m.group(2).strip("[]"), int(m.group(3))))
    return rows


_PING_LINE = re.compile(r"seq=(\d+) ttl=\d+ time=([\d.]+) ms")


def parse_ping(out: str) -> list[float]:
    """The round-trip times (ms) of busybox/iputils ping's reply lines, in sequence order
    (``64 bytes from 172.17.0.3: seq=0 ttl=64 time=0.081 ms``)."""
    got = [(int(m.group(1)), float(m.group(2))) for m in _PING_LINE.finditer(out)]
    return [t for _, t in sorted(got)]


def parse_nslookup(out: str, name: str) -> list[str]:
    """The addresses busybox nslookup printed for ``name`` (after the server's own lines).

    busybox 1.35 prints ``Server:``/``Address:`` of the resolver first, then per answer
    ``Name: NAME`` followed by ``Address: IP`` lines; ``** server can't find`` on NXDOMAIN.
    """
    found: list[str] = []
    current = None
    for line in out.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Name":
            current = value
        elif key == "Address" and current is not None:
            ip = value.split()[0] if value else ""
            if current.rstrip(".").split(".")[0] == name.split(".")[0] and ip not in found:
                found.append(ip)
    return found


# -- the measurement ---------------------------------------------------------------------------

# Run by the lab host's (or a container's netns's) python: one warm-up request (neighbour
# entry, conntrack, page cache), then N times, GAP seconds apart (paced like `ping -i`), a
# fresh TCP connection to HOST:PORT, `GET PATH`, read to EOF; prints one JSON list of
# [connect_ms, total_ms] pairs.
HTTP_TIMER = r"""
import json, socket, sys, time
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
gap = float(sys.argv[5])
req = f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
out = []
for i in range(n + 1):
    time.sleep(gap)
    t0 = time.perf_counter_ns()
    s = socket.create_connection((host, port), timeout=5)
    t1 = time.perf_counter_ns()
    s.sendall(req)
    while s.recv(65536):
        pass
    t2 = time.perf_counter_ns()
    s.close()
    if i:
        out.append([(t1 - t0) / 1e6, (t2 - t0) / 1e6])
print(json.dumps(out))
"""


def parse_http_times(out: str) -> tuple[list[float], list[float]]:
    """HTTP_TIMER's JSON line -> (connect times, whole-request times), ms."""
    pairs = json.loads(out.strip().splitlines()[-1])
    return [float(c) for c, _ in pairs], [float(t) for _, t in pairs]


@dataclass(frozen=True, slots=True)
class Sample:
    """One round trip, timed: which path, what kind, milliseconds."""

    path: str
    what: str
    ms: float


GAP = 0.05  # seconds between two probes, for ping (-i) and the HTTP timer alike


def ping_times(lab: NetLab, src: str, dst_ip: str, n: int = 40) -> list[float]:
    """``docker exec SRC ping -c N+1 -i GAP DST``: N ICMP round trips (ms, busybox's own
    times), the first (ARP resolution) left out as the HTTP timer leaves out its warm-up."""
    r = lab.docker("exec", src, "ping", "-c", str(n + 1), "-i", str(GAP), "-W", "2", dst_ip,
                   timeout=30 + n)
    return parse_ping(r.stdout)[1:]


def http_times(lab: NetLab, host: str, port: int, n: int = 40, via: str | None = None,
               path: str = "/index.html") -> tuple[list[float], list[float]]:
    """N timed HTTP GETs (HTTP_TIMER) from the lab host, or from container ``via``'s network
    namespace: (connect ms, request ms)."""
    cmd = (sys.executable, "-c", HTTP_TIMER, host, str(port), path, str(n), str(GAP))
    r = lab.in_container_net(via, *cmd) if via else lab.host(*cmd, timeout=60)
    if r.returncode != 0:
        raise errors.LabkitError(f"http timer {host}:{port}: {r.stderr.strip()[-300:]}")
    return parse_http_times(r.stdout)


def summarize(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Per path: count, median, p90 (ms), and the median over the first path's median
    (``x first``: how many times the first path's round trip)."""
    paths = list(dict.fromkeys(s.path for s in samples))
    med0 = None
    rows = []
    for p in paths:
        ms = sorted(s.ms for s in samples if s.path == p)
        med = statistics.median(ms)
        if med0 is None:
            med0 = med
        p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
        rows.append({"path": p, "n": len(ms), "median_ms": round(med, 3),
                     "p90_ms": round(p90, 3),
                     "x first": round(med / med0, 1) if med0 else float("nan")})
    return rows


def plot_rtts(samples: Sequence[Sample], ax: Axes | None = None) -> Axes:
    """Box plot per path (log ms), every sample a dot coloured by kind, the median written
    at the right of each row."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.8))
    paths = list(dict.fromkeys(s.path for s in samples))
    data = [[s.ms for s in samples if s.path == p] for p in paths]
    kinds = [next(s.what for s in samples if s.path == p) for p in paths]
    colours = {"icmp": "tab:green", "connect": "tab:blue", "http": "tab:orange"}
    ax.set_xscale("log")  # before any limit: a linear axis's limits include 0
    ax.boxplot(data, showfliers=False, orientation="horizontal", widths=0.5)
    right = max(max(d) for d in data) * 1.6
    for i, (d, kind) in enumerate(zip(data, kinds, strict=True), start=1):
        ax.plot(d, [i + (k % 7 - 3) * 0.04 for k in range(len(d))], ".", alpha=0.45,
                color=colours.get(kind, "tab:grey"))
        ax.text(right, i, f"median {statistics.median(d):.3f} ms", fontsize=8, va="center")
    ax.set_xlim(min(min(d) for d in data) / 1.5, right * 6)
    ax.set_yticks(range(1, len(paths) + 1), paths, fontsize=8)
    ax.set_xlabel("milliseconds (log)")
    ax.set_title("round trips: across the bridge vs through a published port")
    ax.invert_yaxis()
    return ax


def measure(lab: NetLab, client: str, server: str, host_port: int, n: int = 40
            ) -> list[Sample]:
    """The five paths of the notebook's plot, ``n`` samples each: ICMP, TCP connect and a
    whole HTTP GET from ``client`` to ``server`` on the same bridge; TCP connect and HTTP GET
    from the lab host to 127.0.0.1:``host_port`` (DNAT in labkit's nft table)."""
    ip = address(lab, server)
    out = [Sample("ICMP ping, container -> container", "icmp", t)
           for t in ping_times(lab, client, ip, n)]
    c_direct, h_direct = http_times(lab, ip, 80, n, via=client)
    c_pub, h_pub = http_times(lab, "127.0.0.1", host_port, n)
    out += [Sample("TCP connect, container -> container:80", "connect", t) for t in c_direct]
    out += [Sample(f"TCP connect, host -> 127.0.0.1:{host_port}", "connect", t) for t in c_pub]
    out += [Sample("HTTP GET, container -> container:80", "http", t) for t in h_direct]
    out += [Sample(f"HTTP GET, host -> 127.0.0.1:{host_port}", "http", t) for t in h_pub]
    return out


# -- bridges and names -------------------------------------------------------------------------

def can_ping(lab: NetLab, src: str, dst_ip: str) -> bool:
    """``docker exec SRC ping -c1 -W1 DST`` succeeded."""
    return lab.docker("exec", src, "ping", "-c", "1", "-W", "1", dst_ip).returncode == 0


def reach_rows(lab: NetLab, probes: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """For each (source container, target container, target's network): the networks of
    both and whether one ICMP echo came back within a second."""
    rows = []
    for src, dst, net in probes:
        src_nets = sorted(lab.inspect(src)["NetworkSettings"]["Networks"])
        ip = address(lab, dst, net)
        rows.append({"from": src, "from networks": ",".join(src_nets), "to": f"{dst} ({ip})",
                     "to network": net, "same network": net in src_nets,
                     "ping": "reply" if can_ping(lab, src, ip) else "no reply"})
    return rows


def resolv_conf(lab: NetLab, network: str) -> str:
    """/etc/resolv.conf of a fresh container on ``network``: whom it asks for names."""
    return lab.must("run", "--rm", "--network", network, "busybox", "cat", "/etc/resolv.conf")


def lookup(lab: NetLab, container: str, name: str) -> list[str]:
    """``docker exec CONTAINER nslookup NAME``: the addresses found ([] when none)."""
    return parse_nslookup(lab.docker("exec", container, "nslookup", name, timeout=20).stdout,
                          name)


# -- macvlan, where it exists ------------------------------------------------------------------

def macvlan_status() -> tuple[bool, str]:
    """(can the lab show macvlan?, why not).  Needs the kernel's macvlan link type and
    labkit's macvlan driver (labkit.engine.net.macvlan, written on its own branch)."""
    from labkit._sys import features

    missing = []
    if features.link_kind_builtin("macvlan") is False:
        missing.append("the kernel has no macvlan link type (CONFIG_MACVLAN); use the VM")
    if importlib.util.find_spec("labkit.engine.net.macvlan") is None:
        missing.append("this labkit has no macvlan driver yet (labkit/engine/net/macvlan.py "
                       "is missing: `docker network create -d macvlan` is refused)")
    return (not missing, "; ".join(missing))


MACVLAN_PARENT = ("lkmp0", "lkmp1")   # a veth pair of the lab host: the "existing network"
MACVLAN_SUBNET = "10.78.9.0/24"


def macvlan_demo(lab: NetLab) -> dict[str, Any]:
    """Two containers on a macvlan network whose parent is ``lkmp0`` (one end of a veth pair
    made here in the lab host, address 10.78.9.254: the stand-in for a LAN), looked at and
    removed again (containers, network, parent).  Returns
    {"shown": False, "why": ...} when this kernel or this labkit cannot; else each
    container's MAC and address, whether they reach each other (bridge mode), and whether
    the lab host reaches them through the parent (it must not: macvlan.rst)."""
    ok, why = macvlan_status()
    if not ok:
        return {"shown": False, "why": why}
    a, b = MACVLAN_PARENT
    made = lab.host("ip", "link", "add", a, "type", "veth", "peer", "name", b)
    if made.returncode != 0:
        return {"shown": False, "why": f"no veth parent: {made.stderr.strip()}"}
    for cmd in (("ip", "addr", "add", "10.78.9.254/24", "dev", a),
                ("ip", "link", "set", a, "up"), ("ip", "link", "set", b, "up")):
        lab.host(*cmd)
    r = lab.docker("network", "create", "-d", "macvlan", "-o", f"parent={a}", "--subnet",
                   MACVLAN_SUBNET, "--gateway", "10.78.9.1", "lk-mac")
    if r.returncode != 0:
        lab.host("ip", "link", "del", a)
        return {"shown": False, "why": f"docker network create -d macvlan: {r.stderr.strip()}"}
    try:
        rows = []
        for name in ("lk-mac1", "lk-mac2"):
            sleeper(lab, name, "lk-mac")
            # busybox ip has no -br: the MAC from its one-line form, as the container sees it
            link = lab.must("exec", name, "ip", "-o", "link", "show", "eth0")
            mac = re.search(r"link/ether (\S+)", link)
            rows.append({"container": name, "mac (inside)": mac.group(1) if mac else "",
                         "ip": address(lab, name, "lk-mac")})
    except errors.LabkitError as err:
        macvlan_cleanup(lab)
        return {"shown": False, "why": f"the macvlan network was made, but: {err}"}
    try:
        parent_mac = next((r.mac for r in host_links(lab) if r.name == a), "")
        # busybox ping exits 1 when no reply came; anything else means the probe itself failed
        probe = lab.host("busybox", "ping", "-c", "1", "-W", "1", rows[0]["ip"])
        if probe.returncode not in (0, 1):
            raise errors.LabkitError(f"ping from the lab host: {probe.stderr.strip()}")
        return {"shown": True, "why": "", "rows": rows, "parent_mac": parent_mac,
                "peer_to_peer": can_ping(lab, "lk-mac1", rows[1]["ip"]),
                "host_to_child": probe.returncode == 0}
    finally:
        macvlan_cleanup(lab)


def macvlan_report(mac: dict[str, Any]) -> str:
    """macvlan_demo's result in a sentence: what was seen, or why the part was skipped."""
    if not mac["shown"]:
        return f"macvlan part skipped: {mac['why']}"
    return (f"parent {MACVLAN_PARENT[0]} has MAC {mac['parent_mac']}; the containers have "
            f"{', '.join(r['mac (inside)'] for r in mac['rows'])}; they reach each other: "
            f"{mac['peer_to_peer']}; the lab host reaches them: {mac['host_to_child']}")


def macvlan_cleanup(lab: NetLab) -> None:
    """Remove the macvlan demo's containers, network and veth parent (if made)."""
    lab.docker("rm", "-f", "lk-mac1", "lk-mac2")
    lab.docker("network", "rm", "lk-mac")
    lab.host("ip", "link", "del", MACVLAN_PARENT[0])


# -- the exercise ------------------------------------------------------------------------------

def publish_hint(port: int, published: dict[str, list[PortRow]], page: str | None,
                 expect: str) -> str | None:
    """None when the exercise passed, else the hint for the first thing missing.

    ``published``: container name -> its ``docker port`` rows; ``page``: what the lab host
    fetched from 127.0.0.1:PORT ('' or None when nothing answered)."""
    owners = [(name, row) for name, rows in published.items() for row in rows
              if row.host_port == port]
    if not owners:
        taken = sorted({r.host_port for rows in published.values() for r in rows})
        return (f"no container publishes host port {port} (published now: {taken or 'none'}); "
                f"run one with -p {port}:80")
    name, row = owners[0]
    if row.host_ip not in ("0.0.0.0", "127.0.0.1", "::", ""):
        return (f"{name} publishes {port} on {row.host_ip} only: 127.0.0.1:{port} does not "
                f"reach it; use -p {port}:80 or -p 127.0.0.1:{port}:80")
    if not page:
        return (f"{name} publishes {row.container_port} on host port {port} but nothing "
                f"answers: is httpd listening on port {row.container_port.split('/')[0]} "
                "inside, and serving a directory with index.html?")
    if expect not in page:
        return f"127.0.0.1:{port} answers {page.strip()[:60]!r}, which lacks {expect!r}"
    return None


def published(lab: NetLab) -> dict[str, list[PortRow]]:
    """Every running container's ``docker port`` rows, by name."""
    names = lab.must("ps", "--format", "{{.Names}}").split()
    return {n: parse_port(lab.docker("port", n).stdout) for n in names}


def check_publish(lab: NetLab, port: int = 8088, expect: str = "hello networks") -> bool:
    """The exercise: a container serves a page holding ``expect`` on the lab host's
    127.0.0.1:PORT.  Prints PASS or a hint; returns whether it passed."""
    pub = published(lab)
    page = lab.wait_fetch(f"http://127.0.0.1:{port}/", tries=20) if any(
        r.host_port == port for rows in pub.values() for r in rows) else None
    hint = publish_hint(port, pub, page, expect)
    if hint is None:
        print(f"PASS: 127.0.0.1:{port} on the lab host serves {page.strip()[:60]!r}"
              if page else "PASS")
        return True
    print(f"not yet: {hint}")
    return False



def dns_hint(name: str, network: str, net: dict[str, Any] | None,
             answers: Sequence[str]) -> str | None:
    """None when ``name`` resolved on ``network``, else the hint for the first thing missing.

    ``net``: ``docker network inspect NETWORK`` (None when there is no such network);
    ``answers``: what nslookup NAME found from a fresh container on it."""
    if net is None:
        return f"no network {network!r}: docker network create {network}"
    if net.get("Name") == "bridge":
        return ("the default bridge has no embedded DNS (as in Docker): create a "
                "user-defined network and use that")
    if net.get("Driver") != "bridge":
        return f"{network} uses the {net.get('Driver')} driver: make it a bridge network"
    if not net.get("Containers"):
        return (f"no container runs on {network}: run one with --network {network} and "
                f"--name {name} or --network-alias {name}")
    if not answers:
        members = sorted(str(c.get("Name")) for c in net["Containers"].values())
        return (f"{name!r} does not resolve on {network} (its containers: {members}); name "
                f"one {name!r} or give it --network-alias {name}")
    return None


def check_dns(lab: NetLab, network: str, name: str) -> bool:
    """The second exercise: ``name`` resolves on ``network``, asked from a fresh container
    there (``docker run --rm --network NETWORK busybox nslookup NAME``).  Prints PASS or a
    hint; returns whether it passed."""
    r = lab.docker("network", "inspect", network)
    net = json.loads(r.stdout)[0] if r.returncode == 0 and r.stdout.strip() else None
    answers: list[str] = []
    if net is not None and net.get("Name") != "bridge" and net.get("Containers"):
        out = lab.docker("run", "--rm", "--network", network, "busybox", "nslookup", name,
                         timeout=30)
        answers = parse_nslookup(out.stdout, name)
    hint = dns_hint(name, network, net, answers)
    if hint is None:
        print(f"PASS: {name} resolves to {', '.join(answers)} on {network}")
        return True
    print(f"not yet: {hint}")
    return False
