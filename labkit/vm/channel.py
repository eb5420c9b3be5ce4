"""The host end of the agent protocol (see agent.py): JSON lines over qemu's unix socket.

qemu owns the socket (``-chardev socket,server=on``); the host connects, the guest agent
reads from its virtio-serial port.  Messages carry an ``id`` so that stale answers (to pings
sent while the guest was still booting) are told apart from the current one.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

from labkit.vm._errors import BootTimeoutError, VMError

Output = Callable[[int, bytes], None]  # (stream 1|2, chunk)


class Channel:
    """A connected agent channel.  ``exec`` returns the command's exit status."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.ids = itertools.count(1)
        self.kernel = ""

    @classmethod
    def connect(cls, path: Path, deadline: float) -> Channel:
        """Connect to qemu's socket, retrying until ``deadline`` (time.monotonic())."""
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                return cls(s)
            except OSError as err:
                s.close()
                if time.monotonic() > deadline:
                    raise BootTimeoutError(f"cannot connect to the VM agent at {path}: {err}")
                time.sleep(0.1)

    def close(self) -> None:
        self.sock.close()

    def _send(self, msg: dict[str, object]) -> None:
        try:
            self.sock.sendall((json.dumps(msg) + "\n").encode())
        except OSError as err:  # EPIPE/ECONNRESET: qemu is gone, or the port was closed
            raise VMError(f"the VM closed the agent channel ({err.strerror})") from err

    def _recv(self, timeout: float | None) -> dict[str, object] | None:
        """The next message, or None when ``timeout`` passes first."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise VMError("the VM closed the agent channel (did it power off or crash?)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            return {}
        return msg if isinstance(msg, dict) else {}

    def ping(self, deadline: float, alive: Callable[[], bool] = lambda: True) -> str:
        """Ping until the agent answers (the VM's ready marker); return the guest kernel."""
        while time.monotonic() < deadline:
            if not alive():
                raise VMError("qemu exited before the VM was ready")
            mid = next(self.ids)
            self._send({"id": mid, "op": "ping"})
            sent = time.monotonic()
            while (left := 1.0 - (time.monotonic() - sent)) > 0:
                msg = self._recv(left)
                if msg is None:
                    break
                if msg.get("id") == mid and msg.get("op") == "pong":
                    self.kernel = str(msg.get("kernel", ""))
                    return self.kernel
        raise BootTimeoutError("the VM agent did not answer before the boot time-out")

    def exec(self, argv: list[str], *, cwd: str, env: dict[str, str], on_output: Output,
             timeout: float | None = None) -> int:
        """Run ``argv`` in the guest, streaming output to ``on_output``; return its status."""
        mid = next(self.ids)
        self._send({"id": mid, "op": "exec", "argv": argv, "cwd": cwd, "env": env})
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            msg = self._recv(left)
            if msg is None:
                raise BootTimeoutError(f"command did not finish in {timeout} s: {argv}")
            if msg.get("id") != mid:
                continue
            if "data" in msg:
                stream = 2 if msg.get("stream") == 2 else 1
                on_output(stream, base64.b64decode(str(msg["data"])))
            if "exit" in msg:
                return int(str(msg["exit"]))
