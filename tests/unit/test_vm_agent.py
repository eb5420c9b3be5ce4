"""The agent protocol end to end without a VM: the real agent loop (agent.py) on one end of
a socketpair, the host's Channel on the other; exit statuses and streams come back as is."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from labkit.vm import agent
from labkit.vm._errors import BootTimeoutError, VMError
from labkit.vm.channel import Channel


@pytest.fixture
def chan() -> Iterator[Channel]:
    host, guest = socket.socketpair()
    port = agent.Port.__new__(agent.Port)
    port.fd, port.buf, port.ephemeral, port.seen_host = guest.fileno(), b"", False, False

    def serve() -> None:
        while True:
            msg = port.recv()
            if msg.get("op") == "ping":
                port.send({"id": msg["id"], "op": "pong", "kernel": "test"})
            elif msg.get("op") == "exec":
                agent.run(port, msg["id"], msg)
            else:
                return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = Channel(host)
    yield c
    c._send({"id": 0, "op": "stop"})
    t.join(5)
    c.close()
    guest.close()


def _exec(c: Channel, argv: list[str]) -> tuple[int, bytes, bytes]:
    out, err = bytearray(), bytearray()
    code = c.exec(argv, cwd="/", env={"LK_X": "42"},
                  on_output=lambda s, b: (out if s == 1 else err).extend(b))
    return code, bytes(out), bytes(err)


def test_ping_answers_with_kernel(chan: Channel) -> None:
    assert chan.ping(time.monotonic() + 5) == "test"


def test_exit_status_and_streams_are_faithful(chan: Channel) -> None:
    code, out, err = _exec(chan, ["sh", "-c", "printf 'a\\0b'; echo $LK_X >&2; exit 7"])
    assert (code, out, err) == (7, b"a\0b", b"42\n")


def test_missing_command_is_127(chan: Channel) -> None:
    code, out, err = _exec(chan, ["/nonexistent/lk-cmd"])
    assert code == 127 and out == b"" and b"lk-cmd" in err


def test_killed_by_signal_is_128_plus_n(chan: Channel) -> None:
    assert _exec(chan, ["sh", "-c", "kill -TERM $$"])[0] == 128 + 15


def test_big_output_arrives_whole(chan: Channel) -> None:
    code, out, _ = _exec(chan, ["sh", "-c", "head -c 1000000 /dev/zero"])
    assert code == 0 and len(out) == 1_000_000


def test_command_timeout(chan: Channel) -> None:
    with pytest.raises(BootTimeoutError, match="did not finish"):
        chan.exec(["sleep", "5"], cwd="/", env={}, on_output=lambda s, b: None, timeout=0.3)


def test_ping_timeout_and_closed_channel() -> None:
    host, guest = socket.socketpair()
    c = Channel(host)
    with pytest.raises(BootTimeoutError):
        c.ping(time.monotonic() + 0.2)
    guest.close()
    with pytest.raises(VMError, match="closed the agent channel"):
        c.ping(time.monotonic() + 2)
    c.close()


def test_ephemeral_agent_ends_when_the_host_goes() -> None:
    host, guest = socket.socketpair()
    port = agent.Port.__new__(agent.Port)
    port.fd, port.buf, port.ephemeral, port.seen_host = guest.fileno(), b"", True, False
    host.sendall(b'{"id": 1, "op": "ping"}\n')
    assert port.recv() == {"id": 1, "op": "ping"}
    host.close()
    with pytest.raises(agent.HostGone):
        port.recv()
    guest.close()
