"""The encrypted overlay: IPsec ESP in transport mode between node underlay addresses (XFRM).

Only the VXLAN packets of encrypted networks are encrypted, as Docker's ``-o encrypted``
does (libnetwork drivers/overlay/encryption.go), in three parts:

1. nftables, table ``ip lk-overlay`` (``program_vnis``): an output chain of type ``route``
   marks every outgoing UDP packet to the data port whose VNI -- the 24 bits at byte 12 of
   the transport header: UDP header 8 + VXLAN flags/reserved 4 (RFC 7348 5.) -- is an
   encrypted one (``udp dport P @th,96,24 {VNIs} meta mark set MARK``).  A ``route`` chain
   makes the kernel look the route up again when the mark changed (ip_route_me_harder),
   and that lookup goes through XFRM with the new mark.  An input chain drops every VXLAN
   packet of an encrypted VNI that did not come through ESP (``meta secpath missing``):
   the VXLAN socket's encap_rcv runs before the UDP layer's XFRM policy check
   (udp_queue_rcv_one_skb), so an inbound policy would not stop plain packets.
2. XFRM policies (``apply``): per peer ``dir out`` for UDP to the data port with MARK,
   template ESP transport from this node to the peer with the primary key's reqid; and
   one lower-priority ``action block`` policy for every other marked packet, so traffic of
   an encrypted network to a node without a key is dropped, never sent in the clear.
3. XFRM states: per accepted key and peer, one outbound (this node -> peer) and one inbound
   (peer -> this node) SA, ``aead rfc4106(gcm(aes))`` with a 16-byte key + 4-byte salt and a
   128-bit ICV (RFC 4106), anti-replay window 64.  Both ends compute the same SPI and SA
   key without talking: SPI = a hash of (key tag, source, destination) above 255 (RFC 4303
   2.1 reserves 1-255), key+salt = HKDF-SHA256 (RFC 5869) of the network key with the same
   three as info -- so no two SAs share a GCM key, and a nonce repeated across SAs cannot
   happen.  The reqid of an SA names its key (REQID_BASE + tag), which is how the out
   policy picks the primary key's SA.

Key rotation has no gap: new states first, then the policies moved to the new primary
(``ip xfrm policy update`` replaces in place), then the states of keys no longer accepted
removed.  Every accepted key keeps its inbound SAs, so a peer still sending with the
previous primary is understood until the managers drop that key.

Keys go to ``ip -batch -`` on stdin: an argument would show in /proc/PID/cmdline, which
every user can read.  Error output of ip is scrubbed of hex strings before it is reported.
pyroute2 has no usable XFRM API; iproute2's ip-xfrm(8) is the reference.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from labkit import errors

__all__ = [
    "MARK",
    "TABLE",
    "Key",
    "apply",
    "check_esp",
    "clear",
    "counters",
    "ensure_block",
    "esp_supported",
    "parse_keys",
    "program_vnis",
    "sa_key",
    "spi_for",
]

TABLE = "lk-overlay"
MARK = 0x6C6B0E50  # "lk" + a tag: the out policies match exactly this mark
REQID_BASE = 0x6C6B0000  # reqid = base | (tag & 0xffff): labkit's SAs, one reqid per key
PRIO_PEER = 100  # ip-xfrm(8): the lower priority value wins
PRIO_BLOCK = 200
KEY_LEN = 20  # AES-128 key 16 + salt 4 (RFC 4106 8.1)
ICV_BITS = 128
REPLAY_WINDOW = 64
# ip-xfrm's SA line; with -s it adds the SPI in decimal and the reqid in hex (ipxfrm.c
# xfrm_id_info_print): "proto esp spi 0x0000abcd(43981) reqid 1(0x00000001) mode ..."
_SPI_RE = re.compile(r"proto esp spi (0x[0-9a-f]+)(?:\(\d+\))? reqid (\d+)")
_HEX_RUN = re.compile(r"0x[0-9a-fA-F]{16,}|[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class Key:
    """One network key of the swarm: 20 bytes and its Lamport tag."""

    key: bytes = field(repr=False)
    tag: int

    @property
    def reqid(self) -> int:
        return REQID_BASE | (self.tag & 0xFFFF)


def parse_keys(keys: object) -> list[Key]:
    """The snapshot's ``[{"Key": b64, "Tag": int}]`` (first = primary) checked."""
    if not isinstance(keys, list):
        raise errors.InvalidArgumentError("keys", "must be a list of objects")
    out: list[Key] = []
    for i, k in enumerate(keys):
        if not isinstance(k, dict):
            raise errors.InvalidArgumentError(f"keys[{i}]", "must be an object")
        tag = k.get("Tag")
        if isinstance(tag, bool) or not isinstance(tag, int) or tag < 0:
            raise errors.InvalidArgumentError(f"keys[{i}].Tag", "must be a non-negative "
                                              "integer")
        try:
            raw = base64.b64decode(k.get("Key") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raw = b""
        if len(raw) != KEY_LEN:
            raise errors.InvalidArgumentError(f"keys[{i}].Key", f"must be {KEY_LEN} bytes "
                                              "in base64 (16 AES key + 4 salt)")
        if any(x.tag & 0xFFFF == tag & 0xFFFF for x in out):
            raise errors.InvalidArgumentError(f"keys[{i}].Tag", f"tag {tag} repeats another "
                                              "key's")
        out.append(Key(raw, tag))
    return out


def _packed(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def spi_for(tag: int, src: str, dst: str) -> int:
    """The SPI of the SA ``src -> dst`` for key ``tag``: the same on both nodes."""
    h = hashlib.sha256(b"labkit-overlay-spi" + tag.to_bytes(8, "big") + _packed(src)
                       + _packed(dst)).digest()
    return int.from_bytes(h[:4], "big") % (2**32 - 256) + 256


def sa_key(key: Key, src: str, dst: str) -> bytes:
    """The SA's 16-byte AES key + 4-byte salt, derived from the network key (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=None,
                info=b"labkit-overlay-esp" + key.tag.to_bytes(8, "big") + _packed(src)
                + _packed(dst)).derive(key.key)


# --- ip and nft -----------------------------------------------------------------------

class XfrmError(errors.LabkitError):
    """ip xfrm refused a batch (the message has no key material)."""


class _Hidden(str):
    """A batch with key material: never shown by repr (tracebacks print arguments)."""

    def __repr__(self) -> str:
        return "<key material hidden>"


VM_HINT = ("the encrypted overlay needs ESP (CONFIG_INET_ESP) and AES-GCM (CONFIG_CRYPTO_GCM); "
           "make test-vm runs labkit's VM, whose Debian kernel has both")
_esp: dict[int, bool] = {}  # netns inode -> ESP with rfc4106(gcm(aes)) works there


def _need(prog: str) -> None:
    if shutil.which(prog) is None:
        raise errors.UnsupportedError(prog, f"the {prog} program is not installed",
                                      hint="apt-get install iproute2 nftables")


def _ip(args: list[str], stdin: str | None = None) -> str:
    _need("ip")
    proc = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        msg = _HEX_RUN.sub("<hidden>", proc.stderr.strip()) or "failed"
        raise XfrmError(f"ip {' '.join(args)}: {msg}")
    return proc.stdout


def _batch(lines: Sequence[str]) -> None:
    if lines:
        _ip(["-batch", "-"], _Hidden("\n".join(lines) + "\n"))


def esp_supported() -> bool:
    """Whether this kernel takes an ESP SA with rfc4106(gcm(aes)) (modules load on
    demand, so /proc/crypto cannot tell): a throwaway SA between two TEST-NET-1
    addresses (RFC 5737; nothing is sent) is added and removed, once per namespace."""
    import os
    ino = os.stat("/proc/thread-self/ns/net").st_ino
    if ino not in _esp:
        probe = f"src 192.0.2.1 dst 192.0.2.2 proto esp spi {REQID_BASE:#x}"
        add = (f"xfrm state add {probe} reqid {REQID_BASE} mode transport "
               f"aead rfc4106(gcm(aes)) 0x{os.urandom(KEY_LEN).hex()} {ICV_BITS}")
        try:
            _batch([add])
        except XfrmError:
            _esp[ino] = False
        else:
            _esp[ino] = True
            _batch([f"xfrm state delete {probe}"])
    return _esp[ino]


def check_esp() -> None:
    """UnsupportedError (pointing at the VM) when ``esp_supported()`` is False."""
    if not esp_supported():
        raise errors.UnsupportedError("encrypted overlay", "this kernel has no IPsec ESP "
                                      "with AES-GCM", hint=VM_HINT)


def _nft(script: str) -> None:
    _need("nft")
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise XfrmError(f"nft: {proc.stderr.strip() or 'failed'}")


def program_vnis(vnis: Sequence[int], data_port: int) -> None:
    """Table ``ip lk-overlay``: mark outgoing, drop plain incoming VXLAN of ``vnis``
    (see the module docstring); no VNI: the table is removed.  One nft transaction."""
    script = [f"table ip {TABLE} {{}}", f"delete table ip {TABLE}"]
    if vnis:
        vs = ", ".join(str(int(v)) for v in sorted(set(vnis)))
        port = int(data_port)
        script += [
            f"table ip {TABLE} {{",
            "  chain output {",
            "    type route hook output priority mangle; policy accept;",
            f"    udp dport {port} @th,96,24 {{ {vs} }} meta mark set {MARK:#x}",
            "  }",
            "  chain input {",
            "    type filter hook input priority filter; policy accept;",
            f"    udp dport {port} @th,96,24 {{ {vs} }} meta secpath missing counter drop",
            "  }",
            "}",
        ]
    _nft("\n".join(script) + "\n")


# --- what the kernel holds ------------------------------------------------------------

@dataclass(frozen=True)
class _State:
    src: str
    dst: str
    spi: int
    reqid: int


@dataclass(frozen=True)
class _Policy:
    src: str
    dst: str
    dport: int
    reqid: int  # 0: the block policy


def _blocks(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            out.append(line)
        elif out:
            out[-1] += "\n" + line
    return out


def _states() -> list[_State]:
    out = []
    for b in _blocks(_ip(["xfrm", "state", "list"])):
        m = re.match(r"src (\S+) dst (\S+)", b)
        s = _SPI_RE.search(b)
        if m and s and int(s.group(2)) & 0xFFFF0000 == REQID_BASE:
            out.append(_State(m.group(1), m.group(2), int(s.group(1), 16), int(s.group(2))))
    return out


def _policies() -> list[_Policy]:
    out = []
    for b in _blocks(_ip(["xfrm", "policy", "list"])):
        mk = re.search(r"mark (0x[0-9a-f]+)", b)
        if not mk or int(mk.group(1), 16) != MARK or "dir out" not in b:
            continue
        m = re.match(r"src (\S+) dst (\S+)", b)
        p = re.search(r"dport (\d+)", b)
        r = re.search(r"reqid (\d+)", b)
        if m and p:
            out.append(_Policy(m.group(1), m.group(2), int(p.group(1)),
                               int(r.group(1)) if r else 0))
    return out


def _sel(src: str, dst: str, port: int) -> str:
    return f"src {src} dst {dst} proto udp dport {port} dir out mark {MARK:#x} mask 0xffffffff"


def apply(local: str, peers: Sequence[str], keys: Sequence[Key], data_port: int) -> None:
    """Make labkit's SAs and out policies exactly those for ``keys`` (first = primary)
    between ``local`` and each of ``peers``, in the no-gap order of the module docstring.
    Idempotent; no keys: only the block policy (encrypted traffic is dropped)."""
    want_states: dict[_State, tuple[Key, str, str]] = {}
    for k in keys:
        for p in peers:
            for src, dst in ((local, p), (p, local)):
                want_states[_State(src, dst, spi_for(k.tag, src, dst), k.reqid)] = (k, src, dst)
    have_states = set(_states())
    if set(want_states) - have_states:
        check_esp()
    lines: list[str] = []
    for st, (k, src, dst) in want_states.items():
        if st in have_states:
            continue  # same tag and addresses: same SPI and the same derived key
        lines.append(f"xfrm state add src {src} dst {dst} proto esp spi {st.spi:#010x} "
                     f"reqid {st.reqid} mode transport replay-window {REPLAY_WINDOW} "
                     f"aead rfc4106(gcm(aes)) 0x{sa_key(k, src, dst).hex()} {ICV_BITS}")
    primary = keys[0] if keys else None
    want_pols = {_Policy("0.0.0.0/0", "0.0.0.0/0", data_port, 0)}
    if primary is not None:
        want_pols |= {_Policy(f"{local}/32", f"{p}/32", data_port, primary.reqid)
                      for p in peers}
    have_pols = set(_policies())
    for pol in sorted(want_pols - have_pols, key=lambda x: x.reqid):
        if pol.reqid == 0:
            lines.append(f"xfrm policy update {_sel(pol.src, pol.dst, pol.dport)} "
                         f"priority {PRIO_BLOCK} action block")
        else:
            peer = pol.dst.removesuffix("/32")
            lines.append(f"xfrm policy update {_sel(pol.src, pol.dst, pol.dport)} "
                         f"priority {PRIO_PEER} tmpl src {local} dst {peer} proto esp "
                         f"reqid {pol.reqid} mode transport")
    wanted_sel = {(p.src, p.dst, p.dport) for p in want_pols}
    for pol in have_pols:
        if (pol.src, pol.dst, pol.dport) not in wanted_sel:
            lines.append(f"xfrm policy delete {_sel(pol.src, pol.dst, pol.dport)}")
    for st in sorted(have_states - set(want_states), key=lambda s: (s.reqid, s.spi)):
        lines.append(f"xfrm state delete src {st.src} dst {st.dst} proto esp "
                     f"spi {st.spi:#010x}")
    _batch(lines)


def ensure_block(data_port: int) -> None:
    """The block policy for marked traffic alone, added if missing (SAs and the other
    policies untouched: after a daemon restart they still carry live traffic)."""
    if _Policy("0.0.0.0/0", "0.0.0.0/0", data_port, 0) not in _policies():
        line = (f"xfrm policy update {_sel('0.0.0.0/0', '0.0.0.0/0', data_port)} "
                f"priority {PRIO_BLOCK} action block")
        _batch([line])


def clear() -> None:
    """Every labkit SA and out policy removed (others' are left alone)."""
    lines = [f"xfrm policy delete {_sel(p.src, p.dst, p.dport)}" for p in _policies()]
    lines += [f"xfrm state delete src {s.src} dst {s.dst} proto esp spi {s.spi:#010x}"
              for s in _states()]
    _batch(lines)


def counters() -> dict[tuple[str, str, int], tuple[int, int]]:
    """(src, dst, spi) -> (bytes, packets) of labkit's SAs (``ip -s xfrm state``)."""
    out = {}
    for b in _blocks(_ip(["-s", "xfrm", "state", "list"])):
        m = re.match(r"src (\S+) dst (\S+)", b)
        s = _SPI_RE.search(b)
        c = re.search(r"lifetime current:\s*(\d+)\(bytes\), (\d+)\(packets\)", b)
        if m and s and c and int(s.group(2)) & 0xFFFF0000 == REQID_BASE:
            out[(m.group(1), m.group(2), int(s.group(1), 16))] = (int(c.group(1)),
                                                                  int(c.group(2)))
    return out
