"""labkit-runtime against the real kernel: `spec` + busybox rootfs, run through the CLI.

Each test uses its own state root (tmp_path) and container ids "lk-rt-<pid>-<n>"; teardown
runs `delete --force` for every id it made and checks the cgroup lk/<id> is gone.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from labkit._sys.caps import mask
from labkit.engine.images.busybox import build_rootfs
from labkit.engine.runtime.spec import DEFAULT_CAPS

pytestmark = pytest.mark.privileged

RUNTIME = [sys.executable, "-m", "labkit.engine.runtime"]
# `python -m` puts its cwd first on sys.path: run from this checkout, so that the labkit
# under test is this tree's (a fixed path would test another checkout's runtime).
REPO = str(Path(__file__).resolve().parents[2])
_n = itertools.count()


class Bundle:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "bundle"
        self.dir.mkdir()
        self.root = tmp / "state"
        self.ids: list[str] = []
        build_rootfs(self.dir / "rootfs")
        self.cli("spec", "--bundle", str(self.dir), check=True)

    def new_id(self) -> str:
        cid = f"lk-rt-{os.getpid()}-{next(_n)}"
        self.ids.append(cid)
        return cid

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = json.loads((self.dir / "config.json").read_text())
        return cfg

    @config.setter
    def config(self, cfg: dict[str, Any]) -> None:
        (self.dir / "config.json").write_text(json.dumps(cfg))

    def set_args(self, *args: str, terminal: bool | None = None) -> None:
        cfg = self.config
        cfg["process"]["args"] = list(args)
        if terminal is not None:
            cfg["process"]["terminal"] = terminal
        self.config = cfg

    def cli(self, *args: str, check: bool = False, stdin: Any = subprocess.DEVNULL
            ) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: a detached container inherits the runtime's stdout/stderr and
        # would keep a pipe open (and communicate() waiting) for as long as it runs.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            rc = subprocess.run([*RUNTIME, "--root", str(self.root), *args], stdout=out,
                                stderr=err, stdin=stdin, cwd=REPO, timeout=120,
                                check=False).returncode
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(args, rc, out.read(), err.read())
        if check and p.returncode != 0:
            raise AssertionError(f"{args}: rc={p.returncode} stderr={p.stderr}")
        return p

    def run(self, cid: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("run", "--bundle", str(self.dir), *extra, cid)

    def cleanup(self) -> None:
        for cid in self.ids:
            if (self.root / cid).exists():
                self.cli("delete", "--force", cid)


def cgroup_exists(cid: str) -> bool:
    return any(Path(f"/sys/fs/cgroup/{c}/lk/{cid}").exists()
               for c in ("memory", "pids", "cpu", "unified", "systemd"))


def processes_mentioning(cid: str) -> list[int]:
    """Pids whose command line names the container (the runtime, intermediate and init are
    forks of `labkit-runtime ... <id>`)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cid.encode() in cmd:
            out.append(int(d))
    return out


def assert_nothing_left(b: Bundle, cid: str) -> None:
    assert not (b.root / cid).exists(), "state dir left behind"
    assert not cgroup_exists(cid), "cgroup left behind"
    assert processes_mentioning(cid) == [], "process left behind"
    assert str(b.dir / "rootfs") not in Path("/proc/self/mountinfo").read_text(), "mount leaked"


@pytest.fixture
def bundle(tmp_path: Path) -> Any:
    b = Bundle(tmp_path)
    yield b
    b.cleanup()
    for cid in b.ids:
        assert not cgroup_exists(cid)
        assert not (b.root / cid).exists()


def test_spec_then_run_isolation(bundle: Bundle) -> None:
    # The spec is used as written (terminal true: run allocates a pty); only args change.
    probe = ("echo pid=$$; echo host=$(hostname); echo tty=$(tty); echo nps=$(ps -o pid | tail -n +2 | wc -l);"
             " grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status;"
             " echo keys=$(cat /proc/keys | wc -c); echo fw=$(ls /sys/firmware | wc -l);"
             " awk '$5 == \"/\" {print \"rootmnt=\" $4}' /proc/self/mountinfo;"
             " { echo x > /etc/probe; } 2>/dev/null || echo rootfs=readonly")
    bundle.set_args("sh", "-c", probe)
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 0, p.stderr
    out = dict(line.split("=", 1) if "=" in line else line.split(":\t", 1)
               for line in p.stdout.replace("\r", "").splitlines() if line)
    assert out["pid"] == "1"
    assert out["host"] == "labkit"
    assert out["tty"] == "/dev/pts/0"  # a pty of the container's own devpts
    # sh, ps, tail, wc (and the $() subshell): nothing from the host, whose ps lists hundreds.
    assert int(out["nps"]) <= 6
    assert int(out["CapEff"], 16) == mask(DEFAULT_CAPS)
    assert out["Seccomp"].strip() == "2"
    assert out["NoNewPrivs"].strip() == "1"
    assert out["keys"] == "0"          # /dev/null bound over it
    assert out["fw"] == "0"            # an empty read-only tmpfs
    assert out["rootmnt"] == str(bundle.dir / "rootfs")
    assert out.get("rootfs") == "readonly"
    assert_nothing_left(bundle, cid)


