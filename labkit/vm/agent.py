"""labkit's in-VM agent: runs commands the host sends over a virtio-serial port.

This file is copied into the VM image and run by the VM's own Python (stdlib only, no
labkit import: labkit may be absent or broken in the share, and the agent must still
answer).  The protocol is one JSON object per line, both ways (see labkit.vm.channel):

    host -> vm   {"id": 1, "op": "ping"}
                 {"id": 2, "op": "exec", "argv": [...], "cwd": "/mnt/labkit", "env": {...}}
    vm -> host   {"id": 1, "op": "pong", "kernel": "6.1.0-..."}
                 {"id": 2, "stream": 1, "data": "<base64>"}      (1 = stdout, 2 = stderr)
                 {"id": 2, "exit": 0}                            (128+N when killed by signal N)

virtio-serial: https://www.kernel.org/doc/html/latest/driver-api/virtio/virtio.html and
qemu docs/system/devices/virtio-serial; a read returns 0 while the host side is closed.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import selectors
import subprocess
import sys
import time

PORT_NAME = "org.labkit.agent"


def find_port() -> str:
    """The /dev node of the virtio-serial port named PORT_NAME (no udev here, so no symlink)."""
    base = "/sys/class/virtio-ports"
    for _ in range(100):
        if os.path.isdir(base):
            for dev in os.listdir(base):
                try:
                    with open(f"{base}/{dev}/name") as f:
                        if f.read().strip() == PORT_NAME:
                            return f"/dev/{dev}"
                except OSError:
                    continue
        time.sleep(0.1)
    raise SystemExit(f"labkit-agent: no virtio port named {PORT_NAME}")


def ephemeral() -> bool:
    """labkit.ephemeral=1 on the kernel command line: the VM lives only as long as its
    host-side client, so a host process that dies (a killed notebook kernel) never leaves
    a qemu behind."""
    try:
        with open("/proc/cmdline") as f:
            return "labkit.ephemeral=1" in f.read().split()
    except OSError:
        return False


class HostGone(Exception):
    """The host closed its end of the port, and this VM was ephemeral."""


class Port:
    def __init__(self, path: str, *, ephemeral: bool = False) -> None:
        self.fd = os.open(path, os.O_RDWR)
        self.buf = b""
        self.ephemeral = ephemeral
        self.seen_host = False

    def send(self, msg: dict[str, object]) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def recv(self) -> dict[str, object]:
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 65536)
            if not chunk:  # host side not connected: wait for it, or end with it
                if self.ephemeral and self.seen_host:
                    raise HostGone
                time.sleep(0.1)
                continue
            self.seen_host = True
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            return {}
        return msg if isinstance(msg, dict) else {}


def run(port: Port, mid: object, msg: dict[str, object]) -> None:
    argv = msg.get("argv")
    if not isinstance(argv, list) or not argv:
        port.send({"id": mid, "error": "exec needs a non-empty argv", "exit": 2})
        return
    env = dict(os.environ)
    extra = msg.get("env")
    if isinstance(extra, dict):
        env.update({str(k): str(v) for k, v in extra.items()})
    try:
        proc = subprocess.Popen(
            [str(a) for a in argv], cwd=str(msg.get("cwd") or "/"), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as err:
        # The shell's convention: 127 = not found, 126 = found but not executable.
        code = 127 if isinstance(err, FileNotFoundError) else 126
        port.send({"id": mid, "stream": 2,
                   "data": base64.b64encode(f"labkit-agent: {argv[0]}: {err}\n".encode()).decode()})
        port.send({"id": mid, "exit": code})
        return
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, 1)
    sel.register(proc.stderr, selectors.EVENT_READ, 2)
    open_streams = 2
    while open_streams:
        for key, _ in sel.select():
            chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            port.send({"id": mid, "stream": key.data, "data": base64.b64encode(chunk).decode()})
    rc = proc.wait()
    port.send({"id": mid, "exit": rc if rc >= 0 else 128 - rc})


def main() -> None:
    port = Port(find_port(), ephemeral=ephemeral())
    print("labkit-agent: listening", file=sys.stderr)
    while True:
        try:
            msg = port.recv()
        except HostGone:
            print("labkit-agent: host gone, powering off", file=sys.stderr)
            return
        mid, op = msg.get("id"), msg.get("op")
        if op == "ping":
            port.send({"id": mid, "op": "pong", "kernel": platform.release()})
        elif op == "exec":
            run(port, mid, msg)
        elif op == "poweroff":
            port.send({"id": mid, "op": "bye"})
            return
        elif mid is not None:
            port.send({"id": mid, "error": f"unknown op {op!r}", "exit": 2})


if __name__ == "__main__":
    main()
