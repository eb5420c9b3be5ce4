"""Port publishing (-p, -P, `docker port`), as dockerd does it.

The server is busybox httpd serving one file; clients are busybox nc from the daemon's netns
(its loopback and its own address) and from other containers through the host's address
(hairpin).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

pytestmark = pytest.mark.privileged

PEER_HOST = "10.231.0.1"  # the daemon netns's address on the peer link (conftest.py)
HTTPD = ["sh", "-c", ("mkdir -p /www && echo lk-hello > /www/index.html && "
         "exec httpd -f -p 80 -h /www")]
GET = "GET / HTTP/1.0\r\n\r\n"


def _web(nd: Any, *opts: str) -> str:
    name = nd.name("web")
    nd.ok("run", "-d", "--name", name, *opts, "busybox", *HTTPD)
    return name


def _get_from_host(nd: Any, addr: str, port: int | str) -> str:
    """HTTP GET from the daemon's netns (busybox nc), retried while the server starts."""
    def once() -> str:
        r = subprocess.run(["nsenter", f"--net=/run/netns/{nd.netns}", "busybox", "nc", "-w",
                            "3", addr, str(port)], input=GET, capture_output=True, text=True,
                           timeout=20, check=False)
        return r.stdout if "lk-hello" in r.stdout else ""
    return str(_until(once))


def _get_from_container(nd: Any, addr: str, port: int | str, *opts: str) -> str:
    def once() -> str:
        r = nd.docker("run", "--rm", "-i", *opts, "busybox", "nc", "-w", "3", addr, str(port),
                      input=GET)
        return r.stdout if "lk-hello" in r.stdout else ""
    return str(_until(once))


