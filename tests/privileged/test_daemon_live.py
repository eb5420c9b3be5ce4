"""The real daemon + supervisor + shims in temp LABKIT_ROOT/LABKIT_RUN, over raw HTTP.

The live-restore test is the issue's Done-when: 20 containers print a counter, the daemon
and the supervisor are SIGKILLed (by pid), the daemon is started again (it starts the
supervisor), and every container is still running and listed with the same pid, its log
has no gap and no lost line, and wait / stop / exec / rm work.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from labkit.engine.shim.stdcopy import decode_all

pytestmark = pytest.mark.privileged
V = "/v1.41"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("docker", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Daemon:
    """A labkit daemon in its own state dirs; everything it starts is killed by pid."""

    def __init__(self, base: Path) -> None:
        self.base = base
        # its own daemon.json: no default bridge, for this daemon shares the machine's
        # network namespace (no lk0, no nftables table, no ip_forward change there)
        (base / "daemon.json").write_text('{"bridge": "none"}\n')
        self.env = dict(os.environ, LABKIT_ROOT=str(base / "root"), LABKIT_RUN=str(base / "run"),
                        LABKIT_CONFIG=str(base / "daemon.json"))
        self.env.pop("LABKIT_SOCKET", None)
        self.sock = base / "run" / "labkit.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.supervisor_pids: set[int] = set()
        self.leftover_mounts: list[str] = []

    def start(self) -> None:
        log = open(self.base / "daemon.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "labkit.engine.daemon"], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        end = time.monotonic() + 60
        while True:
            try:
                if self.call("GET", "/_ping")[0] == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, (self.base / "daemon.log").read_text()
            assert time.monotonic() < end, "daemon did not answer in 60 s"
            time.sleep(0.1)
        self.supervisor_pids.add(self.supervisor_pid())

    def supervisor_pid(self) -> int:
        pid = int((self.base / "run" / "supervisor.pid").read_text())
        assert b"labkit.engine.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes()
        return pid

    def call(self, method: str, path: str, body: Any = None,
             timeout: float = 60) -> tuple[int, Any]:
        c = UnixHTTP(str(self.sock), timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            c.request(method, path, body=data, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw) if raw else None
            except ValueError:
                return r.status, raw
        finally:
            c.close()

    def kill9(self) -> None:
        assert self.proc is not None
        sup = self.supervisor_pid()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        os.kill(sup, signal.SIGKILL)
        _wait_gone(sup)

    def stop(self) -> None:
        """Remove every container through the API, then stop the daemon and supervisor;
        whatever is left (shims, runtime state, mounts, dirs) is removed even when a step
        fails, and the leftover mounts are kept in ``leftover_mounts`` for the test."""
        try:
            self.supervisor_pids.add(self.supervisor_pid())
        except (OSError, AssertionError, ValueError):
            pass
        try:
            if self.proc is not None and self.proc.poll() is None:
                _, rows = self.call("GET", f"{V}/containers/json?all=1", timeout=30)
                for r in rows or []:
                    self.call("DELETE", f"{V}/containers/{r['Id']}?force=1", timeout=30)
        except OSError:
            pass
        finally:
            self._terminate()

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.supervisor_pids:
            try:
                if b"labkit.engine.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGTERM)
                    _wait_gone(pid)
            except (FileNotFoundError, ProcessLookupError):
                pass
        self.leftover_mounts = _mounts_under(self.base)
        for m in reversed(self.leftover_mounts):
            subprocess.run(["umount", "-l", m], check=False)
        from labkit.engine.supervisor.harness import Harness
        Harness(self.base).cleanup()  # shims, runtime state (cgroups), the dirs


def _wait_gone(pid: int) -> None:
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return  # a zombie of some other parent: gone for us
        time.sleep(0.05)


def _mounts_under(base: Path) -> list[str]:
    return [ln.split()[4] for ln in open("/proc/self/mountinfo") if str(base) in ln.split()[4]]


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    base = Path(tempfile.mkdtemp(prefix="lk-dtest-"))
    d = Daemon(base)
    d.start()
    try:
        yield d
    finally:
        d.stop()
    assert d.leftover_mounts == []


COUNTER = ["sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done"]


def _create(d: Daemon, body: dict[str, Any], name: str = "") -> str:
    st, out = d.call("POST", f"{V}/containers/create" + (f"?name={name}" if name else ""),
                     {"Image": "busybox", **body})
    assert st == 201, out
    return str(out["Id"])


def _logs(d: Daemon, cid: str) -> list[int]:
    st, raw = d.call("GET", f"{V}/containers/{cid}/logs?stdout=1&stderr=1")
    assert st == 200
    text = b"".join(p for _, p in decode_all(raw if isinstance(raw, bytes) else b""))
    return [int(x) for x in text.split()]


def _events(d: Daemon, since: float, until: float, filters: str = "") -> list[dict[str, Any]]:
    # bounds widened to whole milliseconds outward: "%.3f" rounds to the nearest, which
    # dropped an event stamped in the last half millisecond before ``until`` (seen once in
    # a CI run: the die event, emitted just before /wait answered)
    lo, hi = math.floor(since * 1000) / 1000, math.ceil(until * 1000) / 1000
    q = f"since={lo:.3f}&until={hi:.3f}" + (f"&filters={quote(filters)}" if filters else "")
    st, raw = d.call("GET", f"{V}/events?{q}")
    assert st == 200
    if isinstance(raw, dict):  # exactly one event: call() parsed it
        return [raw]
    text = raw.decode() if isinstance(raw, bytes) else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_events_since_survive_a_daemon_restart(daemon: Daemon) -> None:
    t0 = time.time()
    name = f"lk-ev-{os.getpid()}"
    cid = _create(daemon, {"Cmd": ["true"]}, name)
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    assert daemon.call("POST", f"{V}/containers/{cid}/wait")[0] == 200
    t1 = time.time()
    before = [e["Action"] for e in _events(daemon, t0, t1) if e.get("id") == cid]
    assert before[:2] == ["create", "start"] and "die" in before
    daemon.kill9()  # nothing of the daemon's memory survives
    daemon.start()
    after = _events(daemon, t0, t1)
    assert [e["Action"] for e in after if e.get("id") == cid] == before
    assert all(e["Actor"]["Attributes"]["name"] == name for e in after if e.get("id") == cid)
    # filters apply to the replayed events too; the journal is private
    only_die = _events(daemon, t0, time.time(), '{"event":["die"]}')
    assert [e["Action"] for e in only_die if e.get("id") == cid] == ["die"]
    journal = daemon.base / "root" / "events" / "events.log"
    assert journal.stat().st_mode & 0o777 == 0o600
    assert daemon.call("DELETE", f"{V}/containers/{cid}")[0] == 204


def test_live_restore_20_containers(daemon: Daemon) -> None:
    ids = [_create(daemon, {"Cmd": COUNTER}, f"lk-live-{os.getpid()}-{i}") for i in range(20)]
    for cid in ids:
        assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    pids = {cid: daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["Pid"] for cid in ids}
    while min(len(_logs(daemon, cid)) for cid in ids) < 5:
        time.sleep(0.1)
    before = {cid: len(_logs(daemon, cid)) for cid in ids}
    daemon.kill9()
    time.sleep(1.0)  # the containers keep printing with nobody above their shims
    daemon.start()
    assert daemon.supervisor_pid() not in (0,)
    _, rows = daemon.call("GET", f"{V}/containers/json")
    assert {r["Id"] for r in rows} == set(ids)
    for cid in ids:
        info = daemon.call("GET", f"{V}/containers/{cid}/json")[1]
        assert info["State"]["Running"] and info["State"]["Pid"] == pids[cid]
        assert os.path.exists(f"/proc/{pids[cid]}")
    for cid in ids:
        # It went on printing while we were down, and after: wait for it (30 s deadline)
        # rather than count lines after a sleep, which a loaded machine would make flaky.
        deadline = time.monotonic() + 30
        seq = _logs(daemon, cid)
        while len(seq) <= before[cid] + 5 and time.monotonic() < deadline:
            time.sleep(0.1)
            seq = _logs(daemon, cid)
        assert seq == list(range(len(seq))), f"gap or lost line in {cid[:12]}"
        assert len(seq) > before[cid] + 5, f"{cid[:12]} stopped printing"
    # exec, stop (with a wait pending), rm -f: all work on adopted containers
    st, out = daemon.call("POST", f"{V}/containers/{ids[0]}/exec",
                          {"Cmd": ["echo", "adopted"], "Detach": True})
    assert st == 201
    assert daemon.call("POST", f"{V}/exec/{out['Id']}/start", {"Detach": True})[0] == 200
    waiter: dict[str, Any] = {}
    t = threading.Thread(target=lambda: waiter.update(
        r=daemon.call("POST", f"{V}/containers/{ids[1]}/wait")))
    t.start()
    time.sleep(0.2)
    assert daemon.call("POST", f"{V}/containers/{ids[1]}/stop?t=1")[0] == 204
    t.join(30)
    assert waiter["r"][0] == 200 and waiter["r"][1]["StatusCode"] == 137
    for cid in ids:
        assert daemon.call("DELETE", f"{V}/containers/{cid}?force=1")[0] == 204
    assert daemon.call("GET", f"{V}/containers/json?all=1")[1] == []
    for pid in pids.values():
        _wait_gone(pid)
        assert not os.path.exists(f"/proc/{pid}") or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_run_exit_codes_and_bad_input(daemon: Daemon) -> None:
    cid = _create(daemon, {"Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"],
                           "HostConfig": {"AutoRemove": True}})
    res: dict[str, Any] = {}
    t = threading.Thread(target=lambda: res.update(
        r=daemon.call("POST", f"{V}/containers/{cid}/wait?condition=removed")))
    t.start()
    time.sleep(0.2)
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    t.join(30)
    assert res["r"] == (200, {"StatusCode": 3, "Error": None})
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[0] == 404
    # a command that is not in the image: start fails like dockerd, ExitCode 127
    cid = _create(daemon, {"Cmd": ["nosuchcmd"]})
    st, out = daemon.call("POST", f"{V}/containers/{cid}/start")
    assert st == 400 and "executable file not found" in out["message"]
    state = daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]
    assert state["ExitCode"] == 127 and state["Status"] == "created"
    # "none": its own network namespace with only lo, and lo is up (as Docker's)
    cid = _create(daemon, {"Cmd": ["ip", "-o", "link"], "HostConfig": {"NetworkMode": "none"}})
    daemon.call("POST", f"{V}/containers/{cid}/start")
    assert daemon.call("POST", f"{V}/containers/{cid}/wait")[1]["StatusCode"] == 0
    _, raw = daemon.call("GET", f"{V}/containers/{cid}/logs?stdout=1")
    links = b"".join(p for _, p in decode_all(raw)).decode().splitlines()
    assert len(links) == 1 and "lo:" in links[0] and ",UP" in links[0], links
    # with --rm, a container that cannot start is removed (moby containerStart)
    cid = _create(daemon, {"Cmd": ["nosuchcmd"], "HostConfig": {"AutoRemove": True}})
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 400
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[0] == 404
    # a failed create leaves no directory, no record
    before = set(os.listdir(daemon.base / "root" / "containers"))
    st, out = daemon.call("POST", f"{V}/containers/create", {"Image": "busybox",
                                                            "User": "nosuchuser"})
    assert st == 400 and "nosuchuser" in out["message"]
    assert set(os.listdir(daemon.base / "root" / "containers")) == before
    st, out = daemon.call("POST", f"{V}/containers/create", {"Image": "busybox", "Cmd": 1})
    assert st == 400 and "ContainerConfigWrapper.Cmd" in out["message"]


def test_restart_policy_and_resources(daemon: Daemon) -> None:
    cid = _create(daemon, {"Cmd": ["sh", "-c", "exit 1"], "HostConfig": {
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}})
    daemon.call("POST", f"{V}/containers/{cid}/start")
    end = time.monotonic() + 30
    while time.monotonic() < end:
        info = daemon.call("GET", f"{V}/containers/{cid}/json")[1]
        if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
            break
        time.sleep(0.1)
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 1
    cid = _create(daemon, {"Cmd": ["sleep", "30"], "HostConfig": {
        "Memory": 32 << 20, "PidsLimit": 20, "NanoCpus": 500_000_000}})
    daemon.call("POST", f"{V}/containers/{cid}/start")
    st, stats = daemon.call("GET", f"{V}/containers/{cid}/stats?stream=0")
    assert st == 200 and stats["memory_stats"]["limit"] == 32 << 20
    assert stats["pids_stats"]["current"] >= 1
    st, top = daemon.call("GET", f"{V}/containers/{cid}/top")
    assert st == 200 and any("sleep" in " ".join(p) for p in top["Processes"])
    assert daemon.call("POST", f"{V}/containers/{cid}/pause")[0] == 204
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["Paused"]
    assert daemon.call("POST", f"{V}/containers/{cid}/unpause")[0] == 204
    assert daemon.call("POST", f"{V}/containers/{cid}/update", {"Memory": 64 << 20})[0] == 200
    st, stats = daemon.call("GET", f"{V}/containers/{cid}/stats?stream=0&one-shot=1")
    assert stats["memory_stats"]["limit"] == 64 << 20


def test_supervisor_killed_under_a_running_daemon(daemon: Daemon) -> None:
    ids = [_create(daemon, {"Cmd": COUNTER}) for _ in range(3)]
    for cid in ids:
        daemon.call("POST", f"{V}/containers/{cid}/start")
    waiter: dict[str, Any] = {}
    t = threading.Thread(target=lambda: waiter.update(
        r=daemon.call("POST", f"{V}/containers/{ids[0]}/wait")))
    t.start()
    old = daemon.supervisor_pid()
    os.kill(old, signal.SIGKILL)
    _wait_gone(old)
    end = time.monotonic() + 30
    pidfile = daemon.base / "run" / "supervisor.pid"
    while int(pidfile.read_text()) == old:  # the daemon's watchdog starts a new one
        assert time.monotonic() < end, "supervisor not restarted"
        time.sleep(0.1)
    daemon.supervisor_pids.add(daemon.supervisor_pid())
    for cid in ids:
        assert daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["Running"]
    end = time.monotonic() + 30
    while True:  # exec works once the new supervisor has found the shims
        st, out = daemon.call("POST", f"{V}/containers/{ids[2]}/exec", {"Cmd": ["true"]})
        if st == 201 and daemon.call("POST", f"{V}/exec/{out['Id']}/start",
                                     {"Detach": True})[0] == 200:
            break
        assert time.monotonic() < end, out
        time.sleep(0.2)
    assert daemon.call("POST", f"{V}/containers/{ids[0]}/kill")[0] == 204
    t.join(30)
    assert waiter["r"] == (200, {"StatusCode": 137, "Error": None})
    seq = _logs(daemon, ids[1])
    assert seq == list(range(len(seq)))


def _procs_in_cgroup_of(cid: str) -> list[int]:
    """Pids whose cgroup path names the container (the runtime puts it under lk/<id>)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if cid in (d / "cgroup").read_text():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("point", ["rm:recorded", "rm:killed"])
