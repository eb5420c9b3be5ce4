"""Notebook 08's lab host (labkit.lab.net_demo.NetLab) for real: it starts a labkit engine in
a namespace of its own, and nothing of it is left after close() -- nor after the process
that opened it is SIGKILLed midway, as nbval and Jupyter end a notebook's kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.lab import net_demo as nd

pytestmark = pytest.mark.privileged


def _gone(ns: str, base: str, timeout: float = 60) -> dict[str, bool]:
    """Wait (bounded) for the keeper's clean-up; what is still there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {"netns": os.path.exists(f"/run/netns/{ns}"), "dir": Path(base).exists()}
        if not any(left.values()):
            break
        time.sleep(0.2)
    return left


def _leftover_procs(base: str) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("LABKIT_RUN", "").startswith(base):
                out.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return out


def test_close_removes_engine_namespace_and_links() -> None:
    lab = nd.NetLab("nbt").start()
    try:
        assert lab.base is not None
        base = str(lab.base)
        nd.web(lab, "lk-t-web", "8090:80")
        assert lab.wait_fetch("http://127.0.0.1:8090/").strip() == \
            lab.inspect("lk-t-web")["Id"][:12]
        assert "lk0" in {r.name for r in nd.host_links(lab)}
        assert lab.nft_chain("publish-dnat")
        # the page travels in the environment: shell syntax in it stays text
        tricky = 'a "quote"; $(id) `id` $HOME'
        nd.web(lab, "lk-t-page", "8091:80", page=tricky)
        assert lab.wait_fetch("http://127.0.0.1:8091/").strip() == tricky
    finally:
        lab.close()
    assert lab.left_over() == {"netns": False, "engine dir": False}
    assert _leftover_procs(base) == []
    with pytest.raises(Exception, match="closed"):
        lab.docker("ps")
    lab.close()  # twice is fine


def test_a_killed_notebook_leaves_nothing() -> None:
    """The opener is SIGKILLed with a container running: the keeper still cleans up."""
    script = (
        "import json, sys\n"
        "from labkit.lab import net_demo as nd\n"
        "lab = nd.NetLab('nbk').start()\n"
        "nd.sleeper(lab, 'lk-t-sleep')\n"
        "print(json.dumps({'ns': lab.ns, 'base': str(lab.base)}), flush=True)\n"
        "sys.stdin.read()\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        said = json.loads(p.stdout.readline())
        assert os.path.exists(f"/run/netns/{said['ns']}") and Path(said["base"]).exists()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert _gone(said["ns"], said["base"]) == {"netns": False, "dir": False}
    assert _leftover_procs(said["base"]) == []


def test_starting_again_closes_the_previous_lab_of_this_process() -> None:
    """The notebook's set-up cell run twice: the first lab is closed, not orphaned."""
    first = nd.NetLab("nba").start()
    second = nd.NetLab("nba")
    try:
        assert first.base is not None
        base = first.base
        second.start()
        assert first.keeper is None and not base.exists()
        assert second.docker("ps").returncode == 0
    finally:
        second.close()
        first.close()
    assert second.left_over() == {"netns": False, "engine dir": False}


def test_start_refuses_an_existing_namespace() -> None:
    lab = nd.NetLab("nbe")
    subprocess.run(["ip", "netns", "add", lab.ns], check=True)
    try:
        with pytest.raises(Exception, match="already exists"):
            lab.start()
    finally:
        subprocess.run(["ip", "netns", "del", lab.ns], check=False)
    assert lab.keeper is None
