"""labkit.engine.net.overlay / .xfrm without a kernel: MTU arithmetic, input checks, the
SPI/key derivation both ends share, and what ``xfrm.apply`` asks of ip(8) (order of a key
rotation, no key material in argv), against a fake ``ip`` that keeps the SAD/SPD."""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Any

import pytest

from labkit import errors
from labkit.engine.net import overlay as ov
from labkit.engine.net import xfrm
from labkit.engine.net.driver import NetworkSpec
from labkit.engine.net.ipam import PoolConfig


def _keys(*tags: int) -> list[xfrm.Key]:
    return xfrm.parse_keys([{"Key": base64.b64encode(bytes([t]) * 20).decode(), "Tag": t}
                            for t in tags])


def test_mtu() -> None:
    assert ov.overlay_mtu(1500, encrypted=False) == 1450
    assert ov.overlay_mtu(1500, encrypted=True) == 1416
    assert ov.overlay_mtu(9000, encrypted=True) == 8916
    for u in range(1280, 1520):
        inner = ov.overlay_mtu(u, encrypted=True)
        for extra, fits in ((0, True), (1, False), (4, False)):
            d = 8 + 8 + 14 + inner + extra  # UDP + VXLAN + inner Ethernet + inner packet
            outer = 20 + 8 + 8 + -(-(d + 2) // 4) * 4 + 16  # IP, ESP hdr, IV, pad, ICV
            assert (outer <= u) is fits, (u, extra)
        assert 34 <= ov.overlay_mtu(u, encrypted=False) - inner <= 37


def test_names() -> None:
    assert ov.bridge_name(4097) == "lkov4097" and ov.vxlan_name(ov.MAX_VNI) == "lkvx16777215"
    assert len(ov.vxlan_name(ov.MAX_VNI)) <= 15
    for bad in (0, -1, ov.MAX_VNI + 1, True, "4097"):
        with pytest.raises(errors.InvalidArgumentError):
            ov.bridge_name(bad)  # type: ignore[arg-type]


def test_parse_peers() -> None:
    net = ipaddress.IPv4Network("10.0.1.0/24")
    got = ov.parse_peers([{"node": "n1", "addr": "192.168.5.2", "ips": ["10.0.1.3",
                                                                       "10.0.1.4/24"]}], net)
    assert got[0].addr == ipaddress.IPv4Address("192.168.5.2")
    assert [str(i) for i in got[0].ips] == ["10.0.1.3", "10.0.1.4"]
    for bad in ({"addr": "192.168.5.2"}, [{"addr": "::1"}], [{"addr": 5}], ["x"],
                [{"addr": "192.168.5.2", "ips": "10.0.1.3"}],
                [{"addr": "192.168.5.2", "ips": ["10.0.2.3"]}]):
        with pytest.raises(errors.InvalidArgumentError):
            ov.parse_peers(bad, net)


def test_parse_spec() -> None:
    spec = NetworkSpec(id="n", name="n", driver="overlay",
                       ipam=[PoolConfig(subnet="10.0.1.0/24", gateway="10.0.1.1")],
                       options={ov.OPT_VNI: "4097", ov.OPT_ENCRYPTED: "", ov.OPT_MTU: "1400"})
    vni, enc, mtu, subnet, gw = ov.parse_spec(spec)
    assert (vni, enc, mtu, str(subnet), str(gw)) == (4097, True, 1400, "10.0.1.0/24",
                                                     "10.0.1.1")
    for opts in ({ov.OPT_VNI: "x"}, {ov.OPT_VNI: "4097", "bogus": "1"},
                 {ov.OPT_VNI: "4097", ov.OPT_MTU: "40"}):
        with pytest.raises(errors.InvalidArgumentError):
            ov.parse_spec(NetworkSpec(id="n", name="n", driver="overlay", ipam=spec.ipam,
                                      options=opts))
    with pytest.raises(errors.InvalidArgumentError):
        ov.parse_spec(NetworkSpec(id="n", name="n", driver="overlay",
                                  options={ov.OPT_VNI: "4097"}))  # no subnet


def test_keys_and_derivation() -> None:
    k = _keys(5)[0]
    a, b = "192.168.5.1", "192.168.5.2"
    assert "key=" not in repr(k) and "\\x05" not in repr(k)
    assert xfrm.spi_for(5, a, b) == xfrm.spi_for(5, a, b) >= 256
    assert len({xfrm.spi_for(5, a, b), xfrm.spi_for(5, b, a), xfrm.spi_for(6, a, b)}) == 3
    assert len(xfrm.sa_key(k, a, b)) == 20
    assert xfrm.sa_key(k, a, b) != xfrm.sa_key(k, b, a)  # one GCM key per direction
    assert xfrm.sa_key(k, a, b) != xfrm.sa_key(_keys(6)[0], a, b)
    for bad in ("x", [{"Key": "AAAA", "Tag": 1}], [{"Key": base64.b64encode(b"k" * 20)
                                                    .decode(), "Tag": -1}],
                [{"Key": "!!", "Tag": 1}], _raw(1) + _raw(1)):
        with pytest.raises(errors.InvalidArgumentError):
            xfrm.parse_keys(bad)


def _raw(tag: int) -> list[dict[str, Any]]:
    return [{"Key": base64.b64encode(bytes([tag]) * 20).decode(), "Tag": tag}]


class FakeIp:
    """ip(8) for ``xfrm state/policy`` lists and batches: keeps a SAD and an SPD, prints
    them as iproute2 6.1 does, records every argv and every batch line."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str, int], tuple[int, str]] = {}
        self.policies: dict[tuple[str, str, int], int] = {}  # selector -> reqid (0: block)
        self.argv: list[list[str]] = []
        self.lines: list[str] = []

    def __call__(self, args: list[str], stdin: str | None = None) -> str:
        self.argv.append(args)
        if args[:3] == ["xfrm", "state", "list"]:
            return "".join(
                f"src {s} dst {d}\n\tproto esp spi {spi:#010x} reqid {r} mode transport\n"
                f"\treplay-window 64 \n\taead rfc4106(gcm(aes)) 0x{key} 128\n"
                for (s, d, spi), (r, key) in self.states.items())
        if args[:4] == ["-s", "xfrm", "state", "list"]:  # (ipxfrm.c's -s shapes)
            return "".join(
                f"src {s} dst {d}\n\tproto esp spi {spi:#010x}({spi}) reqid {r}({r:#010x}) "
                f"mode transport\n\treplay-window 64 seq 0x00000000 flag  (0x00000000)\n"
                f"\taead rfc4106(gcm(aes)) 0x{key} 128\n\tlifetime config:\n"
                "\t  limit: soft (INF)(bytes), hard (INF)(bytes)\n\tlifetime current:\n"
                "\t  168(bytes), 2(packets)\n"
                for (s, d, spi), (r, key) in self.states.items())
        if args[:3] == ["xfrm", "policy", "list"]:
            out = ""
            for (s, d, port), r in self.policies.items():
                out += f"src {s} dst {d} proto udp dport {port} \n"
                out += ("\tdir out action block priority 200 ptype main \n" if r == 0 else
                        "\tdir out priority 100 ptype main \n")
                out += f"\tmark {xfrm.MARK:#x}/0xffffffff \n"
                if r:
                    out += f"\ttmpl src {s[:-3]} dst {d[:-3]}\n\t\tproto esp reqid {r} " \
                           "mode transport\n"
            return out
        assert args == ["-batch", "-"] and stdin is not None
        for line in stdin.splitlines():
            self.lines.append(line)
            self._run(line)
        return ""

    def _run(self, line: str) -> None:
        w = line.split()
        kv: dict[str, str] = {}
        for i in range(len(w) - 1):
            kv.setdefault(w[i], w[i + 1])  # the selector's src/dst, not the template's
        if w[:3] == ["xfrm", "state", "add"]:
            self.states[(kv["src"], kv["dst"], int(kv["spi"], 16))] = (int(kv["reqid"]),
                                                                     kv["rfc4106(gcm(aes))"][2:])
        elif w[:3] == ["xfrm", "state", "delete"]:
            del self.states[(kv["src"], kv["dst"], int(kv["spi"], 16))]
        elif w[:3] == ["xfrm", "policy", "update"]:
            sel = (kv["src"], kv["dst"], int(kv["dport"]))
            self.policies[sel] = 0 if "block" in w else int(kv["reqid"])
        elif w[:3] == ["xfrm", "policy", "delete"]:
            del self.policies[(kv["src"], kv["dst"], int(kv["dport"]))]
        else:
            raise AssertionError(line)


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeIp:
    f = FakeIp()
    monkeypatch.setattr(xfrm, "_ip", f)
    monkeypatch.setattr(xfrm, "check_esp", lambda: None)
    return f


A, B, C = "192.168.5.1", "192.168.5.2", "192.168.5.3"


def test_apply_and_rotate(fake: FakeIp) -> None:
    xfrm.apply(A, [B, C], _keys(7), 4789)
    k7 = _keys(7)[0]
    assert set(fake.states) == {(s, d, xfrm.spi_for(7, s, d))
                                for s, d in ((A, B), (B, A), (A, C), (C, A))}
    assert fake.states[(A, B, xfrm.spi_for(7, A, B))][1] == xfrm.sa_key(k7, A, B).hex()
    assert fake.policies == {(f"{A}/32", f"{B}/32", 4789): k7.reqid,
                             (f"{A}/32", f"{C}/32", 4789): k7.reqid,
                             ("0.0.0.0/0", "0.0.0.0/0", 4789): 0}
    # no key material in any argv (only in the batch on stdin)
    assert all(not any(re.search(r"[0-9a-f]{32}", a) for a in argv) for argv in fake.argv)
    fake.lines.clear()
    xfrm.apply(A, [B, C], _keys(7), 4789)
    assert fake.lines == []  # idempotent: nothing to do
    # rotation: 8 becomes primary, 7 stays accepted -> states added before the policies move
    xfrm.apply(A, [B, C], _keys(8, 7), 4789)
    kinds = [" ".join(ln.split()[:3]) for ln in fake.lines]
    assert kinds == ["xfrm state add"] * 4 + ["xfrm policy update"] * 2
    assert {r for r in fake.policies.values() if r} == {_keys(8)[0].reqid}
    assert len(fake.states) == 8
    # 7 dropped: only deletions, after nothing else
    fake.lines.clear()
    xfrm.apply(A, [B, C], _keys(8), 4789)
    assert [" ".join(ln.split()[:3]) for ln in fake.lines] == ["xfrm state delete"] * 4
    assert {r for r, _ in fake.states.values()} == {_keys(8)[0].reqid}
    # a peer leaves: its policy, then its states go
    fake.lines.clear()
    xfrm.apply(A, [B], _keys(8), 4789)
    assert [" ".join(ln.split()[:3]) for ln in fake.lines] == \
        ["xfrm policy delete"] + ["xfrm state delete"] * 2
    assert xfrm.counters() == {(s, d, spi): (168, 2) for s, d, spi in fake.states}
    # no keys at all: the block policy alone, nothing sent in the clear
    xfrm.apply(A, [B], [], 4789)
    assert fake.states == {} and fake.policies == {("0.0.0.0/0", "0.0.0.0/0", 4789): 0}
    xfrm.clear()
    assert fake.policies == {}
    xfrm.apply(A, [B], _keys(8), 4789)
    fake.lines.clear()
    xfrm.ensure_block(4789)  # (a daemon restart) present: nothing touched
    assert fake.lines == []
    xfrm.clear()
    xfrm.ensure_block(4789)
    assert fake.policies == {("0.0.0.0/0", "0.0.0.0/0", 4789): 0}


def test_batch_errors_hide_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "Error: bad key 0x" + "ab" * 20)

    monkeypatch.setattr(xfrm.subprocess, "run", run)
    monkeypatch.setattr(xfrm.shutil, "which", lambda p: "/usr/bin/ip")
    with pytest.raises(xfrm.XfrmError) as ei:
        xfrm._batch(["xfrm state add ..."])
    assert "abab" not in str(ei.value) and "<hidden>" in str(ei.value)
    assert "abab" not in repr(xfrm._Hidden("0x" + "ab" * 20))


def test_nft_script(monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[str] = []
    monkeypatch.setattr(xfrm, "_nft", got.append)
    xfrm.program_vnis([4098, 4097, 4098], 4789)
    assert "@th,96,24 { 4097, 4098 } meta mark set 0x6c6b0e50" in got[0]
    assert "meta secpath missing counter drop" in got[0]
    assert "type route hook output" in got[0]
    xfrm.program_vnis([], 4789)
    assert got[1].strip().splitlines() == [f"table ip {xfrm.TABLE} {{}}",
                                           f"delete table ip {xfrm.TABLE}"]


def test_new_peer_of_encrypted_network_gets_sas(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str], list[int]]] = []
    monkeypatch.setattr(ov, "set_fdb", lambda vni, peers: None)
    monkeypatch.setattr(xfrm, "apply", lambda local, peers, keys, port: calls.append(
        (local, list(peers), [k.tag for k in keys])))
    drv = ov.OverlayDriver()
    drv.configure(A, 4789)
    drv._nets["e"] = ov._Net(4097, True, ipaddress.IPv4Network("10.0.1.0/24"), 1416)
    drv._nets["p"] = ov._Net(4098, False, ipaddress.IPv4Network("10.0.2.0/24"), 1450)
    drv.set_keys(_keys(3), [B])
    drv.set_peers("e", ov.parse_peers([{"addr": B}, {"addr": C}]))
    drv.set_peers("p", ov.parse_peers([{"addr": "192.168.5.9"}]))  # plain: no SAs
    assert calls == [(A, [B], [3]), (A, [B, C], [3])]
