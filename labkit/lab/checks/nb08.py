"""Checks of notebook 08 (networking): a veth pair between two namespaces, and reading the
nftables rule that publishes a port; and section 7's two exercises (08.publish, 08.dns),
checked read only on the lab host by net_demo's check_publish and check_dns.

08.veth makes three network namespaces ``lk-c8<x>-<random>``: two for the learner's
function to connect, and one it runs the function *in* (its thread setns(2)'d there, as
labkit.ns.netns does), so a link the function leaves "on the host" lands in a namespace the
check deletes, never on this machine.  Deleting the namespaces takes every link along.

08.dnat_target reads rules in the format labkit.engine.net.nft writes, first from a fixed
sample, then live from the notebook's lab host (``netlab``) with a container the check
publishes on a random port and removes again.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from labkit.lab.exercises import Namespace, defined, exercise, fail, need

__all__: list[str] = []


# -- 08.veth ---------------------------------------------------------------------------------

def _links(ns: str) -> list[dict[str, Any]]:
    """``ip -d -j addr`` in namespace ``ns`` (ip(8) JSON): every link, its addresses."""
    r = subprocess.run(["ip", "-n", ns, "-d", "-j", "addr"], capture_output=True, text=True,
                       timeout=10, check=False)
    out: list[dict[str, Any]] = json.loads(r.stdout or "[]") if r.returncode == 0 else []
    return out


def _run_in(ns_path: str, fn: Callable[..., Any], *args: str,
            timeout: float = 30) -> BaseException | None:
    """Run ``fn(*args)`` in a thread that lives in the network namespace at ``ns_path``;
    returns what it raised (None when it returned)."""
    from labkit.ns.netns import netns

    raised: list[BaseException] = []

    def body() -> None:
        try:
            with netns(ns_path):
                fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the check
            raised.append(err)

    t = threading.Thread(target=body, name="lk-chk08", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return TimeoutError(f"your function did not return within {timeout:.0f} s")
    return raised[0] if raised else None


def _diagnose(side: str, ns: str, ip: str, host_links: list[dict[str, Any]]) -> str | None:
    links = [ln for ln in _links(ns) if ln.get("ifname") != "lo"]
    if not links:
        if any((ln.get("linkinfo") or {}).get("info_kind") == "veth" for ln in host_links):
            return (f"{side} ({ns}) has only lo, and a veth was left in the namespace your "
                    "function ran in: move one end into each namespace (ip link set DEV "
                    "netns NAME, or create it there: ip link add A netns NS_A type veth peer "
                    "name B netns NS_B)")
        return (f"{side} ({ns}) has only lo: create a veth pair with one end in each "
                "namespace")
    mine = [ln for ln in links
            if any(a.get("local") == ip for a in ln.get("addr_info") or [])]
    if not mine:
        names = [ln.get("ifname") for ln in links]
        return f"no link of {side} ({ns}: {names}) has the address {ip}: add {ip}/24 to it"
    if "UP" not in (mine[0].get("flags") or []):
        return f"{mine[0].get('ifname')} in {side} has {ip} but is down: set it up"
    return None


@exercise("08.veth")
def veth(ns: Namespace) -> str:
    fn = defined(ns, "connect")
    need(os.geteuid() == 0, "network namespaces need root: run the notebook as root")
    from labkit.ns.netns import create_netns, remove_netns

    tag = secrets.token_hex(3)
    names = {k: f"lk-c8{k}-{tag}" for k in "abh"}
    net = random.randint(1, 254)
    ip_a, ip_b = f"10.213.{net}.1", f"10.213.{net}.2"
    made: list[str] = []
    try:
        for n in names.values():
            create_netns(n)
            made.append(n)
        err = _run_in(f"/run/netns/{names['h']}", fn, names["a"], names["b"], ip_a, ip_b)
        if err is not None:
            where = f"{type(err).__name__}: {err}"
            if isinstance(err, subprocess.CalledProcessError):
                where += f" ({(err.stderr or b'')!r:.120})"
            fail(f"connect({names['a']!r}, {names['b']!r}, {ip_a!r}, {ip_b!r}) raised {where}")
        host_links = _links(names["h"])
        for side, n, ip in (("ns_a", names["a"], ip_a), ("ns_b", names["b"], ip_b)):
            hint = _diagnose(side, n, ip, host_links)
            if hint:
                fail(hint)
        ping = subprocess.run(["nsenter", f"--net=/run/netns/{names['a']}", "busybox", "ping", "-c", "1",
                               "-W", "2", ip_b], capture_output=True, text=True, timeout=15,
                              check=False)
        need(ping.returncode == 0,
             f"both ends are up with their addresses, but {ip_a} cannot ping {ip_b}: are "
             "the two ends of ONE veth pair, with addresses in the same subnet (/24)?")
    finally:
        for n in made:
            remove_netns(n)
    return f"{ip_a} in one namespace pinged {ip_b} in the other across your veth pair"


# -- 08.dnat_target --------------------------------------------------------------------------

_SAMPLE = [  # nft list chain inet labkit publish-dnat, as labkit.engine.net.nft writes them
    'meta nfproto ipv4 tcp dport 8080 dnat ip to 172.17.0.3:80 comment "lk:3f2a9c0d1e7b"',
    'ip daddr 127.0.0.1 tcp dport 18080 dnat ip to 10.78.1.4:8000 comment "lk:77aa01bc9d2e"',
    'meta nfproto ipv4 udp dport 5353 dnat ip to 172.17.0.9:53 comment "lk:0b1c2d3e4f5a"',
    'meta nfproto ipv4 tcp dport 80 dnat ip to 172.17.0.5:443 comment "lk:99ee88dd77cc"',
]
_SAMPLE_CASES: dict[int, tuple[str, int] | None] = {
    8080: ("172.17.0.3", 80),
    18080: ("10.78.1.4", 8000),
    80: ("172.17.0.5", 443),
    9999: None,
}


def _answer(got: object) -> object:
    if isinstance(got, list):
        got = tuple(got)
    if isinstance(got, tuple) and len(got) == 2:
        try:
            return (str(got[0]), int(got[1]))
        except (TypeError, ValueError):
            return got
    return got


@exercise("08.dnat_target")
def dnat_target(ns: Namespace) -> str:
    fn: Callable[[list[str], int], Any] = defined(ns, "dnat_target")
    for port, want in _SAMPLE_CASES.items():
        got = _answer(fn(list(_SAMPLE), port))
        if got == want:
            continue
        if want is None:
            fail(f"dnat_target(rules, {port}) returned {got!r}: no rule matches dport {port}, "
                 "so return None")
        if port == 80:
            fail(f"dnat_target(rules, 80) returned {got!r}, expected {want}: 'dport 80' is "
                 "also the start of 'dport 8080'; compare the port as a whole number")
        fail(f"dnat_target(rules, {port}) returned {got!r}, expected {want}: find the rule "
             f"with 'dport {port}' and read the address:port after 'dnat ip to'")
    lab = _netlab(ns)
    name, port = f"lk-chk08-{secrets.token_hex(3)}", random.randint(20000, 29999)
    try:
        r = lab.docker("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sleep",
                       "600")
        need(r.returncode == 0, f"the check could not publish port {port}: {r.stderr.strip()}")
        ip = str(lab.inspect(name)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"])
        rules = lab.nft_chain("publish-dnat")
        got = _answer(fn(rules, port))
    finally:
        lab.docker("rm", "-f", name)
    need(got == (ip, 80), f"the check published {name} with -p {port}:80 (its address {ip}); "
                          f"dnat_target(rules, {port}) on the lab host's live rules returned "
                          f"{got!r}")
    return (f"read the sample rules right, and on the lab host: port {port} is rewritten to "
            f"{ip}:80, as the engine said")


# -- 08.publish and 08.dns: section 7's exercises, checked by net_demo -----------------------

def _said(fn: Callable[..., bool], *args: Any) -> str:
    """Run one of net_demo's printing checks; its PASS text, or stop with its hint."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # it prints PASS... or "not yet: <hint>"
        ok = fn(*args)
    text = out.getvalue().strip()
    need(ok, text.removeprefix("not yet: "))
    return text.removeprefix("PASS: ")


def _netlab(ns: Namespace) -> Any:
    need(ns.get("netlab") is not None, "'netlab' is not defined: run the notebook from the "
                                       "top (the set-up cell makes it), then this cell again")
    return ns["netlab"]


@exercise("08.publish")
def publish(ns: Namespace) -> str:
    from labkit.lab.net_demo import check_publish

    return _said(check_publish, _netlab(ns), 8088, "hello networks")


@exercise("08.dns")
def dns(ns: Namespace) -> str:
    from labkit.lab.net_demo import check_dns

    return _said(check_dns, _netlab(ns), "lk-ex", "shop")