def test_daemon_killed_mid_rm_finishes_the_removal_and_never_restarts(daemon: Daemon,
                                                                      point: str) -> None:
    """rm writes `removing` before it kills or tears anything down: a daemon SIGKILLed in
    the middle (held there by LABKIT_TEST_HOLD: right after the record write, or after the
    kill too) removes the container at its next start instead of adopting it or restarting
    it by its "always" policy."""
    cid = _create(daemon, {"Cmd": ["sleep", "300"],
                           "HostConfig": {"RestartPolicy": {"Name": "always"}}})
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    pid = daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["Pid"]
    daemon.kill9()
    daemon.env["LABKIT_TEST_HOLD"] = point
    daemon.start()  # adopts the running container
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["Pid"] == pid
    rm = threading.Thread(target=lambda: _swallow(lambda: daemon.call(
        "DELETE", f"{V}/containers/{cid}?force=1", timeout=60)), daemon=True)
    rm.start()
    record = daemon.base / "root" / "containers" / cid / "config.v2.json"
    killed = point == "rm:killed"
    deadline = time.monotonic() + 30
    while True:  # the record says removing (and, held after the kill, exit 137 is noted)
        raw = json.loads(record.read_text())
        if raw["status"] == "removing" and (raw["exit_code"] == 137 or not killed):
            break
        assert time.monotonic() < deadline, raw
        time.sleep(0.05)
    if killed:
        _wait_gone(pid)
    else:
        assert os.path.exists(f"/proc/{pid}")  # held before the kill: still running
    assert record.exists()  # nothing torn down yet
    daemon.kill9()
    del daemon.env["LABKIT_TEST_HOLD"]
    daemon.start()
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[0] == 404
    assert daemon.call("GET", f"{V}/containers/json?all=1")[1] == []
    assert not record.parent.exists()
    _wait_gone(pid)
    assert _procs_in_cgroup_of(cid) == []  # not adopted, not started again by its policy
    assert _mounts_under(record.parent) == []