def test_lifecycle_create_start_state_kill_delete(bundle: Bundle) -> None:
    bundle.set_args("sleep", "1000", terminal=False)
    cid = bundle.new_id()
    pidfile = bundle.dir / "pid"
    bundle.cli("create", "--bundle", str(bundle.dir), "--pid-file", str(pidfile), cid, check=True)
    st = json.loads(bundle.cli("state", cid, check=True).stdout)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == str(bundle.dir)
    assert int(pidfile.read_text()) == st["pid"] > 0
    assert Path(f"/proc/{st['pid']}/ns/pid").exists()
    rows = json.loads(bundle.cli("list", "--format", "json", check=True).stdout)
    assert [r["id"] for r in rows] == [cid]
    bundle.cli("start", cid, check=True)
    assert json.loads(bundle.cli("state", cid).stdout)["status"] == "running"
    again = bundle.cli("start", cid)
    assert again.returncode != 0 and "running" in again.stderr
    refused = bundle.cli("delete", cid)
    assert refused.returncode != 0 and "--force" in refused.stderr
    bundle.cli("kill", cid, "KILL", check=True)
    for _ in range(200):
        if json.loads(bundle.cli("state", cid).stdout)["status"] == "stopped":
            break
    assert json.loads(bundle.cli("state", cid).stdout)["status"] == "stopped"
    bundle.cli("delete", cid, check=True)
    gone = bundle.cli("state", cid)
    assert gone.returncode != 0 and "no such container" in gone.stderr
    assert_nothing_left(bundle, cid)


def test_exit_status_and_signal(bundle: Bundle) -> None:
    bundle.set_args("sh", "-c", "exit 3", terminal=False)
    cid = bundle.new_id()
    assert bundle.run(cid).returncode == 3
    assert_nothing_left(bundle, cid)
    # --detach returns once it runs; SIGKILL from outside the pid namespace stops pid 1.
    cid = bundle.new_id()
    bundle.set_args("sh", "-c", "sleep 100", terminal=False)
    bundle.cli("run", "--bundle", str(bundle.dir), "--detach", cid, check=True)
    bundle.cli("kill", cid, "9", check=True)
    bundle.cli("delete", "--force", cid, check=True)
    assert_nothing_left(bundle, cid)


def test_executable_not_found_is_127(bundle: Bundle) -> None:
    bundle.set_args("no-such-program", terminal=False)
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 127
    assert 'exec: "no-such-program": executable file not found in $PATH' in p.stderr
    assert_nothing_left(bundle, cid)


def test_oom_kill_exits_137_and_is_counted(bundle: Bundle) -> None:
    cfg = bundle.config
    cfg["process"]["terminal"] = False
    # The shell keeps the whole command substitution in memory: 100 MB against 32 MiB.
    cfg["process"]["args"] = ["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"]
    cfg["linux"]["resources"]["memory"] = {"limit": 32 << 20}
    bundle.config = cfg
    cid = bundle.new_id()
    p = bundle.run(cid, "--keep")
    assert p.returncode == 137, p.stderr
    st = json.loads(bundle.cli("state", cid, check=True).stdout)
    assert st["status"] == "stopped"
    assert st["annotations"]["org.labkit.exit-code"] == "137"
    assert int(st["annotations"]["org.labkit.oom-kills"]) >= 1
    bundle.cli("delete", cid, check=True)
    assert_nothing_left(bundle, cid)


@pytest.mark.parametrize("case", ["unknown-ns", "missing-rootfs", "overlapping-uid-map"])
def test_bad_input_refused_and_nothing_left(bundle: Bundle, case: str) -> None:
    cfg = bundle.config
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["true"]
    if case == "unknown-ns":
        cfg["linux"]["namespaces"][2] = {"type": "foo"}
        expect = "linux.namespaces[2].type: unknown namespace type 'foo'"
    elif case == "missing-rootfs":
        cfg["root"]["path"] = "no-such-rootfs"
        expect = f"rootfs {bundle.dir / 'no-such-rootfs'} does not exist"
    else:
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000},
                                       {"containerID": 500, "hostID": 200000, "size": 1000}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        expect = "write uid_map"
    bundle.config = cfg
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode != 0
    assert expect in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert_nothing_left(bundle, cid)


def test_rlimit_above_hard_limit_is_a_clear_error(bundle: Bundle) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    cfg = bundle.config
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["true"]
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    bundle.config = cfg
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 1
    assert "setrlimit" in p.stderr and "CAP_SYS_RESOURCE" in p.stderr
    assert_nothing_left(bundle, cid)


