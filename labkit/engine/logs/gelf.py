"""Docker's gelf log driver: GELF 1.1 messages over UDP (chunked, compressed) or TCP.

Message (moby daemon/logger/gelf; GELF spec, go2docs.graylog.org "GELF"): a JSON object with
``version`` "1.1", ``host`` (the daemon host's name), ``short_message`` (the line without its
newline), ``timestamp`` (unix seconds, milliseconds as fraction), ``level`` (6 info for stdout,
3 err for stderr) and Docker's additional fields ``_container_id``, ``_container_name``,
``_image_id``, ``_image_name``, ``_command``, ``_tag``, ``_created``.

UDP: the JSON is compressed (``gelf-compression-type`` gzip (default), zlib or none;
``gelf-compression-level`` -1..9, default 1 as go-gelf).  A datagram larger than CHUNK
bytes is sent as GELF chunks: each is ``0x1e 0x0f``, an 8-byte message id, the chunk's
sequence number and the count, then at most CHUNK - 12 bytes of the payload; the spec allows
128 chunks, so a larger message is dropped (go-gelf returns an error for it too).
TCP: uncompressed JSON, each message ended by a NUL byte (json.dumps escapes a NUL inside
the text as \\u0000, so the framing holds for any line).
"""

from __future__ import annotations

import json
import os
import socket
import time
import zlib
from urllib.parse import urlsplit

from labkit import errors
from labkit.engine.logs import netsend, tag

OPTIONS = ("gelf-address", "gelf-compression-type", "gelf-compression-level", "tag", "labels",
           "labels-regex", "env", "env-regex", "gelf-tcp-max-reconnect",
           "gelf-tcp-reconnect-delay")
NOT_APPLIED = ("labels-regex", "env-regex", "gelf-tcp-max-reconnect",
               "gelf-tcp-reconnect-delay")
CHUNK = 1420  # go-gelf ChunkSize: fits an Ethernet MTU with IP/UDP headers
MAX_CHUNKS = 128  # GELF spec
MAGIC = b"\x1e\x0f"
LEVEL = {"stdout": 6, "stderr": 3}


def _bad(problem: str) -> errors.InvalidArgumentError:
    # ``what`` is taken from ``problem`` so that the API message is moby's text alone
    return errors.InvalidArgumentError(problem.split(":")[0], problem)


def parse_address(text: str) -> tuple[str, str, int]:
    if not text:
        raise _bad("gelf-address is a required parameter")
    u = urlsplit(text)
    if u.scheme not in ("udp", "tcp"):
        raise _bad("gelf: endpoint needs to be TCP or UDP")
    if ":" not in u.netloc.rsplit("]", 1)[-1]:
        raise _bad("gelf: please provide gelf-address as proto://host:port")
    host, port = netsend.host_port(u.netloc, "gelf-address", 12201)
    return u.scheme, host, port


def check(opts: dict[str, str]) -> None:
    for key in opts:
        if key not in OPTIONS:
            raise _bad(f"unknown log opt '{key}' for gelf log driver")
    for key in NOT_APPLIED:
        if key in opts:
            raise errors.UnsupportedError(f"log-opt {key}", "labkit's gelf driver does not "
                                          "apply it", hint="leave the option out")
    scheme, _, _ = parse_address(opts.get("gelf-address", ""))
    ctype = opts.get("gelf-compression-type", "gzip")
    if ctype not in ("gzip", "zlib", "none"):
        raise _bad(f"Unknown gelf compression type: {ctype!r}")
    level = opts.get("gelf-compression-level", "1")
    if not level.lstrip("-").isdigit() or not -1 <= int(level) <= 9:
        raise _bad(f"gelf-compression-level must be between -1 and 9, got {level!r}")
    if scheme == "tcp" and ({"gelf-compression-type", "gelf-compression-level"} & set(opts)):
        raise _bad("gelf: compression is not supported with the tcp transport")
    tag.check(opts.get("tag", tag.DEFAULT))


def compress(data: bytes, ctype: str, level: int) -> bytes:
    if ctype == "gzip":
        c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    if ctype == "zlib":
        return zlib.compress(data, level)
    return data


def chunks(payload: bytes, msg_id: bytes, size: int = CHUNK) -> list[bytes]:
    """The datagrams for ``payload``: itself when it fits, else GELF chunks; [] when it
    would need more than MAX_CHUNKS (the spec's limit: a receiver drops such a message)."""
    if len(payload) <= size:
        return [payload]
    step = size - 12
    count = -(-len(payload) // step)
    if count > MAX_CHUNKS:
        return []
    return [MAGIC + msg_id + bytes([i, count]) + payload[i * step:(i + 1) * step]
            for i in range(count)]


class GelfWriter:
    def __init__(self, options: dict[str, str], ctx: dict[str, str],
                 attrs: dict[str, str] | None = None) -> None:
        check(options)
        scheme, host, port = parse_address(options["gelf-address"])
        self.ctype = options.get("gelf-compression-type", "gzip")
        self.level = int(options.get("gelf-compression-level", "1"))
        self.tcp = scheme == "tcp"
        kind = socket.SOCK_STREAM if self.tcp else socket.SOCK_DGRAM
        self.ep = netsend.inet("gelf", host, port, kind)
        self.host = socket.gethostname()
        self.extra = {"_container_id": ctx.get("id", ""),
                      "_container_name": ctx.get("name", "").lstrip("/"),
                      "_image_id": ctx.get("image_id", ""),
                      "_image_name": ctx.get("image_name", ""),
                      "_command": ctx.get("command", ""),
                      "_tag": tag.render(options.get("tag", tag.DEFAULT), ctx),
                      "_created": ctx.get("created", "")}
        # labels/env attributes as additional fields, "_" added as moby's gelf does
        self.extra.update({k if k.startswith("_") else "_" + k: v
                           for k, v in (attrs or {}).items()})
        self.too_large = 0  # messages over MAX_CHUNKS, dropped

    def message(self, stream: str, msg: bytes, ns: int) -> bytes:
        doc = {"version": "1.1", "host": self.host,
               "short_message": msg.decode("utf-8", "replace").rstrip("\n"),
               "timestamp": (ns // 10**6) / 1000.0, "level": LEVEL.get(stream, 6),
               **self.extra}
        return json.dumps(doc, separators=(",", ":")).encode()

    def write(self, stream: str, msg: bytes, ns: int | None = None) -> None:
        data = self.message(stream, msg, time.time_ns() if ns is None else ns)
        if self.tcp:
            self.ep.send(data + b"\0")
            return
        grams = chunks(compress(data, self.ctype, self.level), os.urandom(8))
        if not grams:
            self.too_large += 1
        for g in grams:
            self.ep.send(g)

    def close(self) -> None:
        self.ep.close()