def _swallow(fn: Any) -> None:
    try:
        fn()
    except OSError:
        pass  # the daemon was killed under the request


def _wait_output(d: Daemon, cid: str, text: bytes) -> None:
    """Until the container printed ``text`` (its traps are installed by then)."""
    deadline = time.monotonic() + 30
    while True:
        _, raw = d.call("GET", f"{V}/containers/{cid}/logs?stdout=1")
        if text in b"".join(p for _, p in decode_all(raw if isinstance(raw, bytes) else b"")):
            return
        assert time.monotonic() < deadline, f"{cid[:12]} never printed {text!r}"
        time.sleep(0.05)


def test_kill_and_stop_semantics_as_docker(daemon: Daemon) -> None:
    """kill -s KILL answers once the container stopped, other signals once delivered; stop
    with StopTimeout 0 does not wait for a process that ignores SIGTERM; stop -t -1 lets a
    TERM handler finish, however long it takes."""
    trap = ["sh", "-c", "trap '' TERM USR2; echo up; while true; do sleep 0.05; done"]
    cid = _create(daemon, {"Cmd": trap})
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    _wait_output(daemon, cid, b"up")
    assert daemon.call("POST", f"{V}/containers/{cid}/kill?signal=USR2")[0] == 204
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["Running"]
    assert daemon.call("POST", f"{V}/containers/{cid}/kill?signal=KILL")[0] == 204
    state = daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]
    assert not state["Running"] and state["Status"] == "exited" and state["ExitCode"] == 137
    cid = _create(daemon, {"Cmd": trap, "StopTimeout": 0})
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    _wait_output(daemon, cid, b"up")
    assert daemon.call("POST", f"{V}/containers/{cid}/stop")[0] == 204
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["ExitCode"] == 137
    # a TERM handler that takes its time: -t -1 waits for it, so the exit is the handler's
    slow = ["sh", "-c", "trap 'sleep 1; exit 7' TERM; echo up; while true; do sleep 0.05; done"]
    cid = _create(daemon, {"Cmd": slow})
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    _wait_output(daemon, cid, b"up")
    assert daemon.call("POST", f"{V}/containers/{cid}/stop?t=-1")[0] == 204
    assert daemon.call("GET", f"{V}/containers/{cid}/json")[1]["State"]["ExitCode"] == 7


