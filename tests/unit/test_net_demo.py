"""labkit.lab.net_demo's pure parts: what it reads out of ip, docker port, ping, nslookup and
its own HTTP timer, the summary of samples, and the exercise's hints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labkit.lab import net_demo as nd
from labkit.lab.net_demo import PortRow, Sample

IP_LINK = """\
lo               UNKNOWN        00:00:00:00:00:00 <LOOPBACK,UP,LOWER_UP>
lk0              UP             d6:6b:4e:e5:7f:30 <BROADCAST,MULTICAST,UP,LOWER_UP>
lkv02ef1daa3ec@if2 UP             d6:6b:4e:e5:7f:30 <BROADCAST,MULTICAST,UP,LOWER_UP>
lkmp1@lkmp0      DOWN           7e:a8:09:a2:3e:40 <BROADCAST,MULTICAST,M-DOWN>
"""
IP_ADDR = """\
lo               UNKNOWN        127.0.0.1/8 ::1/128
lk0              UP             172.17.0.1/16 fe80::b45d:4fff:fe27:86c7/64
lkv02ef1daa3ec@if2 UP             fe80::d46b:4eff:fee5:7f30/64
lkmp1@lkmp0      DOWN
"""


def test_parse_ip_br_merges_link_and_addr() -> None:
    rows = {r.name: r for r in nd.parse_ip_br(IP_LINK, IP_ADDR)}
    assert list(rows) == ["lo", "lk0", "lkv02ef1daa3ec", "lkmp1"]
    assert rows["lk0"].addresses.split()[0] == "172.17.0.1/16"
    assert rows["lk0"].mac == "d6:6b:4e:e5:7f:30" and rows["lk0"].peer == ""
    veth = rows["lkv02ef1daa3ec"]
    assert veth.peer == "if2" and veth.state == "UP" and veth.addresses.startswith("fe80::")
    assert rows["lkmp1"].peer == "lkmp0" and rows["lkmp1"].addresses == ""
    assert rows["lkmp1"].flags == "<BROADCAST,MULTICAST,M-DOWN>"


def test_parse_port_ipv4_ipv6_and_noise() -> None:
    out = "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n53/udp -> 127.0.0.1:5353\nnonsense\n"
    assert nd.parse_port(out) == [PortRow("80/tcp", "0.0.0.0", 8080),
                                  PortRow("80/tcp", "::", 8080),
                                  PortRow("53/udp", "127.0.0.1", 5353)]
    assert nd.parse_port("") == []


PING = """\
PING 172.17.0.3 (172.17.0.3): 56 data bytes
64 bytes from 172.17.0.3: seq=0 ttl=64 time=0.360 ms
64 bytes from 172.17.0.3: seq=2 ttl=64 time=0.111 ms
64 bytes from 172.17.0.3: seq=1 ttl=64 time=0.089 ms

--- 172.17.0.3 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.089/0.186/0.360 ms
"""


def test_parse_ping_in_sequence_order_without_summary() -> None:
    assert nd.parse_ping(PING) == [0.360, 0.089, 0.111]
    lost = "PING 10.0.0.9 (10.0.0.9): 56 data bytes\n\n--- ping statistics ---\n" \
           "1 packets transmitted, 0 packets received, 100% packet loss\n"
    assert nd.parse_ping(lost) == []


NSLOOKUP = """\
Server:\t\t127.0.0.11
Address:\t127.0.0.11:53

Name:\tdatabase
Address: 10.78.1.5

"""


def test_parse_nslookup_skips_the_server_lines() -> None:
    assert nd.parse_nslookup(NSLOOKUP, "database") == ["10.78.1.5"]
    # the resolver's own address is never taken for an answer
    assert nd.parse_nslookup(NSLOOKUP.split("\n\n")[0], "database") == []
    nx = "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\n** server can't find lk-b1: NXDOMAIN\n"
    assert nd.parse_nslookup(nx, "lk-b1") == []
    fqdn = "Server: 127.0.0.11\nAddress: 127.0.0.11:53\n\nName: web.lab.\nAddress: 10.0.0.2\n" \
           "Address: 10.0.0.3\n"
    assert nd.parse_nslookup(fqdn, "web") == ["10.0.0.2", "10.0.0.3"]


def test_http_timer_against_a_local_server() -> None:
    """The timer script itself, run as the notebook runs it, against a one-shot loopback
    HTTP server of this test: n samples, each connect no longer than its whole request."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        r = subprocess.run([sys.executable, "-c", nd.HTTP_TIMER, "127.0.0.1",
                            str(srv.server_address[1]), "/", "3", "0"],
                           capture_output=True, text=True, timeout=30, check=True)
    finally:
        srv.shutdown()
        srv.server_close()
    conn, total = nd.parse_http_times(r.stdout)
    assert len(conn) == len(total) == 3
    assert all(0 < c <= t for c, t in zip(conn, total, strict=True))


def test_parse_http_times_takes_the_last_line() -> None:
    out = "warning: something\n" + json.dumps([[0.1, 0.5], [0.2, 0.7]]) + "\n"
    assert nd.parse_http_times(out) == ([0.1, 0.2], [0.5, 0.7])


def test_summarize_medians_p90_and_ratio() -> None:
    samples = [Sample("icmp", "icmp", v) for v in (0.1, 0.2, 0.3)] + \
              [Sample("http", "http", v) for v in (0.4, 0.6, 0.8, 1.0, 10.0)]
    rows = nd.summarize(samples)
    assert [r["path"] for r in rows] == ["icmp", "http"]
    assert rows[0]["median_ms"] == 0.2 and rows[0]["x first"] == 1.0
    assert rows[1]["median_ms"] == 0.8 and rows[1]["x first"] == 4.0
    assert rows[1]["p90_ms"] == 10.0 and rows[1]["n"] == 5


