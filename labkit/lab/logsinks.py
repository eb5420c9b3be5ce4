"""Receivers for the network log drivers, for notebooks and tests: a real rsyslogd and a GELF
listener, each on loopback or a unix socket in its own temp dir, ended by pid.

    with Rsyslog() as rs:                       # rsyslogd -n -f <own config> -i <own pid file>
        docker run --log-driver syslog --log-opt syslog-address=udp://127.0.0.1:{rs.udp_port}
        rs.wait_for("hello")                    # the lines rsyslog wrote to its file
    with GelfListener() as g:                   # UDP on 127.0.0.1, chunks reassembled
        ... g.wait_for(lambda m: m["short_message"] == "hi")
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from labkit import errors

__all__ = ["GelfListener", "Rsyslog", "decode_gelf"]

# One line per message: what rsyslog parsed (facility, severity, host, tag) and the raw
# message as received, so a notebook or test can check both.  (rsyslog.conf(5) templates,
# property names from rsyslog's "properties" docs.)
_CONF = """\
global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
module(load="imudp")
template(name="lk" type="string"
         string="%syslogfacility-text%.%syslogseverity-text% host=%hostname% tag=%syslogtag% msg=%msg%|raw=%rawmsg%\\n")
input(type="imuxsock" Socket="{sock}" CreatePath="on")
input(type="imudp" address="127.0.0.1" port="{port}")
*.* action(type="omfile" file="{out}" template="lk")
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rsyslog:
    """Debian's rsyslogd with its own config, pid file, unix datagram socket and UDP port."""

    def __init__(self) -> None:
        exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not os.path.exists(exe):
            raise errors.UnsupportedError("rsyslog", "rsyslogd not found",
                                          hint="apt-get install rsyslog")
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="lk-rsyslog-", dir="/tmp"))
        self.socket = self.dir / "log.sock"
        self.out = self.dir / "messages.log"
        self.pidfile = self.dir / "rsyslogd.pid"
        self.udp_port = _free_udp_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def unixgram_address(self) -> str:
        return f"unixgram://{self.socket}"

    @property
    def udp_address(self) -> str:
        return f"udp://127.0.0.1:{self.udp_port}"

    def start(self, timeout: float = 20.0) -> Self:
        conf = self.dir / "rsyslog.conf"
        conf.write_text(_CONF.format(dir=self.dir, sock=self.socket, port=self.udp_port,
                                     out=self.out))
        # -n: stay in the foreground (our child, so ours to end by pid); -i: our pid file,
        # never /run/rsyslogd.pid; -f: our config, never /etc/rsyslog.conf.
        self.proc = subprocess.Popen(
            [self.exe, "-n", "-f", str(conf), "-i", str(self.pidfile)],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr", "wb"))  # noqa: SIM115
        end = time.monotonic() + timeout
        while not self.socket.exists() or not self._udp_bound():
            if self.proc.poll() is not None:
                err = (self.dir / "stderr").read_text(errors="replace")[-500:]
                self.stop()
                raise errors.UnsupportedError("rsyslog", f"rsyslogd exited: {err}")
            if time.monotonic() > end:
                self.stop()
                raise errors.UnsupportedError("rsyslog", "rsyslogd did not open its inputs")
            time.sleep(0.05)
        return self

    def _udp_bound(self) -> bool:
        want = f":{self.udp_port:04X}"
        try:
            with open("/proc/net/udp") as f:
                return any(want in line.split()[1] for line in f.readlines()[1:])
        except OSError:
            return False

    def lines(self) -> list[str]:
        try:
            return self.out.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_for(self, text: str, timeout: float = 20.0) -> list[str]:
        """The lines holding ``text`` once at least one has arrived (else TimeoutError)."""
        end = time.monotonic() + timeout
        while True:
            got = [ln for ln in self.lines() if text in ln]
            if got:
                return got
            if time.monotonic() > end:
                raise TimeoutError(f"rsyslog wrote no line with {text!r}")
            time.sleep(0.05)

    def stop(self) -> None:
        """End rsyslogd by its pid and remove the temp dir."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def decode_gelf(payload: bytes) -> dict[str, Any]:
    """A GELF payload (gzip, zlib or plain JSON) -> the message dict."""
    if payload[:2] == b"\x1f\x8b":
        payload = gzip.decompress(payload)
    elif payload[:1] == b"\x78":
        payload = zlib.decompress(payload)
    doc = json.loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("a GELF message is a JSON object")  # noqa: TRY004 - bad data
    return doc


class GelfListener:
    """A UDP GELF receiver on 127.0.0.1 (a thread): whole messages and chunked ones."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.messages: list[dict[str, Any]] = []
        self.datagrams = 0
        self.chunked = 0  # messages that arrived in chunks
        self._parts: dict[bytes, dict[int, bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1
            try:
                self._take(data)
            except (ValueError, OSError, zlib.error):
                continue  # a broken datagram is dropped, as a GELF server does

    def _take(self, data: bytes) -> None:
        if data[:2] == b"\x1e\x0f":  # GELF chunk: magic, 8-byte id, seq, count
            if len(data) < 12:
                raise ValueError("short GELF chunk")
            mid, seq, count = data[2:10], data[10], data[11]
            if not 0 < count <= 128 or seq >= count:
                raise ValueError("bad GELF chunk header")
            if mid not in self._parts and len(self._parts) >= 1024:
                self._parts.pop(next(iter(self._parts)))  # forget the oldest unfinished one
            parts = self._parts.setdefault(mid, {})
            parts[seq] = data[12:]
            if len(parts) < count:
                return
            del self._parts[mid]
            data = b"".join(parts[i] for i in range(count))
            self.chunked += 1
        self.messages.append(decode_gelf(data))

    def wait_for(self, pred: Callable[[dict[str, Any]], bool],
                 timeout: float = 20.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while True:
            got = [m for m in list(self.messages) if pred(m)]
            if got:
                return got
            if time.monotonic() > end:
                raise TimeoutError("no GELF message matched")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