def test_user_and_capabilities_as_configured(bundle: Bundle) -> None:
    cfg = bundle.config
    cfg["process"]["terminal"] = False
    cfg["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5]}
    cfg["process"]["capabilities"]["ambient"] = ["CAP_NET_BIND_SERVICE"]
    cfg["process"]["capabilities"]["inheritable"] = ["CAP_NET_BIND_SERVICE"]
    cfg["process"]["args"] = ["sh", "-c", "id; grep -E '^Cap(Eff|Amb):' /proc/self/status"]
    bundle.config = cfg
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 0, p.stderr
    assert "uid=65534" in p.stdout and "gid=65534" in p.stdout and "5" in p.stdout.split("groups=")[1]
    bit = mask(["CAP_NET_BIND_SERVICE"])
    caps = dict(line.split(":\t") for line in p.stdout.splitlines() if line.startswith("Cap"))
    assert int(caps["CapAmb"], 16) == bit
    assert int(caps["CapEff"], 16) == bit  # a non-root user keeps only the ambient set
    assert_nothing_left(bundle, cid)


def test_duplicate_id_refused(bundle: Bundle) -> None:
    bundle.set_args("sleep", "100", terminal=False)
    cid = bundle.new_id()
    bundle.cli("create", "--bundle", str(bundle.dir), cid, check=True)
    p = bundle.cli("create", "--bundle", str(bundle.dir), cid)
    assert p.returncode != 0 and "already exists" in p.stderr
    bundle.cli("delete", cid, check=True)  # a created container may be deleted without --force
    assert_nothing_left(bundle, cid)


def test_console_socket_receives_the_pty_master(bundle: Bundle, tmp_path: Path) -> None:
    import socket

    bundle.set_args("sh", "-c", "tty; echo console-ok")  # terminal stays true (the spec's)
    sock_path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    cid = bundle.new_id()
    try:
        bundle.cli("create", "--bundle", str(bundle.dir), "--console-socket", sock_path, cid,
                   check=True)
        conn, _ = server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
        assert len(fds) == 1 and os.isatty(fds[0])
        bundle.cli("start", cid, check=True)
        out = b""
        while True:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:  # EIO: the container closed its terminal
                break
            if not chunk:
                break
            out += chunk
        os.close(fds[0])
        text = out.decode().replace("\r", "")
        assert "/dev/pts/0" in text and "console-ok" in text
    finally:
        server.close()
    bundle.cli("delete", "--force", cid, check=True)
    assert_nothing_left(bundle, cid)


def test_terminal_without_console_socket_refused_for_create(bundle: Bundle) -> None:
    cid = bundle.new_id()
    p = bundle.cli("create", "--bundle", str(bundle.dir), cid)
    assert p.returncode == 1 and "--console-socket" in p.stderr
    assert_nothing_left(bundle, cid)


def test_user_namespace_with_mapped_root(bundle: Bundle) -> None:
    cfg = bundle.config
    cfg["process"]["terminal"] = False
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1},
                                   {"containerID": 1, "hostID": 200000, "size": 65535}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1},
                                   {"containerID": 1, "hostID": 200000, "size": 65535}]
    cfg["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /dev/null && echo dev-ok"]
    bundle.config = cfg
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "0", "1"] and lines[2].split() == ["1", "200000", "65535"]
    assert "dev-ok" in p.stdout  # /dev/null bind-mounted from the host (no mknod in a userns)
    assert_nothing_left(bundle, cid)


def test_exec_joins_the_running_container(bundle: Bundle) -> None:
    bundle.set_args("sleep", "1000", terminal=False)
    cid = bundle.new_id()
    bundle.cli("run", "--bundle", str(bundle.dir), "--detach", cid, check=True)
    init_pid = json.loads(bundle.cli("state", cid, check=True).stdout)["pid"]
    p = bundle.cli("exec", cid, "sh", "-c",
                   "echo pid=$$; hostname; readlink /proc/1/exe; grep Seccomp: /proc/self/status")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert lines[0] != "pid=1" and lines[0].startswith("pid=")  # in the container's pid ns
    assert lines[1] == "labkit" and lines[2] == "/bin/busybox"  # sleep is a busybox applet
    assert lines[3].split() == ["Seccomp:", "2"]
    mine = Path("/proc/self/ns/mnt").resolve()
    assert Path(f"/proc/{init_pid}/ns/mnt").resolve() != mine
    assert bundle.cli("exec", cid, "sh", "-c", "exit 7").returncode == 7
    p = bundle.cli("exec", "--user", "65534:65534", "--cwd", "/tmp", "-e", "LK=yes", cid,
                   "sh", "-c", "id -u; pwd; echo $LK")
    assert p.stdout.split() == ["65534", "/tmp", "yes"], p.stderr
    p = bundle.cli("exec", cid, "no-such-tool")
    assert p.returncode == 127 and "executable file not found" in p.stderr
    p = bundle.cli("exec", "-t", cid, "tty")  # a pty from the container's own devpts
    assert p.returncode == 0 and p.stdout.strip() == "/dev/pts/0", p.stdout + p.stderr
    bundle.cli("delete", "--force", cid, check=True)
    p = bundle.cli("exec", cid, "true")
    assert p.returncode == 1 and "no such container" in p.stderr
    assert_nothing_left(bundle, cid)


