"""Docker's fluentd log driver: fluentd's forward protocol (Message mode) over TCP or unix.

Each log line is one MessagePack array ``[tag, time, record]`` (fluentd forward protocol
v1, "Message Modes"), ``record`` being Docker's map (moby daemon/logger/fluentd):
``container_id`` (full id), ``container_name`` ("/name"), ``source`` (stdout|stderr) and
``log`` (the line without its newline; ``partial_message`` "true" when it had none), plus
the container labels / env variables named by ``labels`` / ``env``.
``time`` is unix seconds, or fluentd's EventTime (ext type 0: uint32 seconds, uint32
nanoseconds) with ``fluentd-sub-second-precision=true``.  MessagePack carries lengths, so
no byte of a line (newline, NUL, escape) can break the framing.

``fluentd-address``: host:port, tcp://host:port or unix:///path (default 127.0.0.1:24224).
The driver dials at container start, as moby does without ``fluentd-async``; the
buffering/retry/ack options (fluentd-async, fluentd-buffer-limit, ...) are refused by name.
"""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import urlsplit

from labkit import errors
from labkit.engine.logs import netsend, tag
from labkit.engine.logs.mpack import ExtType, packb

OPTIONS = ("fluentd-address", "tag", "fluentd-sub-second-precision", "fluentd-async",
           "fluentd-async-connect", "fluentd-buffer-limit", "fluentd-retry-wait",
           "fluentd-max-retries", "fluentd-request-ack", "fluentd-write-timeout",
           "fluentd-read-timeout", "labels", "labels-regex", "env", "env-regex")
APPLIED = ("fluentd-address", "tag", "fluentd-sub-second-precision", "labels", "env")


def _bad(problem: str) -> errors.InvalidArgumentError:
    # ``what`` is taken from ``problem`` so that the API message is moby's text alone
    return errors.InvalidArgumentError(problem.split(":")[0], problem)


def parse_address(text: str) -> tuple[str, str | tuple[str, int]]:
    """moby's fluentd parseAddress: ("tcp", (host, port)) or ("unix", path)."""
    if not text:
        return "tcp", ("127.0.0.1", 24224)
    full = text if "://" in text else "tcp://" + text
    u = urlsplit(full)
    if u.scheme == "unix":
        if not u.path.strip("/"):
            raise _bad(f"invalid fluentd-address {text}: path is empty")
        return "unix", u.path
    if u.scheme != "tcp":
        raise _bad(f"invalid fluentd-address {text}: unsupported scheme: '{u.scheme}'")
    if u.path not in ("", "/"):
        raise _bad(f"invalid fluentd-address {text}: should not contain a path element")
    host, port = netsend.host_port(u.netloc or "127.0.0.1", "fluentd-address", 24224)
    return "tcp", (host, port)


def check(opts: dict[str, str]) -> None:
    from labkit.engine.logs.jsonfile import parse_bool

    for key in opts:
        if key not in OPTIONS:
            raise _bad(f"unknown log opt '{key}' for fluentd log driver")
        if key not in APPLIED:
            raise errors.UnsupportedError(f"log-opt {key}", "labkit's fluentd driver sends "
                                          "synchronously and does not apply it",
                                          hint="leave the option out")
    parse_address(opts.get("fluentd-address", ""))
    parse_bool(opts.get("fluentd-sub-second-precision", "false"),
               "log-opt fluentd-sub-second-precision")
    tag.check(opts.get("tag", tag.DEFAULT))


def event(tagtext: str, ns: int, record: dict[str, str], subsecond: bool) -> bytes:
    """One forward-protocol Message-mode event."""
    when: int | ExtType = ns // 10**9
    if subsecond:
        when = ExtType(0, struct.pack(">II", ns // 10**9, ns % 10**9))
    return packb([tagtext, when, record])


class FluentdWriter:
    def __init__(self, options: dict[str, str], ctx: dict[str, str],
                 attrs: dict[str, str] | None = None) -> None:
        from labkit.engine.logs.jsonfile import parse_bool

        check(options)
        scheme, where = parse_address(options.get("fluentd-address", ""))
        self.tag = tag.render(options.get("tag", tag.DEFAULT), ctx)
        self.subsecond = parse_bool(options.get("fluentd-sub-second-precision", "false"), "")
        self.cid = ctx.get("id", "")
        self.cname = "/" + ctx.get("name", "").lstrip("/")
        self.attrs = attrs or {}  # labels/env: record keys, as moby's fluentd adds them
        if scheme == "unix":
            assert isinstance(where, str)
            self.ep = netsend.Endpoint("fluentd", socket.AF_UNIX, socket.SOCK_STREAM, where)
        else:
            assert isinstance(where, tuple)
            self.ep = netsend.inet("fluentd", where[0], where[1], socket.SOCK_STREAM)

    def write(self, stream: str, msg: bytes, ns: int | None = None) -> None:
        partial = not msg.endswith(b"\n")
        record = {"container_id": self.cid, "container_name": self.cname, "source": stream,
                  "log": msg.decode("utf-8", "replace").rstrip("\n")}
        if partial:
            record["partial_message"] = "true"
        record.update(self.attrs)
        self.ep.send(event(self.tag, time.time_ns() if ns is None else ns, record,
                           self.subsecond))

    def close(self) -> None:
        self.ep.close()
