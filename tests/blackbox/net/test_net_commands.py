"""`docker network create / ls / inspect / rm / prune / connect / disconnect`, as dockerd does them.

Every test runs against dockerd (Debian's docker.io) and labkit (see conftest.py); the
assertions are what the Docker CLI prints and what a container or the daemon's netns shows.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

pytestmark = pytest.mark.privileged


def _net(nd: Any, *args: str) -> str:
    """network create ... NAME -> the id the CLI prints (64 hex)."""
    out = nd.ok("network", "create", *args).strip()
    assert len(out) == 64 and int(out, 16) >= 0, out
    return out


def test_create_with_ipam_labels_and_bridge_name(nd: Any) -> None:
    """Subnet, gateway, ip-range, a label and the bridge's name all show in inspect, and the
    bridge exists in the daemon's netns holding the gateway address."""
    name, br = nd.name("n"), "lkntbr1"
    nid = _net(nd, "-d", "bridge", "--subnet", "10.201.0.0/24", "--gateway", "10.201.0.254",
               "--ip-range", "10.201.0.128/25", "--label", "lk.t=cmd",
               "-o", f"com.docker.network.bridge.name={br}", name)
    n = nd.inspect("network", name)
    assert (n["Name"], n["Id"], n["Driver"], n["Scope"]) == (name, nid, "bridge", "local")
    assert n["Internal"] is False and n["EnableIPv6"] is False
    assert n["IPAM"]["Config"] == [{"Subnet": "10.201.0.0/24", "IPRange": "10.201.0.128/25",
                                    "Gateway": "10.201.0.254"}]
    assert n["Labels"] == {"lk.t": "cmd"}
    assert n["Options"] == {"com.docker.network.bridge.name": br}
    assert n["Containers"] == {}
    assert "10.201.0.254/24" in nd.host("ip", "-br", "addr", "show", br).stdout
    # the first address handed out comes from the ip-range
    c = nd.name()
    nd.ok("run", "-d", "--name", c, "--network", name, "busybox", "sleep", "300")
    ip = nd.inspect("container", c)["NetworkSettings"]["Networks"][name]["IPAddress"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.201.0.128/25")
    members = nd.inspect("network", name)["Containers"]
    assert [(m["Name"], m["IPv4Address"]) for m in members.values()] == [(c, f"{ip}/24")]


def test_create_default_pool_gives_subnet_and_gateway(nd: Any) -> None:
    """Without --subnet each network gets its own private subnet from the default pools,
    overlapping no other network's (the default bridge's included)."""
    a, b = nd.name("n"), nd.name("n")
    _net(nd, a)
    _net(nd, b)
    subs = []
    for name in ("bridge", a, b):
        cfg = nd.inspect("network", name)["IPAM"]["Config"]
        sub = ipaddress.ip_network(cfg[0]["Subnet"])
        assert sub.is_private
        if name != "bridge":
            assert len(cfg) == 1 and ipaddress.ip_address(cfg[0]["Gateway"]) in sub
        subs.append(sub)
    assert not subs[0].overlaps(subs[1]) and not subs[0].overlaps(subs[2])
    assert not subs[1].overlaps(subs[2])
    assert nd.inspect("network", a)["Driver"] == "bridge"  # the default driver


def test_create_internal_and_ipv6(nd: Any) -> None:
    name = nd.name("n")
    _net(nd, "--internal", "--ipv6", "--subnet", "fd00:2a:2::/64",
         "--subnet", "10.202.0.0/24", name)
    n = nd.inspect("network", name)
    assert n["Internal"] is True and n["EnableIPv6"] is True
    assert {c["Subnet"] for c in n["IPAM"]["Config"]} == {"fd00:2a:2::/64", "10.202.0.0/24"}


def test_duplicate_name_refused(nd: Any) -> None:
    name = nd.name("n")
    _net(nd, name)
    r = nd.docker("network", "create", name)
    assert r.returncode == 1 and f"network with name {name} already exists" in r.stderr


def test_ls_filters_and_format(nd: Any) -> None:
    a, b = nd.name("n"), nd.name("n")
    _net(nd, "--label", "lk.ls=a", a)
    _net(nd, "--label", "lk.ls=b", b)
    fmt = ["--format", "{{.Name}} {{.Driver}} {{.Scope}}"]

    def ls(*f: str) -> list[str]:
        return sorted(nd.ok("network", "ls", *f, *fmt).splitlines())

    assert ls("--filter", f"name={a}") == [f"{a} bridge local"]
    assert ls("--filter", "label=lk.ls=b") == [f"{b} bridge local"]
    assert ls("--filter", "label=lk.ls") == sorted([f"{a} bridge local", f"{b} bridge local"])
    assert {"bridge bridge local", "host host local", "none null local"} <= set(
        ls("--filter", "type=builtin"))
    assert not any(ln.split()[0] in (a, b) for ln in ls("--filter", "type=builtin"))
    custom = ls("--filter", "type=custom")
    assert f"{a} bridge local" in custom and "bridge bridge local" not in custom
    assert set(ls("--filter", "driver=null")) == {"none null local"}
    # dangling: custom networks no container uses; never the predefined ones.  (dockerd
    # 20.10 also lists used ones, so that side is not asserted here.)
    dangling = [ln.split()[0] for ln in ls("--filter", "dangling=true")]
    assert a in dangling and b in dangling
    assert not {"bridge", "host", "none"} & set(dangling)
    # -q prints the 12-hex short ids; --no-trunc the full ones
    ids = nd.ok("network", "ls", "-q", "--filter", f"name={a}").split()
    full = nd.inspect("network", a)["Id"]
    assert ids == [full[:12]]
    assert nd.ok("network", "ls", "-q", "--no-trunc", "--filter", f"name={a}").split() == [full]


def test_default_networks_listed(nd: Any) -> None:
    out = nd.ok("network", "ls", "--format", "{{.Name}}\t{{.Driver}}\t{{.Scope}}")
    rows = set(out.splitlines())
    assert {"bridge\tbridge\tlocal", "host\thost\tlocal", "none\tnull\tlocal"} <= rows


def test_inspect_default_bridge_shape(nd: Any) -> None:
    """`network inspect bridge`: the default bridge, its link up in the daemon's netns with an
    address in the subnet; a container on it shows under Containers."""
    n = nd.inspect("network", "bridge")
    assert (n["Name"], n["Driver"], n["Scope"]) == ("bridge", "bridge", "local")
    assert n["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    sub = ipaddress.ip_network(n["IPAM"]["Config"][0]["Subnet"])
    link = n["Options"]["com.docker.network.bridge.name"]
    addrs = nd.host("ip", "-j", "addr", "show", link).stdout
    held = [f"{a['local']}" for a in json.loads(addrs)[0]["addr_info"] if a["family"] == "inet"]
    assert held and all(ipaddress.ip_address(x) in sub for x in held)
    c = nd.name()
    cid = nd.ok("run", "-d", "--name", c, "busybox", "sleep", "300").strip()
    member = nd.inspect("network", "bridge")["Containers"][cid]
    assert member["Name"] == c
    assert ipaddress.ip_interface(member["IPv4Address"]).network == sub
    assert len(member["MacAddress"].split(":")) == 6


def test_rm_in_use_refused_unknown_404(nd: Any) -> None:
    name, c = nd.name("n"), nd.name()
    _net(nd, name)
    nd.ok("run", "-d", "--name", c, "--network", name, "busybox", "sleep", "300")
    r = nd.docker("network", "rm", name)
    assert r.returncode == 1 and "has active endpoints" in r.stderr, r.stderr
    cl = nd.py()
    import docker.errors

    with pytest.raises(docker.errors.APIError) as ei:
        cl.api.remove_network(name)
    assert ei.value.status_code in (403, 409) and "active endpoints" in str(ei.value)
    with pytest.raises(docker.errors.NotFound) as nf:
        cl.api.remove_network("lk-nt-no-such-net")
    assert nf.value.status_code == 404
    r = nd.docker("network", "rm", "lk-nt-no-such-net")
    assert r.returncode == 1 and "network lk-nt-no-such-net not found" in r.stderr
    nd.ok("rm", "-f", c)
    assert nd.ok("network", "rm", name).strip() == name
    assert name not in nd.ok("network", "ls", "--format", "{{.Name}}").split()


def test_rm_removes_the_bridge_link_and_frees_the_subnet(nd: Any) -> None:
    name, br = nd.name("n"), "lkntbr2"
    before = nd.state()
    _net(nd, "--subnet", "10.205.0.0/24", "-o", f"com.docker.network.bridge.name={br}", name)
    assert br in nd.links()
    nd.ok("network", "rm", name)
    assert br not in nd.links()
    assert nd.state() == before
    again = nd.name("n")
    _net(nd, "--subnet", "10.205.0.0/24", again)  # the pool is free again
    nd.ok("network", "rm", again)


def test_prune_with_label_filter(nd: Any) -> None:
    keep, gone, used = nd.name("n"), nd.name("n"), nd.name("n")
    _net(nd, keep)
    _net(nd, "--label", "lk.prune=1", gone)
    _net(nd, "--label", "lk.prune=1", used)
    c = nd.name()
    nd.ok("run", "-d", "--name", c, "--network", used, "busybox", "sleep", "300")
    out = nd.ok("network", "prune", "-f", "--filter", "label=lk.prune=1")
    assert out == f"Deleted Networks:\n{gone}\n\n"
    names = nd.ok("network", "ls", "--format", "{{.Name}}").split()
    assert keep in names and used in names and gone not in names


def test_connect_with_ip_and_alias_then_disconnect(nd: Any) -> None:
    """connect --ip --alias: a second interface with that address inside the container, the
    alias resolves for other members; disconnect takes the interface away again."""
    name, c, other = nd.name("n"), nd.name(), nd.name()
    _net(nd, "--subnet", "10.203.0.0/24", name)
    nd.ok("run", "-d", "--name", c, "busybox", "sleep", "300")
    nd.ok("network", "connect", "--ip", "10.203.0.77", "--alias", "lkalias", name, c)
    addrs = nd.ok("exec", c, "ip", "-o", "-4", "addr")
    assert "inet 10.203.0.77/24" in addrs
    ep = nd.inspect("container", c)["NetworkSettings"]["Networks"]
    assert set(ep) == {"bridge", name}
    assert ep[name]["IPAddress"] == "10.203.0.77" and "lkalias" in ep[name]["Aliases"]
    assert nd.inspect("network", name)["Containers"]
    nd.ok("run", "-d", "--name", other, "--network", name, "busybox", "sleep", "300")
    r = nd.docker("exec", other, "ping", "-c1", "-W2", "lkalias")
    assert r.returncode == 0 and "10.203.0.77" in r.stdout, r.stdout + r.stderr
    nd.ok("network", "disconnect", name, c)
    assert "10.203.0.77" not in nd.ok("exec", c, "ip", "-o", "-4", "addr")
    assert set(nd.inspect("container", c)["NetworkSettings"]["Networks"]) == {"bridge"}
    assert [m["Name"] for m in nd.inspect("network", name)["Containers"].values()] == [other]
    r = nd.docker("network", "disconnect", name, c)
    assert r.returncode == 1 and "is not connected to" in r.stderr, r.stderr


def test_docker_py_network_round_trip(nd: Any) -> None:
    import docker.types

    cl = nd.py()
    name, c = nd.name("n"), nd.name()
    ipam = docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet="10.204.0.0/24", gateway="10.204.0.1")])
    net = cl.networks.create(name, driver="bridge", ipam=ipam, labels={"lk.py": "1"})
    assert cl.networks.get(name).id == net.id
    assert [n.name for n in cl.networks.list(names=[name])] == [name]
    ctr = cl.containers.run("busybox", ["sleep", "300"], name=c, detach=True)
    net.connect(ctr, ipv4_address="10.204.0.9")
    net.reload()
    assert [x.name for x in net.containers] == [c]
    out = ctr.exec_run(["ip", "-o", "-4", "addr"]).output.decode()
    assert "inet 10.204.0.9/24" in out
    net.disconnect(ctr)
    net.reload()
    assert net.containers == []
    ctr.remove(force=True)
    net.remove()
    assert cl.networks.list(names=[name]) == []


