"""Embedded DNS on user-defined networks, and --link on the default bridge, as dockerd does it.

Names are looked up with busybox nslookup (which asks the resolv.conf server) and ping
(getaddrinfo through /etc/hosts and resolv.conf).  Forwarding is checked against a small DNS
server in the peer netns (10.231.0.2, conftest.py) given with --dns.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.privileged

PEER = "10.231.0.2"
OUTSIDE_NAME, OUTSIDE_ADDR = "lk-outside.test", "10.231.0.99"


def _sleeper(nd: Any, *opts: str) -> str:
    name = nd.name()
    nd.ok("run", "-d", "--name", name, *opts, "busybox", "sleep", "300")
    return name


def _ip(nd: Any, c: str, net: str) -> str:
    return str(nd.inspect("container", c)["NetworkSettings"]["Networks"][net]["IPAddress"])


def _lookup(nd: Any, c: str, name: str) -> subprocess.CompletedProcess[str]:
    return nd.docker("exec", c, "nslookup", name, timeout=30)


def test_names_aliases_and_ids_resolve(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", net)
    srv = _sleeper(nd, "--network", net, "--network-alias", "lk-svc")
    cli = _sleeper(nd, "--network", net)
    want = _ip(nd, srv, net)
    sid = nd.inspect("container", srv)["Id"][:12]
    for q in (srv, "lk-svc", sid):
        r = _lookup(nd, cli, q)
        assert r.returncode == 0 and f"Address: {want}" in r.stdout, (q, r.stdout, r.stderr)
        assert "Server:\t\t127.0.0.11" in r.stdout
    r = nd.docker("exec", cli, "ping", "-c1", "-W2", srv)
    assert r.returncode == 0 and want in r.stdout
    # unknown names: NXDOMAIN, no address
    r = _lookup(nd, cli, "lk-no-such-name")
    assert r.returncode != 0 and want not in r.stdout


def test_name_gone_after_container_removed(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", net)
    srv = _sleeper(nd, "--network", net)
    cli = _sleeper(nd, "--network", net)
    assert _lookup(nd, cli, srv).returncode == 0
    nd.ok("rm", "-f", srv)
    assert _lookup(nd, cli, srv).returncode != 0


def test_other_networks_names_do_not_resolve(nd: Any) -> None:
    a, b = nd.name("n"), nd.name("n")
    nd.ok("network", "create", a)
    nd.ok("network", "create", b)
    srv = _sleeper(nd, "--network", a)
    cli = _sleeper(nd, "--network", b)
    assert _lookup(nd, cli, srv).returncode != 0


def test_default_bridge_has_no_name_resolution(nd: Any) -> None:
    """On the default bridge containers reach each other by address, never by name."""
    srv = _sleeper(nd)
    ip = _ip(nd, srv, "bridge")
    r = nd.docker("run", "--rm", "busybox", "sh", "-c", f"cat /etc/resolv.conf; "
                  f"ping -c1 -W2 {ip} >/dev/null && echo by-address; ping -c1 -W1 {srv}")
    assert "by-address" in r.stdout, r.stdout + r.stderr
    assert r.returncode != 0
    assert "127.0.0.11" not in r.stdout


def test_link_on_default_bridge_sets_hosts_and_env(nd: Any) -> None:
    srv = nd.name()
    nd.ok("run", "-d", "--name", srv, "--expose", "80", "busybox", "sleep", "300")
    ip = _ip(nd, srv, "bridge")
    cname = nd.name()
    out = nd.ok("run", "--rm", "--name", cname, "--link", f"{srv}:lkdb", "busybox", "sh", "-c",
                "env; echo ==; cat /etc/hosts; echo ==; ping -c1 -W2 lkdb")
    env_part, hosts, ping = out.split("==\n")
    env = dict(ln.split("=", 1) for ln in env_part.splitlines() if "=" in ln)
    assert env["LKDB_NAME"] == f"/{cname}/lkdb"
    assert env["LKDB_PORT"] == f"tcp://{ip}:80"
    assert env["LKDB_PORT_80_TCP"] == f"tcp://{ip}:80"
    assert env["LKDB_PORT_80_TCP_ADDR"] == ip
    assert env["LKDB_PORT_80_TCP_PORT"] == "80"
    assert env["LKDB_PORT_80_TCP_PROTO"] == "tcp"
    row = next(ln.split() for ln in hosts.splitlines() if "lkdb" in ln.split())
    assert row[0] == ip and srv in row
    assert ip in ping


def test_link_to_unknown_container_refused(nd: Any) -> None:
    r = nd.docker("run", "--rm", "--link", "lk-nt-nobody:x", "busybox", "true")
    assert r.returncode == 125 and "lk-nt-nobody" in r.stderr, r.stderr


_DNS_SERVER = textwrap.dedent(f"""
    import socket, struct, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("{PEER}", 53))
    print("ready", flush=True)
    while True:
        q, peer = s.recvfrom(512)
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        i = 12
        labels = []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        known = name == "{OUTSIDE_NAME}"
        ok = known and qtype == 1  # A: one answer; AAAA etc.: NOERROR, no answer
        rcode = 0x8180 if known else 0x8183
        hdr = struct.pack("!HHHHHH", qid, rcode, 1, 1 if ok else 0, 0, 0)
        ans = (b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4)
               + socket.inet_aton("{OUTSIDE_ADDR}")) if ok else b""
        s.sendto(hdr + question + ans, peer)
""")


@pytest.fixture
def outside_dns(nd: Any) -> Iterator[None]:
    """A DNS server in the peer netns answering one A record (the "outside" resolver)."""
    p = subprocess.Popen(["nsenter", f"--net=/run/netns/{nd.peer_netns}", sys.executable, "-c",
                          _DNS_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def test_other_names_are_forwarded(nd: Any, outside_dns: None) -> None:
    assert struct  # the server above packs with struct
    net = nd.name("n")
    nd.ok("network", "create", net)
    c = _sleeper(nd, "--network", net, "--dns", PEER)
    r = _lookup(nd, c, OUTSIDE_NAME)
    assert r.returncode == 0 and f"Address: {OUTSIDE_ADDR}" in r.stdout, r.stdout + r.stderr
    assert "Server:\t\t127.0.0.11" in r.stdout
    r = nd.docker("exec", c, "ping", "-c1", "-W1", OUTSIDE_NAME)
    assert OUTSIDE_ADDR in r.stdout + r.stderr  # resolved (the address itself does not answer)
