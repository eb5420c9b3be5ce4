"""A small DNS message codec (RFC 1035 section 4), enough for an embedded resolver.

It reads any query or response (names decompressed, RDATA of CNAME/PTR/NS expanded) and
writes responses with name compression (RFC 1035 4.1.4).  Hostile input is the normal
case for a server: every read is bounds-checked, a compression pointer must point strictly
backwards (so a loop is impossible and the number of jumps is bounded by the packet size),
names are capped at 255 octets and labels at 63 (RFC 1035 2.3.4), and record counts are
checked against the bytes that are left before any loop runs, so a header announcing
65535 records costs nothing.  Every failure is a FormatError, which the server turns into
FORMERR or drops; nothing else escapes parse().
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from labkit import errors

__all__ = [
    "AAAA",
    "CLASS_IN",
    "CNAME",
    "FLAG_AA",
    "FLAG_QR",
    "FLAG_RA",
    "FLAG_RD",
    "FLAG_TC",
    "FORMERR",
    "NOERROR",
    "NOTIMP",
    "NS",
    "NXDOMAIN",
    "OPT",
    "PTR",
    "REFUSED",
    "SERVFAIL",
    "A",
    "FormatError",
    "Message",
    "Question",
    "Record",
    "encode",
    "parse",
]

# RFC 1035 3.2.2 / RFC 3596 / RFC 6891: the types this resolver speaks.
A, NS, CNAME, PTR, AAAA, OPT = 1, 2, 5, 12, 28, 41
CLASS_IN = 1
# RFC 1035 4.1.1 header flag bits (second 16-bit word) and RCODEs.
FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
_NAME_TYPES = frozenset({NS, CNAME, PTR})
MAX_NAME = 255  # RFC 1035 2.3.4, in wire octets
MAX_LABEL = 63


class FormatError(errors.InvalidArgumentError):
    """A DNS message that does not parse (truncated, looping, oversized)."""

    def __init__(self, reason: str) -> None:
        super().__init__("DNS message", reason)
        self.why = reason

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.why,))


@dataclass(frozen=True)
class Question:
    name: str      # lower-case, no trailing dot ("" is the root)
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True)
class Record:
    """A resource record; ``rdata`` is a name (str) for CNAME/PTR/NS, raw bytes otherwise.
    For OPT (RFC 6891 6.1.2) ``rclass`` is the UDP payload size and ``ttl`` the flags."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes | str


@dataclass
class Message:
    id: int
    flags: int
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    def opt(self) -> Record | None:
        return next((r for r in self.additional if r.rtype == OPT), None)


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    """The name at ``pos`` and the offset just after it in the original stream."""
    labels: list[str] = []
    wire = 1  # the final root octet
    end = -1
    limit = pos  # a pointer must go strictly below the start of what we read so far
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the end of the message")
        n = data[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise FormatError("truncated compression pointer")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= limit:  # forward or self pointer: the only way to loop
                raise FormatError("compression pointer does not point backwards")
            pos = limit = target
            continue
        if n & 0xC0:
            raise FormatError(f"unsupported label type 0x{n & 0xC0:02x}")
        if n == 0:
            return ".".join(labels), (end if end >= 0 else pos + 1)
        if pos + 1 + n > len(data):
            raise FormatError("label runs past the end of the message")
        wire += n + 1
        if wire > MAX_NAME:
            raise FormatError("name longer than 255 octets")
        labels.append(data[pos + 1:pos + 1 + n].decode("latin-1").lower())
        pos += 1 + n


def _need(data: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(data):
        raise FormatError(f"truncated {what}")


def parse(data: bytes) -> Message:
    """Parse one DNS message; raises FormatError on anything malformed."""
    _need(data, 0, 12, "header")
    mid, flags, qd, an, ns, ar = struct.unpack_from("!6H", data, 0)
    # Each question takes >= 5 octets, each record >= 11: refuse impossible counts up front.
    if qd * 5 + (an + ns + ar) * 11 > len(data) - 12:
        raise FormatError("record counts exceed the message size")
    msg = Message(mid, flags)
    pos = 12
    for _ in range(qd):
        name, pos = _read_name(data, pos)
        _need(data, pos, 4, "question")
        qtype, qclass = struct.unpack_from("!2H", data, pos)
        pos += 4
        msg.questions.append(Question(name, qtype, qclass))
    for count, section in ((an, msg.answers), (ns, msg.authority), (ar, msg.additional)):
        for _ in range(count):
            rec, pos = _read_record(data, pos)
            section.append(rec)
    return msg


def _read_record(data: bytes, pos: int) -> tuple[Record, int]:
    name, pos = _read_name(data, pos)
    _need(data, pos, 10, "record header")
    rtype, rclass, ttl, rdlen = struct.unpack_from("!2HIH", data, pos)
    pos += 10
    _need(data, pos, rdlen, "record data")
    rdata: bytes | str = data[pos:pos + rdlen]
    if rtype in _NAME_TYPES:
        target, after = _read_name(data, pos)
        if after != pos + rdlen:
            raise FormatError("name in record data does not fill it")
        rdata = target
    return Record(name, rtype, rclass, ttl, rdata), pos + rdlen


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.offsets: dict[str, int] = {}

    def name(self, name: str) -> None:
        labels = [lb for lb in name.rstrip(".").split(".") if lb] if name not in ("", ".") else []
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]).lower()
            off = self.offsets.get(suffix)
            if off is not None:
                self.buf += struct.pack("!H", 0xC000 | off)
                return
            if len(self.buf) < 0x4000:  # a pointer holds 14 bits
                self.offsets[suffix] = len(self.buf)
            raw = labels[i].encode("latin-1", "replace")  # names were read as latin-1
            if not raw or len(raw) > MAX_LABEL:
                raise FormatError(f"label {labels[i]!r} is empty or longer than 63 octets")
            self.buf += bytes([len(raw)]) + raw
        self.buf += b"\0"

    def record(self, r: Record) -> None:
        self.name(r.name)
        self.buf += struct.pack("!2HI", r.rtype, r.rclass, r.ttl)
        at = len(self.buf)
        self.buf += b"\0\0"
        if isinstance(r.rdata, str):
            self.name(r.rdata)
        else:
            self.buf += r.rdata
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)


def encode(msg: Message) -> bytes:
    """The wire form of ``msg``, names compressed."""
    w = _Writer()
    w.buf += struct.pack("!6H", msg.id, msg.flags, len(msg.questions), len(msg.answers),
                         len(msg.authority), len(msg.additional))
    for q in msg.questions:
        w.name(q.name)
        w.buf += struct.pack("!2H", q.qtype, q.qclass)
    for rec in (*msg.answers, *msg.authority, *msg.additional):
        w.record(rec)
    return bytes(w.buf)