# --- state modes (issue 8 §2): a local user other than root sees nothing -----------------
# The test dir is opened up to 0755 first, so only labkit's own modes stand between nobody
# and the state: it must not list containers/, read a bundle's config.json (it holds Env),
# nor reach a container's upper dir (where a setuid file made inside the container would
# wait, CVE-2021-41091's pattern).  A container running as a non-root user must still work:
# the 0700s are above its rootfs, not on it.
NOBODY = 65534
PROBE = r"""
import json, os, sys
out = {}
for name, fn in (("list_root", lambda: os.listdir(sys.argv[1])),
                 ("list_run", lambda: os.listdir(sys.argv[2])),
                 ("list_containers", lambda: os.listdir(sys.argv[3])),
                 ("read_config", lambda: open(sys.argv[4], "rb").read()),
                 ("stat_upper", lambda: os.stat(sys.argv[5])),
                 ("list_upper", lambda: os.listdir(sys.argv[5])),
                 ("read_log", lambda: open(sys.argv[6], "rb").read()),
                 ("read_runtime_state", lambda: open(sys.argv[7], "rb").read()),
                 ("list_images", lambda: os.listdir(sys.argv[8]))):
    try:
        fn()
        out[name] = "allowed"
    except PermissionError:
        out[name] = "denied"
    except OSError as err:
        out[name] = f"other: {err}"
print(json.dumps(out))
"""


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_unprivileged_user_cannot_see_state_and_user_1000_still_runs(daemon: Daemon) -> None:
    daemon.base.chmod(0o755)  # mkdtemp made it 0700: take that shield away
    script = "id -u; cat /etc/hostname; ls / >/dev/null; echo ok > /tmp/f && cat /tmp/f; sleep 30"
    cid = _create(daemon, {"Cmd": ["sh", "-c", script],
                           "User": "1000", "Env": ["PASSWORD=hunter2"]})
    assert daemon.call("POST", f"{V}/containers/{cid}/start")[0] == 204
    root, run = daemon.base / "root", daemon.base / "run"
    cdir = root / "containers" / cid
    config = cdir / "bundle" / "config.json"
    assert b"hunter2" in config.read_bytes()
    runtime_state = next((run / "runtime").rglob("state.json"))
    log = cdir / f"{cid}-json.log"
    # the container, running as uid 1000, reads its rootfs and writes to it
    lines: list[str] = []
    for _ in range(300):
        _, raw = daemon.call("GET", f"{V}/containers/{cid}/logs?stdout=1&stderr=1")
        frames = decode_all(raw if isinstance(raw, bytes) else b"")  # no output yet: empty
        lines = b"".join(p for _, p in frames).decode().split()
        if "ok" in lines:
            break
        time.sleep(0.1)
    assert lines[:1] == ["1000"] and "ok" in lines, lines
    # what nobody can do with the state
    res = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "/usr/bin/python3", "-c", PROBE, str(root), str(run), str(root / "containers"),
         str(config), str(cdir / "upper"), str(log), str(runtime_state), str(root / "images")],
        capture_output=True, text=True, check=True, timeout=60)
    seen = json.loads(res.stdout)
    assert seen == dict.fromkeys(seen, "denied"), seen
    assert len(seen) == 9
    # the modes, as made
    assert _mode(root) == _mode(run) == 0o711
    assert _mode(root / "containers") == _mode(cdir) == _mode(root / "images") == 0o700
    assert _mode(config) == _mode(cdir / "config.v2.json") == _mode(log) == 0o600
    assert _mode(runtime_state.parent) == 0o700 and _mode(runtime_state) == 0o600
    assert daemon.call("DELETE", f"{V}/containers/{cid}?force=1")[0] == 204
