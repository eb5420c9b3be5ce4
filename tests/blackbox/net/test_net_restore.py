"""Live-restore: running containers keep their address and published port across a daemon
restart, and a container that exits while the daemon is down has its network released when the
daemon comes back (the address free again, its veth and its port gone)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import pytest

pytestmark = pytest.mark.privileged

GET = "GET / HTTP/1.0\r\n\r\n"
HTTPD = ["sh", "-c", ("mkdir -p /www && echo lk-hello > /www/index.html && "
         "exec httpd -f -p 80 -h /www")]


def _get(nd: Any, port: int) -> str:
    deadline = time.monotonic() + 15
    while True:
        r = subprocess.run(["nsenter", f"--net=/run/netns/{nd.netns}", "busybox", "nc", "-w",
                            "3", "127.0.0.1", str(port)], input=GET, capture_output=True,
                           text=True, timeout=20, check=False)
        if "lk-hello" in r.stdout or time.monotonic() > deadline:
            return r.stdout
        time.sleep(0.2)


def _veths(nd: Any) -> set[str]:
    return {n for n in nd.links() if n.startswith(("veth", "lk")) and n != nd.peer_link}


def test_running_container_keeps_address_and_port(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", "--subnet", "10.241.0.0/24", net)
    web = nd.name("web")
    nd.ok("run", "-d", "--name", web, "--network", net, "--ip", "10.241.0.10", "-p", "8180:80",
          "busybox", *HTTPD)
    assert "lk-hello" in _get(nd, 8180)
    pid = nd.inspect("container", web)["State"]["Pid"]
    nd.restart()
    st = nd.inspect("container", web)
    assert st["State"]["Running"] is True and st["State"]["Pid"] == pid
    assert st["NetworkSettings"]["Networks"][net]["IPAddress"] == "10.241.0.10"
    assert "10.241.0.10/24" in nd.ok("exec", web, "ip", "-o", "-4", "addr", "show", "eth0")
    assert "80/tcp -> 0.0.0.0:8180" in nd.ok("port", web).splitlines()
    assert "lk-hello" in _get(nd, 8180)
    # the address is still held: nobody else gets it
    r = nd.docker("run", "--rm", "--network", net, "--ip", "10.241.0.10", "busybox", "true")
    assert r.returncode == 125 and "Address already in use" in r.stderr, r.stderr
    # and the port too
    r = nd.docker("run", "-d", "--name", nd.name(), "-p", "8180:80", "busybox", "true")
    assert r.returncode == 125 and "port is already allocated" in r.stderr, r.stderr


def test_exit_while_daemon_down_releases_network(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", "--subnet", "10.242.0.0/24", net)
    veths_before = _veths(nd)
    web = nd.name("web")
    nd.ok("run", "-d", "--name", web, "--network", net, "--ip", "10.242.0.10", "-p", "8181:80",
          "busybox", *HTTPD)
    assert "lk-hello" in _get(nd, 8181)
    pid = nd.inspect("container", web)["State"]["Pid"]
    assert _veths(nd) != veths_before

    def kill_container() -> None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)

    nd.restart(between=kill_container)

    def released() -> bool:
        st = nd.inspect("container", web)["State"]
        return not st["Running"] and nd.inspect("network", net)["Containers"] == {}
    deadline = time.monotonic() + 30
    while not released():
        assert time.monotonic() < deadline, "the exited container's network was not released"
        time.sleep(0.2)
    assert _veths(nd) == veths_before
    # the address and the port are free again
    other = nd.name("web")
    nd.ok("run", "-d", "--name", other, "--network", net, "--ip", "10.242.0.10", "-p",
          "8181:80", "busybox", *HTTPD)
    assert "lk-hello" in _get(nd, 8181)
    nd.ok("rm", "-f", other, web)
    nd.ok("network", "rm", net)