def _until(check: Any, timeout: float = 15.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError("no answer in time")
        time.sleep(0.2)
    return got


def _port_lines(nd: Any, name: str, *which: str) -> list[str]:
    return nd.ok("port", name, *which).splitlines()


def test_publish_host_port_reachable_from_host_loopback(nd: Any) -> None:
    web = _web(nd, "-p", "8080:80")
    assert "80/tcp -> 0.0.0.0:8080" in _port_lines(nd, web)
    assert "0.0.0.0:8080" in _port_lines(nd, web, "80")
    assert "200 OK" in _get_from_host(nd, "127.0.0.1", 8080)
    assert "200 OK" in _get_from_host(nd, PEER_HOST, 8080)
    ports = nd.inspect("container", web)["NetworkSettings"]["Ports"]
    assert {"HostIp": "0.0.0.0", "HostPort": "8080"} in ports["80/tcp"]
    hc = nd.inspect("container", web)["HostConfig"]["PortBindings"]
    assert hc == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


def test_publish_reachable_from_other_containers_hairpin(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", net)
    _web(nd, "-p", "8081:80")
    # from a container on another bridge, through the host's address
    assert "lk-hello" in _get_from_container(nd, PEER_HOST, 8081, "--network", net)
    # from a container on the same (default) bridge, through the host's address: hairpin
    assert "lk-hello" in _get_from_container(nd, PEER_HOST, 8081)
    # and through the default bridge's gateway address
    gw = _bridge_gateway(nd)
    assert "lk-hello" in _get_from_container(nd, gw, 8081)


def _bridge_gateway(nd: Any) -> str:
    """The default bridge's own IPv4 address in the daemon's netns."""
    link = nd.inspect("network", "bridge")["Options"]["com.docker.network.bridge.name"]
    out = nd.host("ip", "-o", "-4", "addr", "show", link).stdout
    return str(out.split("inet ")[1].split("/")[0])


def test_publish_on_one_address_only(nd: Any) -> None:
    web = _web(nd, "-p", "127.0.0.1:8082:80")
    assert _port_lines(nd, web) == ["80/tcp -> 127.0.0.1:8082"]
    assert "lk-hello" in _get_from_host(nd, "127.0.0.1", 8082)
    r = subprocess.run(["nsenter", f"--net=/run/netns/{nd.netns}", "busybox", "nc", "-w", "2",
                        PEER_HOST, "8082"], input=GET, capture_output=True, text=True,
                       timeout=20, check=False)
    assert "lk-hello" not in r.stdout  # bound to 127.0.0.1 only
    ports = nd.inspect("container", web)["NetworkSettings"]["Ports"]
    assert ports["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8082"}]


def test_publish_ephemeral_port(nd: Any) -> None:
    web = _web(nd, "-p", "80")
    lines = [ln for ln in _port_lines(nd, web) if "0.0.0.0:" in ln]
    assert len(lines) == 1 and lines[0].startswith("80/tcp -> 0.0.0.0:")
    port = int(lines[0].rsplit(":", 1)[1])
    lo, hi = map(int, nd.host("cat", "/proc/sys/net/ipv4/ip_local_port_range").stdout.split())
    assert lo <= port <= hi
    assert "lk-hello" in _get_from_host(nd, "127.0.0.1", port)


_UDP_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
print("ready", flush=True)
data, peer = s.recvfrom(512)
s.sendto(b"echo:" + data, peer)
print(data.decode(), flush=True)
"""
_UDP_CLIENT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for _ in range(20):
    s.sendto(b"lk-udp", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(512)[0].decode()); break
    except OSError:
        time.sleep(0.2)
"""


def test_publish_udp(nd: Any) -> None:
    """-p 5353:53/udp: a datagram to the host's port reaches the container's port 53 and the
    answer comes back (busybox has no UDP server: python listens in the container's netns)."""
    import sys

    name = nd.name("udp")
    nd.ok("run", "-d", "--name", name, "-p", "5353:53/udp", "busybox", "sleep", "300")
    assert "53/udp -> 0.0.0.0:5353" in _port_lines(nd, name)
    assert nd.inspect("container", name)["NetworkSettings"]["Ports"]["53/udp"][0] == {
        "HostIp": "0.0.0.0", "HostPort": "5353"}
    pid = nd.inspect("container", name)["State"]["Pid"]
    srv = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c",
                            _UDP_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        r = subprocess.run(["nsenter", f"--net=/run/netns/{nd.netns}", sys.executable, "-c",
                            _UDP_CLIENT, "127.0.0.1", "5353"], capture_output=True, text=True,
                           timeout=30, check=False)
        assert r.stdout.strip() == "echo:lk-udp", r.stdout + r.stderr
        assert srv.stdout.readline().strip() == "lk-udp"
    finally:
        srv.kill()
        srv.wait()


def test_publish_all_with_expose(nd: Any) -> None:
    web = _web(nd, "--expose", "80", "-P")
    lines = [ln for ln in _port_lines(nd, web) if "0.0.0.0:" in ln]
    assert len(lines) == 1 and lines[0].startswith("80/tcp -> 0.0.0.0:")
    assert "lk-hello" in _get_from_host(nd, "127.0.0.1", lines[0].rsplit(":", 1)[1])


def test_publish_all_with_image_expose(nd: Any) -> None:
    tag = "lk-nt-expose:1"
    r = nd.docker("build", "-q", "-t", tag, "-", input="FROM busybox\nEXPOSE 80 53/udp\n",
                  env={"DOCKER_BUILDKIT": "0"}, timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        name = nd.name("web")
        nd.ok("run", "-d", "--name", name, "-P", tag, *HTTPD)
        lines = _port_lines(nd, name)
        tcp = [ln for ln in lines if ln.startswith("80/tcp -> 0.0.0.0:")]
        udp = [ln for ln in lines if ln.startswith("53/udp -> 0.0.0.0:")]
        assert len(tcp) == 1 and len(udp) == 1, lines
        assert "lk-hello" in _get_from_host(nd, "127.0.0.1", tcp[0].rsplit(":", 1)[1])
        nd.ok("rm", "-f", name)
    finally:
        nd.docker("rmi", "-f", tag)


def test_port_already_allocated(nd: Any) -> None:
    first = _web(nd, "-p", "8083:80")
    second = nd.name("web")
    r = nd.docker("run", "-d", "--name", second, "-p", "8083:80", "busybox", *HTTPD)
    assert r.returncode == 125 and "port is already allocated" in r.stderr, r.stderr
    st = nd.inspect("container", second)["State"]
    assert st["Running"] is False
    assert "lk-hello" in _get_from_host(nd, "127.0.0.1", 8083)  # the first keeps its port
    assert nd.inspect("container", first)["State"]["Running"] is True
    # docker-py: the same conflict, from start
    import docker.errors

    cl = nd.py()
    c = cl.containers.create("busybox", HTTPD, name=nd.name("web"), ports={"80/tcp": 8083})
    with pytest.raises(docker.errors.APIError) as ei:
        c.start()
    assert ei.value.status_code == 500 and "port is already allocated" in str(ei.value)


def test_port_freed_after_rm(nd: Any) -> None:
    web = _web(nd, "-p", "8084:80")
    nd.ok("rm", "-f", web)
    _web(nd, "-p", "8084:80")
    assert "lk-hello" in _get_from_host(nd, "127.0.0.1", 8084)


def test_docker_py_ports(nd: Any) -> None:
    cl = nd.py()
    c = cl.containers.run("busybox", HTTPD, name=nd.name("web"), detach=True,
                          ports={"80/tcp": ("127.0.0.1", 8085)})
    c.reload()
    assert c.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8085"}]}
    assert "lk-hello" in _get_from_host(nd, "127.0.0.1", 8085)
    assert json.loads(json.dumps(c.attrs["HostConfig"]["PortBindings"])) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8085"}]}