def test_issue_real_clients_walkthrough(nd: Any, wait: Any) -> None:
    """The issue's "Real clients" steps, in order, with the CLI's outputs."""
    nw, web, app = nd.name("n"), nd.name("web"), nd.name()
    nid = _net(nd, "-d", "bridge", nw)
    ls = nd.ok("network", "ls").splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [nid[:12], nw, "bridge", "local"] in [ln.split() for ln in ls[1:]]
    assert json.loads(nd.ok("network", "inspect", "bridge"))[0]["Name"] == "bridge"
    wid = nd.ok("container", "run", "--rm", "-d", "--name", web, "-p", "8080:80", "busybox",
                "sh", "-c", "mkdir /www && echo hi > /www/index.html && "
                "exec httpd -f -p 80 -h /www").strip()
    assert "80/tcp -> 0.0.0.0:8080" in nd.ok("port", web).splitlines()
    aid = nd.ok("container", "run", "--rm", "-d", "--network", nw, "--name", app, "busybox",
                "sleep", "1d").strip()
    assert [m["Name"] for m in nd.inspect("network", nw)["Containers"].values()] == [app]
    nd.ok("network", "connect", nw, web)
    assert set(nd.inspect("network", nw)["Containers"]) == {wid, aid}
    nd.ok("network", "disconnect", nw, web)
    assert set(nd.inspect("network", nw)["Containers"]) == {aid}
    nd.ok("stop", "-t", "1", web, app)
    # --rm: both gone once stopped, and with them the network's last user
    wait(lambda: not nd.ok("ps", "-aq", "--filter", f"id={wid}", "--filter", f"id={aid}"),
          what="--rm containers removed")
    assert nd.inspect("network", nw)["Containers"] == {}
    assert nd.ok("network", "rm", nw).strip() == nw
