"""Docker's syslog log driver: one syslog message per log line, to a socket.

Options and their words are moby's (daemon/logger/syslog): ``syslog-address``
(udp://host[:514], tcp://host[:514], unix:///path, unixgram:///path; unset: the local
/dev/log), ``syslog-facility`` (a name from syslog(3) or a number 0-23; default daemon),
``syslog-format`` (unset: the local "unix" format, rfc3164, rfc5424, rfc5424micro) and
``tag`` (default ``{{.ID}}``).  Severity is info for stdout, err for stderr.

The formats are the ones moby gets from srslog:

* unix (unset):  ``<PRI>Jan _2 15:04:05 TAG[PID]: MSG``
* rfc3164:       ``<PRI>Jan _2 15:04:05 HOST TAG[PID]: MSG``
* rfc5424:       ``<PRI>1 2006-01-02T15:04:05Z07:00 HOST TAG PID TAG - MSG``
* rfc5424micro:  as rfc5424, the time with microseconds

and like Go's log/syslog every message ends in ``\\n``.  A log line never holds a newline
(LineSplitter cuts there), so the newline frames a message on a stream socket too; other
control characters go through as they are and rsyslog escapes them (#033 for ESC).
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlsplit

from labkit import errors
from labkit.engine.logs import netsend, tag

OPTIONS = ("syslog-address", "syslog-facility", "syslog-format", "tag", "syslog-tls-ca-cert",
           "syslog-tls-cert", "syslog-tls-key", "syslog-tls-skip-verify", "labels",
           "labels-regex", "env", "env-regex")
NOT_APPLIED = ("syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key",
               "syslog-tls-skip-verify", "labels", "labels-regex", "env", "env-regex")
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
              "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              **{f"local{i}": 16 + i for i in range(8)}}
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
SEVERITY = {"stdout": 6, "stderr": 3}  # LOG_INFO, LOG_ERR


def _bad(problem: str) -> errors.InvalidArgumentError:
    # ``what`` is taken from ``problem`` so that the API message is moby's text alone
    return errors.InvalidArgumentError(problem.split(":")[0], problem)


def parse_address(text: str) -> tuple[str, str | tuple[str, int]]:
    """moby's parseAddress: (scheme, path or (host, port)); "" -> ("", "") (local syslog)."""
    if not text:
        return "", ""
    u = urlsplit(text)
    if u.scheme in ("unix", "unixgram"):
        if not os.path.exists(u.path):  # moby stats the socket when the option is checked
            raise _bad(f"stat {u.path}: no such file or directory")
        return u.scheme, u.path
    if u.scheme == "tcp+tls":
        raise errors.UnsupportedError("syslog-address tcp+tls://", "labkit's syslog driver "
                                      "has no TLS", hint="use udp://, tcp:// or unix://")
    if u.scheme not in ("tcp", "udp"):
        raise _bad(f"unsupported scheme: '{u.scheme}'")
    host, port = netsend.host_port(u.netloc, "syslog-address", 514)
    return u.scheme, (host, port)


def check(opts: dict[str, str]) -> None:
    """moby's syslog ValidateLogOpt, labkit's gaps refused by name."""
    for key in opts:
        if key not in OPTIONS:
            raise _bad(f"unknown log opt '{key}' for syslog log driver")
    for key in NOT_APPLIED:
        if key in opts:
            raise errors.UnsupportedError(f"log-opt {key}", "labkit's syslog driver does not "
                                          "apply it", hint="leave the option out")
    parse_address(opts.get("syslog-address", ""))
    facility(opts.get("syslog-facility", ""))
    if opts.get("syslog-format", "") not in FORMATS:
        raise _bad("Invalid syslog format")
    tag.check(opts.get("tag", tag.DEFAULT))


def facility(text: str) -> int:
    if not text:
        return FACILITIES["daemon"]
    if text in FACILITIES:
        return FACILITIES[text]
    if text.isdigit() and int(text) <= 23:
        return int(text)
    raise _bad("invalid syslog facility")


def _stamp(ns: int, fmt: str) -> str:
    sec, frac = divmod(ns, 10**9)
    if fmt in ("", "rfc3164"):
        t = time.localtime(sec)  # Go time.Stamp "Jan _2 15:04:05", local time as srslog
        return time.strftime("%b ", t) + f"{t.tm_mday:2d}" + time.strftime(" %H:%M:%S", t)
    t = time.localtime(sec)
    off = t.tm_gmtoff
    zone = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:" \
                                f"{abs(off) % 3600 // 60:02d}"
    micro = f".{frac // 1000:06d}" if fmt == "rfc5424micro" else ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + micro + zone


def format_message(fmt: str, pri: int, ns: int, host: str, tagtext: str, pid: int,
                   msg: str) -> str:
    """One message in ``fmt`` (module docstring), newline-terminated."""
    stamp = _stamp(ns, fmt)
    if fmt == "":
        line = f"<{pri}>{stamp} {tagtext}[{pid}]: {msg}"
    elif fmt == "rfc3164":
        line = f"<{pri}>{stamp} {host} {tagtext}[{pid}]: {msg}"
    else:
        line = f"<{pri}>1 {stamp} {host} {tagtext} {pid} {tagtext} - {msg}"
    return line + "\n"


class SyslogWriter:
    """Send each log message to syslog (connected at container start)."""

    def __init__(self, options: dict[str, str], ctx: dict[str, str],
                 attrs: dict[str, str] | None = None) -> None:
        check(options)  # (refuses labels/env: syslog has no place for them, so attrs is {})
        scheme, where = parse_address(options.get("syslog-address", ""))
        self.facility = facility(options.get("syslog-facility", ""))
        self.format = options.get("syslog-format", "")
        self.tag = tag.render(options.get("tag", tag.DEFAULT), ctx)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        if scheme in ("udp", "tcp"):
            assert isinstance(where, tuple)
            kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
            self.ep = netsend.inet("syslog", where[0], where[1], kind)
        else:
            path = where if isinstance(where, str) and where else "/dev/log"
            kind = socket.SOCK_STREAM if scheme == "unix" else socket.SOCK_DGRAM
            self.ep = netsend.Endpoint("syslog", socket.AF_UNIX, kind, path)

    def write(self, stream: str, msg: bytes, ns: int | None = None) -> None:
        text = msg.decode("utf-8", "replace").rstrip("\n")
        pri = self.facility * 8 + SEVERITY.get(stream, 6)
        line = format_message(self.format, pri, time.time_ns() if ns is None else ns,
                              self.host, self.tag, self.pid, text)
        self.ep.send(line.encode())

    def close(self) -> None:
        self.ep.close()