def test_network_summary_of_an_inspect_body() -> None:
    body = {"Name": "bridge", "Id": "4219f125326f" + "0" * 52, "Driver": "bridge",
            "Scope": "local", "Internal": False,
            "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
            "Options": {"com.docker.network.bridge.name": "lk0"},
            "Containers": {"abc": {"Name": "lk-first", "IPv4Address": "172.17.0.2/16"}}}
    s = nd.network_summary(body)
    assert s["id"] == "4219f125326f" and s["bridge"] == "lk0" and s["gateway"] == "172.17.0.1"
    assert s["containers"] == {"lk-first": "172.17.0.2"}
    assert nd.network_summary({"Name": "none", "IPAM": {"Config": []}})["subnet"] is None


# -- the exercise's hints ----------------------------------------------------------------------

WEB = PortRow("80/tcp", "0.0.0.0", 8088)


@pytest.mark.parametrize(("published", "page", "words"), [
    ({}, None, ("no container publishes host port 8088 (published now: none); run one with "
                "-p 8088:80")),
    ({"a": [PortRow("80/tcp", "0.0.0.0", 8080)]}, None, "published now: [8080]"),
    ({"a": [PortRow("80/tcp", "10.1.2.3", 8088)]}, None, "on 10.1.2.3 only"),
    ({"a": [PortRow("8000/tcp", "0.0.0.0", 8088)]}, "", "listening on port 8000 inside"),
    ({"a": [WEB]}, "hello world\n", "'hello world', which lacks 'hello networks'"),
])
def test_publish_hint_names_the_first_thing_missing(
        published: dict[str, list[PortRow]], page: str | None, words: str) -> None:
    hint = nd.publish_hint(8088, published, page, "hello networks")
    assert hint is not None and words in hint


def test_publish_hint_passes() -> None:
    assert nd.publish_hint(8088, {"web": [WEB]}, "<p>hello networks</p>\n",
                           "hello networks") is None
    loop = PortRow("80/tcp", "127.0.0.1", 8088)
    assert nd.publish_hint(8088, {"web": [loop]}, "hello networks", "hello networks") is None


def test_macvlan_status_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit._sys import features

    monkeypatch.setattr(features, "link_kind_builtin", lambda kind: False)
    monkeypatch.setattr(nd.importlib.util, "find_spec", lambda name: None)
    ok, why = nd.macvlan_status()
    assert not ok and "CONFIG_MACVLAN" in why and "no macvlan driver" in why
    monkeypatch.setattr(features, "link_kind_builtin", lambda kind: True)
    monkeypatch.setattr(nd.importlib.util, "find_spec", lambda name: object())
    assert nd.macvlan_status() == (True, "")


def test_closed_lab_refuses_use() -> None:
    from labkit import errors

    lab = nd.NetLab()
    with pytest.raises(errors.InvalidStateError):
        lab.docker("ps")
    lab.close()  # nothing made: closing is a no-op, and twice is fine
    lab.close()
    assert lab.left_over() == {"netns": False, "engine dir": False}


NET = {"Name": "lk-ex", "Driver": "bridge",
       "Containers": {"x": {"Name": "lk-ex-db", "IPv4Address": "172.19.0.2/16"}}}


@pytest.mark.parametrize(("net", "answers", "words"), [
    (None, [], "no network 'lk-ex': docker network create lk-ex"),
    ({**NET, "Name": "bridge"}, [], "default bridge has no embedded DNS"),
    ({**NET, "Driver": "macvlan"}, [], "uses the macvlan driver"),
    ({**NET, "Containers": {}}, [], "no container runs on lk-ex"),
    (NET, [], "'shop' does not resolve on lk-ex (its containers: ['lk-ex-db'])"),
])
def test_dns_hint_names_the_first_thing_missing(net: dict[str, object] | None,
                                                answers: list[str], words: str) -> None:
    hint = nd.dns_hint("shop", "lk-ex", net, answers)
    assert hint is not None and words in hint


def test_dns_hint_passes_when_it_resolved() -> None:
    assert nd.dns_hint("shop", "lk-ex", NET, ["172.19.0.2"]) is None


def test_macvlan_report_both_ways() -> None:
    assert nd.macvlan_report({"shown": False, "why": "no driver"}) == \
        "macvlan part skipped: no driver"
    seen = {"shown": True, "why": "", "parent_mac": "0a:00:00:00:00:01",
            "rows": [{"container": "lk-mac1", "mac (inside)": "02:42:0a:4e:09:02",
                      "ip": "10.78.9.2"},
                     {"container": "lk-mac2", "mac (inside)": "02:42:0a:4e:09:03",
                      "ip": "10.78.9.3"}],
            "peer_to_peer": True, "host_to_child": False}
    text = nd.macvlan_report(seen)
    assert "lkmp0 has MAC 0a:00:00:00:00:01" in text
    assert "02:42:0a:4e:09:02, 02:42:0a:4e:09:03" in text
    assert text.endswith("reach each other: True; the lab host reaches them: False")


def test_plot_rtts_log_axis_spans_every_sample() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [Sample("icmp", "icmp", v) for v in (0.05, 0.1, 0.2)] + \
              [Sample("http", "http", v) for v in (0.5, 0.8, 3.0)]
    ax = nd.plot_rtts(samples)
    try:
        lo, hi = ax.get_xlim()
        assert ax.get_xscale() == "log" and 0 < lo < 0.05 and hi > 3.0
        assert [t.get_text() for t in ax.get_yticklabels()] == ["icmp", "http"]
        assert any("median 0.800 ms" in t.get_text() for t in ax.texts)
    finally:
        plt.close(ax.figure)