def test_pause_resume(bundle: Bundle) -> None:
    bundle.set_args("sleep", "1000", terminal=False)
    cid = bundle.new_id()
    bundle.cli("run", "--bundle", str(bundle.dir), "--detach", cid, check=True)
    bundle.cli("pause", cid, check=True)
    st = json.loads(bundle.cli("state", cid, check=True).stdout)
    assert st["status"] == "paused"
    again = bundle.cli("pause", cid)
    assert again.returncode == 1 and "paused to paused" in again.stderr
    bundle.cli("resume", cid, check=True)
    assert json.loads(bundle.cli("state", cid).stdout)["status"] == "running"
    bundle.cli("pause", cid, check=True)
    bundle.cli("delete", "--force", cid, check=True)  # a paused container is thawed to die
    assert_nothing_left(bundle, cid)


def test_kill_all_reaches_every_process_in_the_cgroup(bundle: Bundle) -> None:
    bundle.set_args("sh", "-c", "sleep 1000 & sleep 1000 & wait", terminal=False)
    cid = bundle.new_id()
    bundle.cli("run", "--bundle", str(bundle.dir), "--detach", cid, check=True)
    pid = json.loads(bundle.cli("state", cid, check=True).stdout)["pid"]
    for _ in range(500):  # the two sleeps appear a moment after start
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(kids) == 2:
            break
    assert len(kids) == 2
    bundle.cli("kill", "--all", cid, "KILL", check=True)
    for _ in range(500):
        if json.loads(bundle.cli("state", cid).stdout)["status"] == "stopped":
            break
    assert json.loads(bundle.cli("state", cid).stdout)["status"] == "stopped"
    for _ in range(500):  # reaped by whoever inherited them
        if not any(Path(f"/proc/{k}").exists() for k in kids):
            break
    assert not any(Path(f"/proc/{k}").exists() for k in kids)
    bundle.cli("delete", cid, check=True)
    assert_nothing_left(bundle, cid)


def test_device_cgroup_denies_nodes_outside_the_allow_list(bundle: Bundle) -> None:
    # The spec denies every device, then the runtime allows the standard ones: a node made
    # with CAP_MKNOD for anything else (here /dev/fuse, 10:229) cannot be opened.
    bundle.set_args("sh", "-c", "mknod /dev/lkfuse c 10 229 && echo made;"
                    " head -c 0 /dev/lkfuse; echo x > /dev/null && echo null-ok", terminal=False)
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["made", "null-ok"]
    assert "/dev/lkfuse: Operation not permitted" in p.stderr
    assert_nothing_left(bundle, cid)


@pytest.mark.parametrize("cgroupns", [False, True])
def test_cgroupfs_inside_shows_the_containers_own_cgroup(bundle: Bundle, cgroupns: bool) -> None:
    cfg = bundle.config
    cfg["process"]["terminal"] = False
    cfg["linux"]["resources"]["memory"] = {"limit": 48 << 20}
    if cgroupns:
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
    probe = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null ||"
             " cat /sys/fs/cgroup/memory.max;"
             " cut -d: -f3 /proc/self/cgroup | sort -u")
    cfg["process"]["args"] = ["sh", "-c", probe]
    bundle.config = cfg
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert int(lines[0]) == 48 << 20  # the container's limit, not the host's root cgroup
    if cgroupns:
        assert lines[1:] == ["/"]  # the container's cgroup is its cgroup namespace's root
    else:
        assert f"/lk/{cid}" in lines[1:]
    assert_nothing_left(bundle, cid)


def test_sysctl_and_oom_score_adj_then_proc_sys_readonly(bundle: Bundle) -> None:
    cfg = bundle.config
    cfg["process"]["terminal"] = False
    cfg["process"]["oomScoreAdj"] = 500  # raising needs no privilege
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}  # namespaced with the netns
    cfg["process"]["args"] = ["sh", "-c", ("cat /proc/self/oom_score_adj /proc/sys/net/ipv4/ip_forward;"
                              " echo 0 > /proc/sys/net/ipv4/ip_forward || echo readonly")]
    bundle.config = cfg
    cid = bundle.new_id()
    p = bundle.run(cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["500", "1", "readonly"]
    assert_nothing_left(bundle, cid)
