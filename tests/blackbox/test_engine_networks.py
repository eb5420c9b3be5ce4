"""labkit's daemon networking, end to end with the real Docker CLI, in a test-made netns.

The daemon runs inside ``lk-nwe-<pid>`` (its "host"); its bridges, veths and nftables table
live there and go with it.  These tests check what the engine owes beyond the CLI's view:
nothing leaks (links, namespace files, nft rules, addresses) after rm, a failed start or a
refused request; published ports and DNS survive a daemon restart (live-restore); a
container that exits while no daemon runs is torn down at the next start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from labkit.lab.engine import LabEngine
from labkit.measure.peers import docker_cli

NS = f"lk-nwe-{os.getpid()}"


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="module")
def eng() -> Iterator[LabEngine]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    _sh("ip", "netns", "add", NS)
    try:
        _sh("ip", "-n", NS, "link", "set", "lo", "up")
        e = LabEngine("nwe", netns=NS)
        try:
            e.start()
            yield e
        finally:
            e.stop()
    finally:
        _sh("ip", "netns", "del", NS, check=False)


class Docker:
    def __init__(self, eng: LabEngine) -> None:
        self.eng = eng
        self.cli = docker_cli()

    def __call__(self, *args: str, check: bool = True, timeout: float = 60
                 ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([self.cli, *args], env=self.eng.docker_env, capture_output=True,
                           text=True, timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.returncode}\n{r.stderr}")
        return r

    def inspect(self, ref: str, kind: str = "container") -> Any:
        return json.loads(self(kind, "inspect", ref).stdout)[0]


@pytest.fixture
def docker(eng: LabEngine) -> Iterator[Docker]:
    d = Docker(eng)
    before = kernel_state(eng)
    yield d
    d("rm", "-f", *[c for c in d("ps", "-aq").stdout.split()], check=False)
    for n in d("network", "ls", "-q", "--filter", "type=custom").stdout.split():
        d("network", "rm", n, check=False)
    after = kernel_state(eng)
    assert after == before, "kernel objects left behind"


def kernel_state(eng: LabEngine) -> dict[str, Any]:
    """What a container or network leaves behind if torn down wrongly."""
    links = sorted(ln.split()[0].split("@")[0]
                   for ln in _sh("ip", "-n", NS, "-br", "link").stdout.splitlines())
    rules = _sh("ip", "netns", "exec", NS, "nft", "list", "chain", "inet", "labkit",
                "publish-dnat", check=False).stdout.count("dnat")
    netns_dir = eng.run / "netns"
    held = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.exists() else []
    # the pool keeps a couple of spare namespaces ready: count only what is not spare
    return {"links": links, "dnat": rules, "files": len(held) <= 2}


def wget(url: str, ns: str = NS) -> str:
    # (no -T: Debian 12's busybox 1.35 wget segfaults with it; the timeout is ours)
    try:
        r = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "busybox", "wget", "-qO-",
                            url], capture_output=True, text=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return r.stdout.strip()


def wait_serving(url: str) -> str:
    for _ in range(50):
        out = wget(url)
        if out:
            return out
        time.sleep(0.1)
    return ""


def test_default_bridge_address_route_and_files(docker: Docker) -> None:
    out = docker("run", "--rm", "busybox", "sh", "-c",
                 "ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf /etc/hosts").stdout
    assert " 172.17." in out and "default via 172.17.0.1 dev eth0" in out
    assert "127.0.0.11" not in out  # the default bridge has no embedded DNS (as Docker)
    net = docker.inspect("bridge", "network")
    assert net["Driver"] == "bridge" and net["IPAM"]["Config"][0]["Subnet"] == "172.17.0.0/16"
    assert net["Options"]["com.docker.network.bridge.name"] == "lk0"


def test_publish_reach_from_host_loopback_and_hairpin(docker: Docker) -> None:
    docker("run", "-d", "--name", "lkweb", "-p", "8080:80", "busybox",
           "httpd", "-f", "-p", "80", "-h", "/etc")
    cid = docker.inspect("lkweb")["Id"]
    assert docker("port", "lkweb").stdout.strip().splitlines()[0] == "80/tcp -> 0.0.0.0:8080"
    assert wait_serving("http://127.0.0.1:8080/hostname") == cid[:12]
    # hairpin: the container itself and a sibling, through the host's address
    gw = docker.inspect("lkweb")["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
    assert docker("exec", "lkweb", "wget", "-qO-", f"http://{gw}:8080/hostname"
                  ).stdout.strip() == cid[:12]
    assert docker("run", "--rm", "busybox", "wget", "-qO-", f"http://{gw}:8080/hostname"
                  ).stdout.strip() == cid[:12]
    # a second container on the same host port: Docker's words, and it is not left running
    r = docker("run", "-d", "--name", "lkweb2", "-p", "8080:80", "busybox", "sleep", "60",
               check=False)
    assert r.returncode != 0 and "port is already allocated" in r.stderr
    assert docker.inspect("lkweb2")["State"]["Running"] is False


def test_user_networks_dns_isolation_and_cross_network_publish(docker: Docker) -> None:
    docker("network", "create", "--subnet", "10.77.1.0/24", "lknet1")
    docker("network", "create", "--subnet", "10.77.2.0/24", "lknet2")
    docker("run", "-d", "--name", "lkdb", "--network", "lknet1", "--network-alias", "database",
           "-p", "8081:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    ip1 = docker.inspect("lkdb")["NetworkSettings"]["Networks"]["lknet1"]["IPAddress"]
    assert ip1.startswith("10.77.1.")
    out = docker("run", "--rm", "--network", "lknet1", "busybox", "sh", "-c",
                 "nslookup lkdb; nslookup database; cat /etc/resolv.conf").stdout
    assert out.count(ip1) == 2 and "nameserver 127.0.0.11" in out
    # another bridge cannot reach it ...
    r = docker("run", "--rm", "--network", "lknet2", "busybox", "ping", "-c1", "-W1", ip1,
               check=False)
    assert r.returncode != 0
    # ... except through its published port on a host address, as with Docker
    wait_serving("http://127.0.0.1:8081/hostname")
    assert docker("run", "--rm", "--network", "lknet2", "busybox", "wget", "-qO-",
                  "http://10.77.2.1:8081/hostname").stdout.strip() == \
        docker.inspect("lkdb")["Id"][:12]
    # in use: refused with Docker's 403 words, nothing changed
    r = docker("network", "rm", "lknet1", check=False)
    assert r.returncode != 0 and "has active endpoints" in r.stderr
    # connect / disconnect a running container
    docker("network", "connect", "--ip", "10.77.2.50", "lknet2", "lkdb")
    assert "10.77.2.50" in docker("exec", "lkdb", "ip", "-4", "-o", "addr").stdout
    docker("network", "disconnect", "lknet2", "lkdb")
    assert "10.77.2.50" not in docker("exec", "lkdb", "ip", "-4", "-o", "addr").stdout


def test_internal_network_has_no_way_out(docker: Docker) -> None:
    docker("network", "create", "--internal", "--subnet", "10.77.3.0/24", "lkint")
    docker("run", "-d", "--name", "lkin1", "--network", "lkint", "busybox", "sleep", "60")
    out = docker("run", "--rm", "--network", "lkint", "busybox", "sh", "-c",
                 "ip route; ping -c1 -W1 lkin1 >/dev/null && echo PEER-OK").stdout
    assert "default" not in out and "PEER-OK" in out
    r = docker("run", "--rm", "--network", "lkint", "-p", "8082:80", "busybox", "true",
               check=False)
    assert r.returncode != 0 and "internal" in r.stderr


def test_container_netns_sharing_and_links(docker: Docker) -> None:
    docker("run", "-d", "--name", "lkbase", "-e", "SECRET_PORT=5", "--expose", "6379",
           "busybox", "sleep", "60")
    base = docker("exec", "lkbase", "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3]
    joined = docker("run", "--rm", "--network", "container:lkbase", "busybox", "ip", "-4",
                    "-o", "addr", "show", "eth0").stdout.split()[3]
    assert joined == base
    out = docker("run", "--rm", "--link", "lkbase:cache", "busybox", "sh", "-c",
                 "env; cat /etc/hosts").stdout
    ip = base.split("/")[0]
    assert f"CACHE_PORT=tcp://{ip}:6379" in out and "CACHE_ENV_SECRET_PORT=5" in out
    assert "CACHE_NAME=/" in out and f"{ip}\tcache" in out


def test_dns_options_and_add_host(docker: Docker) -> None:
    out = docker("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "lab.example",
                 "--dns-option", "ndots:3", "--add-host", "gw:host-gateway",
                 "--add-host", "db.lab:192.0.2.7", "busybox", "cat", "/etc/resolv.conf",
                 "/etc/hosts").stdout
    assert "nameserver 192.0.2.53" in out and "search lab.example" in out
    assert "options ndots:3" in out and "192.0.2.7\tdb.lab" in out
    assert "172.17.0.1\tgw" in out


def test_bad_input_leaves_nothing(docker: Docker) -> None:
    docker("network", "create", "--subnet", "10.77.4.0/24", "lkbad")
    cases = [
        (("network", "create", "--subnet", "10.77.4.0/25", "lkover"), "overlap"),
        (("network", "create", "--subnet", "10.77.300.0/24", "lkcidr"), "invalid"),
        (("network", "create", "--subnet", "10.77.5.0/24", "--gateway", "10.77.6.1", "lkgw"),
         "gateway"),
        (("network", "create", "-d", "nosuch", "lkdrv"), "not found"),
        (("network", "create", "-o", "lk.nosuch=1", "lkopt"), "lk.nosuch"),
        (("network", "create", "-o", "encrypted", "lkenc"), "encrypted"),
        (("run", "--rm", "--pull", "never", "--network", "lknosuch", "busybox", "true"),
         "not found"),
        (("run", "--rm", "--network", "lkbad", "--ip", "10.77.9.9", "busybox", "true"),
         "range"),
    ]
    for args, words in cases:
        r = docker(*args, check=False)
        assert r.returncode != 0 and words in r.stderr.lower(), (args, r.stderr)
    names = docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [n for n in names if n.startswith("lk") and n != "lkbad"]


def test_live_restore_and_teardown_while_down(docker: Docker, eng: LabEngine) -> None:
    docker("network", "create", "--subnet", "10.77.7.0/24", "lklive")
    docker("run", "-d", "--name", "lklweb", "--network", "lklive", "-p", "8083:80", "busybox",
           "httpd", "-f", "-p", "80", "-h", "/etc")
    docker("run", "-d", "--name", "lklshort", "--network", "lklive", "-p", "8084:80",
           "busybox", "sh", "-c", "httpd -p 80 -h /etc; sleep 3")
    docker("run", "-d", "--name", "lklcli", "--network", "lklive", "busybox", "sleep", "60")
    web = docker.inspect("lklweb")
    short_ip = docker.inspect("lklshort")["NetworkSettings"]["Networks"]["lklive"]["IPAddress"]
    assert wait_serving("http://127.0.0.1:8083/hostname") == web["Id"][:12]
    assert eng.daemon_pid is not None
    os.kill(eng.daemon_pid, signal.SIGKILL)
    time.sleep(4)  # lklshort exits while no daemon runs
    assert wget("http://127.0.0.1:8083/hostname") == web["Id"][:12]  # served meanwhile
    eng.start()
    assert wget("http://127.0.0.1:8083/hostname") == web["Id"][:12]
    again = docker.inspect("lklweb")["NetworkSettings"]
    assert again["Networks"]["lklive"]["IPAddress"] == \
        web["NetworkSettings"]["Networks"]["lklive"]["IPAddress"]
    assert again["Ports"]["80/tcp"][0]["HostPort"] == "8083"
    assert "10.77.7." in docker("exec", "lklcli", "nslookup", "lklweb").stdout  # DNS again
    short = docker.inspect("lklshort")
    assert short["State"]["Running"] is False and not short["NetworkSettings"]["Ports"].get(
        "80/tcp")
    # its port and address were released: both can be taken again
    assert short_ip.startswith("10.77.7.")
    docker("run", "-d", "--name", "lklnew", "--network", "lklive", "-p", "8084:80",
           "--ip", short_ip, "busybox", "sleep", "60")


def test_macvlan_children_talk_and_refusals(docker: Docker) -> None:
    # the parent: one end of a veth pair in the daemon's netns (this kernel has no dummy)
    _sh("ip", "-n", NS, "link", "add", "lkmvp", "type", "veth", "peer", "name", "lkmvq")
    try:
        _sh("ip", "-n", NS, "link", "set", "lkmvp", "up")
        _sh("ip", "-n", NS, "link", "set", "lkmvq", "up")
        docker("network", "create", "-d", "macvlan", "--subnet", "10.77.8.0/24",
               "-o", "parent=lkmvp", "lkmv")
        net = docker.inspect("lkmv", "network")
        assert net["Driver"] == "macvlan" and net["Options"] == {"parent": "lkmvp"}
        docker("run", "-d", "--name", "lkmv1", "--network", "lkmv", "--ip", "10.77.8.10",
               "busybox", "sleep", "60")
        out = docker("run", "--rm", "--network", "lkmv", "busybox", "ping", "-c1", "-W2",
                     "lkmv1").stdout
        assert "1 packets received" in out
        # a macvlan child hangs off the parent: no veth end in the daemon's namespace
        assert "lkv" not in _sh("ip", "-n", NS, "-br", "link").stdout
        r = docker("run", "--rm", "--network", "lkmv", "-p", "8085:80", "busybox", "true",
                   check=False)
        assert r.returncode != 0 and "port mappings" in r.stderr
        r = docker("network", "create", "-d", "macvlan", "-o", "parent=lknoparent", "lkmv2",
                   check=False)
        assert r.returncode != 0 and "parent" in r.stderr
        r = docker("network", "create", "-d", "ipvlan", "-o", "parent=lkmvp", "lkiv",
                   check=False)
        ipvlan_here = _sh("ip", "-n", NS, "link", "add", "lkivt", "link", "lkmvq", "type",
                          "ipvlan", check=False).returncode == 0
        if ipvlan_here:  # (the VM has it: tests/vm/test_vm_macvlan.py)
            _sh("ip", "-n", NS, "link", "del", "lkivt", check=False)
        else:
            assert r.returncode != 0 and "CONFIG_IPVLAN" in r.stderr and "VM" in r.stderr
        docker("rm", "-f", "lkmv1")
        docker("network", "rm", "lkmv")
    finally:
        _sh("ip", "-n", NS, "link", "del", "lkmvp", check=False)
