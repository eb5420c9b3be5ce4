"""`labkit network ...` and `labkit run -p/--network/...` end to end, in a test-made netns.

The daemon runs inside ``lk-nwc-<pid>`` (its "host"): its bridges, veths and nftables table
live there and go with it.  The `labkit` client talks to it over its unix socket; published
ports are fetched from that namespace's loopback with busybox wget (no -T: Debian 12's
busybox 1.35 wget segfaults with it; the timeout is the subprocess's).  Every container and
network is removed afterwards, and the namespace's links and DNAT rules are as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged

NS = f"lk-nwc-{os.getpid()}"
LABKIT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin",
                      "labkit")
Run = Callable[..., subprocess.CompletedProcess[str]]


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="module")
def eng() -> Iterator[LabEngine]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    _sh("ip", "netns", "add", NS)
    try:
        _sh("ip", "-n", NS, "link", "set", "lo", "up")
        e = LabEngine("nwc", netns=NS)
        try:
            e.start()
            yield e
        finally:
            e.stop()
    finally:
        _sh("ip", "netns", "del", NS, check=False)


def kernel_state() -> dict[str, Any]:
    links = sorted(ln.split()[0].split("@")[0]
                   for ln in _sh("ip", "-n", NS, "-br", "link").stdout.splitlines())
    rules = _sh("nsenter", f"--net=/run/netns/{NS}", "nft", "list", "chain", "inet", "labkit",
                "publish-dnat", check=False).stdout.count("dnat")
    return {"links": links, "dnat": rules}


@pytest.fixture
def labkit(eng: LabEngine) -> Iterator[Run]:
    def run(*args: str, check: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([LABKIT, *args], env=eng.env, capture_output=True, text=True,
                           timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"labkit {' '.join(args)}: {r.returncode}\n{r.stderr}")
        return r

    before = kernel_state()
    try:
        yield run
    finally:
        ids = run("ps", "-aq", check=False).stdout.split()
        if ids:
            run("rm", "-f", *ids, check=False)
        for n in run("network", "ls", "-q", "--filter", "type=custom", check=False
                     ).stdout.split():
            run("network", "rm", n, check=False)
    assert kernel_state() == before, "kernel objects left behind"
    assert run("network", "ls", "-q", "--filter", "type=custom").stdout == ""


def inspect(labkit: Run, ref: str) -> Any:
    return json.loads(labkit("inspect", ref).stdout)[0]


def wget(url: str) -> str:
    try:
        r = subprocess.run(["nsenter", f"--net=/run/netns/{NS}", "busybox", "wget", "-qO-",
                            url], capture_output=True, text=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return r.stdout.strip()


def wait_serving(url: str) -> str:
    for _ in range(50):
        if out := wget(url):
            return out
        time.sleep(0.1)
    return ""


def test_network_verbs_and_a_published_container_on_a_user_network(labkit: Run) -> None:
    nid = labkit("network", "create", "--subnet", "10.78.1.0/24", "--gateway", "10.78.1.254",
                 "--ip-range", "10.78.1.128/25", "--label", "lab=nwc", "lkcnet1"
                 ).stdout.strip()
    assert len(nid) == 64
    rows = [ln.split() for ln in labkit("network", "ls").stdout.splitlines()]
    assert rows[0] == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [nid[:12], "lkcnet1", "bridge", "local"] in rows
    assert labkit("network", "ls", "-q", "--no-trunc", "-f", "label=lab=nwc").stdout == \
        nid + "\n"
    ls_json = json.loads(labkit("network", "ls", "--format", "json", "-f", "name=lkcnet1"
                                ).stdout)
    assert (ls_json["ID"], ls_json["Driver"], ls_json["Internal"]) == (nid[:12], "bridge",
                                                                        "false")
    ipam = json.loads(labkit("network", "inspect", "-f", "{{json .IPAM.Config}}", "lkcnet1"
                             ).stdout)
    assert ipam == [{"Subnet": "10.78.1.0/24", "IPRange": "10.78.1.128/25",
                     "Gateway": "10.78.1.254"}]

    cid = labkit("run", "-d", "--name", "lkcweb", "--network", "lkcnet1", "--network-alias",
                 "www", "-p", "127.0.0.1:8090:80", "busybox", "httpd", "-f", "-p", "80", "-h",
                 "/etc").stdout.strip()
    ep = inspect(labkit, "lkcweb")["NetworkSettings"]["Networks"]["lkcnet1"]
    ip = ep["IPAddress"]
    assert ip.startswith("10.78.1.") and int(ip.rsplit(".", 1)[1]) >= 128  # from --ip-range
    assert ep["Gateway"] == "10.78.1.254" and "www" in ep["Aliases"]
    assert f"{ip}/24" in labkit("exec", "lkcweb", "ip", "-4", "-o", "addr", "show", "eth0"
                                ).stdout
    assert labkit("port", "lkcweb").stdout == "80/tcp -> 127.0.0.1:8090\n"
    assert labkit("port", "lkcweb", "80").stdout == "127.0.0.1:8090\n"
    assert wait_serving("http://127.0.0.1:8090/hostname") == cid[:12]
    # DNS by name and by alias on the user network
    out = labkit("run", "--rm", "--network", "lkcnet1", "busybox", "sh", "-c",
                 "nslookup lkcweb; nslookup www; wget -qO- http://www/hostname").stdout
    assert out.count(ip) >= 2 and out.rstrip().endswith(cid[:12])
    # --link on a user network: the link's alias resolves by the embedded DNS
    out = labkit("run", "--rm", "--network", "lkcnet1", "--link", "lkcweb:linked", "busybox",
                 "nslookup", "linked").stdout
    assert ip in out
    # in use: refused, and still there
    r = labkit("network", "rm", "lkcnet1", check=False)
    assert r.returncode == 1 and "active endpoints" in r.stderr
    assert labkit("network", "inspect", "-f", "{{.Name}}", "lkcnet1").stdout == "lkcnet1\n"

    # connect / disconnect a running container, with an address and an alias
    labkit("network", "create", "--subnet", "10.78.2.0/24", "lkcnet2")
    labkit("network", "connect", "--ip", "10.78.2.50", "--alias", "other", "lkcnet2", "lkcweb")
    assert "10.78.2.50/24" in labkit("exec", "lkcweb", "ip", "-4", "-o", "addr").stdout
    out = labkit("run", "--rm", "--network", "lkcnet2", "busybox", "nslookup", "other").stdout
    assert "10.78.2.50" in out
    labkit("network", "disconnect", "lkcnet2", "lkcweb")
    assert "10.78.2.50" not in labkit("exec", "lkcweb", "ip", "-4", "-o", "addr").stdout

    # prune takes the unused network only
    assert labkit("network", "prune", "-f").stdout == "Deleted Networks:\nlkcnet2\n"
    labkit("rm", "-f", "lkcweb")
    assert labkit("network", "rm", "lkcnet1").stdout == "lkcnet1\n"
    r = labkit("network", "inspect", "lkcnet1", check=False)
    assert r.returncode == 1 and "No such network: lkcnet1" in r.stderr


def test_publish_ranges_publish_all_and_fixed_ip(labkit: Run) -> None:
    labkit("network", "create", "--subnet", "10.78.3.0/24", "lkcnet3")
    labkit("run", "-d", "--name", "lkcrange", "--network", "lkcnet3", "--ip", "10.78.3.33",
           "-p", "8091-8092:80-81", "--expose", "82", "-P", "busybox", "sh", "-c",
           "mkdir /w81; echo eighty-one >/w81/index.html; httpd -p 80 -h /etc; "
           "httpd -p 81 -h /w81; httpd -f -p 82 -h /etc")
    settings = inspect(labkit, "lkcrange")["NetworkSettings"]
    assert settings["Networks"]["lkcnet3"]["IPAddress"] == "10.78.3.33"
    assert settings["Ports"]["80/tcp"][0]["HostPort"] == "8091"
    assert settings["Ports"]["81/tcp"][0]["HostPort"] == "8092"
    random_port = settings["Ports"]["82/tcp"][0]["HostPort"]
    assert int(random_port) >= 1024  # -P: an ephemeral host port for the --expose'd port
    lines = labkit("port", "lkcrange").stdout.splitlines()
    assert "80/tcp -> 0.0.0.0:8091" in lines and "81/tcp -> 0.0.0.0:8092" in lines
    assert f"82/tcp -> 0.0.0.0:{random_port}" in lines
    cid = inspect(labkit, "lkcrange")["Id"]
    assert wait_serving("http://127.0.0.1:8091/hostname") == cid[:12]
    assert wait_serving(f"http://127.0.0.1:{random_port}/hostname") == cid[:12]
    assert wait_serving("http://127.0.0.1:8092/") == "eighty-one"  # 8092 -> 81, its pair


def test_ipv6_internal_attachable_and_driver_options(labkit: Run) -> None:
    labkit("network", "create", "--ipv6", "--internal", "--attachable", "-o",
           "com.docker.network.bridge.name=lkc6br", "--subnet", "10.78.4.0/24", "--subnet",
           "fd00:78:4::/64", "--gateway", "fd00:78:4::1", "lkc6")
    net = json.loads(labkit("network", "inspect", "lkc6").stdout)[0]
    assert (net["EnableIPv6"], net["Internal"], net["Attachable"]) == (True, True, True)
    assert net["Options"]["com.docker.network.bridge.name"] == "lkc6br"
    assert {"Subnet": "fd00:78:4::/64", "Gateway": "fd00:78:4::1"} in net["IPAM"]["Config"]
    row = json.loads(labkit("network", "ls", "--format", "json", "-f", "name=lkc6").stdout)
    assert (row["IPv6"], row["Internal"]) == ("true", "true")
    out = labkit("run", "--rm", "--network", "lkc6", "--ip", "10.78.4.10", "--ip6",
                 "fd00:78:4::10", "busybox", "sh", "-c", "ip -o addr show eth0; ip route"
                 ).stdout
    assert "inet 10.78.4.10/24" in out and "inet6 fd00:78:4::10/64" in out
    assert "default" not in out  # --internal: no way out
    assert "lkc6br" in _sh("ip", "-n", NS, "-br", "link").stdout
    labkit("network", "rm", "lkc6")
    assert "lkc6br" not in _sh("ip", "-n", NS, "-br", "link").stdout


def test_aux_addresses_are_kept_free(labkit: Run) -> None:
    labkit("network", "create", "--subnet", "10.78.5.0/24", "--aux-address", "r=10.78.5.2",
           "--aux-address", "s=10.78.5.3", "lkcaux")
    out = labkit("run", "--rm", "--network", "lkcaux", "busybox", "ip", "-4", "-o", "addr",
                 "show", "eth0").stdout
    assert "inet 10.78.5.4/24" in out  # .1 the gateway, .2 and .3 reserved
    r = labkit("run", "--rm", "--network", "lkcaux", "--ip", "10.78.5.2", "busybox", "true",
               check=False)
    assert r.returncode == 125 and "already in use" in r.stderr


def test_dns_hosts_and_links(labkit: Run) -> None:
    labkit("run", "-d", "--name", "lkcbase", "-e", "SECRET=5", "--expose", "6379", "busybox",
           "sleep", "60")
    out = labkit("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "lab.example",
                 "--dns-option", "ndots:3", "--add-host", "gw:host-gateway", "--add-host",
                 "db.lab=192.0.2.7", "--link", "lkcbase:cache", "busybox", "sh", "-c",
                 "cat /etc/resolv.conf /etc/hosts; env").stdout
    assert "nameserver 192.0.2.53" in out and "search lab.example" in out
    assert "options ndots:3" in out and "192.0.2.7\tdb.lab" in out
    assert "172.17.0.1\tgw" in out
    base_ip = inspect(labkit, "lkcbase")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert f"CACHE_PORT=tcp://{base_ip}:6379" in out and "CACHE_ENV_SECRET=5" in out
    joined = labkit("run", "--rm", "--network", "container:lkcbase", "busybox", "ip", "-4",
                    "-o", "addr", "show", "eth0").stdout
    assert f"{base_ip}/" in joined


def test_mac_address_is_applied(labkit: Run) -> None:
    out = labkit("run", "--rm", "--mac-address", "02:42:ac:11:00:42", "busybox", "ip", "link",
                 "show", "eth0").stdout
    assert "link/ether 02:42:ac:11:00:42 " in out


def test_bad_input_is_refused_and_leaves_nothing(labkit: Run) -> None:
    cases = [
        (("run", "--rm", "--network", "lkcnosuch", "busybox", "true"), "not found"),
        (("run", "--rm", "-p", "80:90-91", "busybox", "true"), "--publish"),
        (("run", "--rm", "--add-host", "nohost", "busybox", "true"), "--add-host"),
        (("run", "--rm", "--network-alias", "x", "busybox", "true"), "--network-alias"),
        (("network", "create", "--gateway", "10.78.9.1", "lkcbad"), "--subnet"),
        (("network", "create", "-d", "nosuch", "lkcdrv"), "not found"),
        (("network", "connect", "lkcnosuch", "lkcnobody"), "No such container"),
    ]
    for args, words in cases:
        r = labkit(*args, check=False)
        assert r.returncode != 0 and words in r.stderr, (args, r.stderr)
    assert labkit("ps", "-aq").stdout == ""
    assert labkit("network", "ls", "-q", "-f", "type=custom").stdout == ""
