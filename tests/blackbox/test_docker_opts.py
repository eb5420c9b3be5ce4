"""Every `docker run` option that shapes the container's kernel view is applied, checked from
inside the container with the real Docker CLI, or refused with the option named (issue 8 §3)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


def run(docker: Docker, *args: str) -> str:
    r = docker("run", "--rm", *args)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout.decode()


def status(docker: Docker, *args: str) -> dict[str, str]:
    """/proc/self/status fields of a container started with ``args``."""
    out = run(docker, *args, "busybox", "cat", "/proc/self/status")
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}


def test_ulimit_sysctl_oom_score_adj_groups(docker: Docker) -> None:
    out = run(docker, "--ulimit", "nofile=512:1024", "--ulimit", "core=-1",
              "--sysctl", "kernel.shmmax=123456", "--sysctl", "net.ipv4.ip_forward=1",
              "--oom-score-adj", "432", "--group-add", "123", "--group-add", "nogroup",
              "busybox", "sh", "-c",
              "ulimit -n; ulimit -Hn; ulimit -c; cat /proc/sys/kernel/shmmax "
              "/proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj; id -G")
    lines = out.split("\n")
    assert lines[:6] == ["512", "1024", "unlimited", "123456", "1", "432"], out
    assert {"0", "65534", "123"} <= set(lines[6].split()), out  # root, nogroup, 123


def test_security_opts(docker: Docker, tmp_path: Path) -> None:
    default = status(docker)
    assert (default["NoNewPrivs"], default["Seccomp"]) == ("0", "2")  # Docker's defaults
    nnp = status(docker, "--security-opt", "no-new-privileges")
    assert nnp["NoNewPrivs"] == "1"
    assert status(docker, "--security-opt", "no-new-privileges=false")["NoNewPrivs"] == "0"
    assert status(docker, "--security-opt", "seccomp=unconfined")["Seccomp"] == "0"
    profile = tmp_path / "deny-chmod.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]}))
    r = docker("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox",
               "sh", "-c", "touch /tmp/f; chmod 600 /tmp/f; echo rc=$?")
    assert b"rc=1" in r.stdout and b"Operation not permitted" in r.stderr, r
    r = docker("run", "--rm", "busybox", "sh", "-c", "touch /tmp/f; chmod 600 /tmp/f; echo rc=$?")
    assert r.stdout == b"rc=0\n", r


def test_lsm_option_without_the_lsm_is_a_warning(docker: Docker) -> None:
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("this host enforces SELinux: labkit refuses labels there")
    r = docker("run", "--rm", "--security-opt", "label=level:s0", "busybox", "true")
    assert r.returncode == 0 and b"SELinux is not enabled" in r.stderr, r


def test_shm_tmpfs_ipc_none(docker: Docker) -> None:
    out = run(docker, "--shm-size", "32m", "busybox", "df", "-k", "/dev/shm")
    assert out.splitlines()[1].split()[1] == "32768", out
    out = run(docker, "--tmpfs", "/run:size=1m,mode=700,exec", "busybox",
              "grep", " /run ", "/proc/mounts")
    fields = out.split()
    assert fields[2] == "tmpfs" and "size=1024k" in fields[3] and "mode=700" in fields[3]
    assert "nosuid" in fields[3] and "noexec" not in fields[3], out
    r = docker("run", "--rm", "--ipc", "none", "busybox", "ls", "/dev/shm")
    assert r.returncode == 1 and b"No such file" in r.stderr, r


def test_cpuset(docker: Docker) -> None:
    cpu = str(max(os.sched_getaffinity(0)))
    assert status(docker, "--cpuset-cpus", cpu)["Cpus_allowed_list"] == cpu
    r = docker("run", "--rm", "--cpuset-cpus", "4095", "busybox", "true")
    assert r.returncode == 125 and b"Requested CPUs are not available" in r.stderr, r


def test_pid_uts_ipc_host(docker: Docker) -> None:
    assert run(docker, "busybox", "sh", "-c", "echo $$") == "1\n"
    assert run(docker, "--pid", "host", "busybox", "sh", "-c", "echo $$") != "1\n"
    assert run(docker, "--uts", "host", "busybox", "hostname") == socket.gethostname() + "\n"
    ipc = run(docker, "--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc")
    assert ipc.strip() == os.readlink("/proc/self/ns/ipc")
    r = docker("run", "--rm", "--uts", "host", "--hostname", "x", "busybox", "true")
    assert r.returncode == 125 and b"hostname and the UTS mode" in r.stderr, r


def test_pid_and_ipc_of_another_container(docker: Docker, name: str) -> None:
    r = docker("run", "-d", "--name", name, "--ipc", "shareable", "busybox",
               "sh", "-c", "echo shared > /dev/shm/x; sleep 600")
    assert r.returncode == 0, r.stderr
    other = f"{name}-private"
    try:
        out = run(docker, "--pid", f"container:{name}", "--ipc", f"container:{name}",
                  "busybox", "sh", "-c", "ps -o args; readlink /proc/self/ns/ipc")
        assert "sleep 600" in out, out
        donor = docker("exec", name, "readlink", "/proc/self/ns/ipc").stdout.decode()
        assert out.endswith(donor), (out, donor)
        assert docker("run", "-d", "--name", other, "busybox", "sleep", "600").returncode == 0
        r = docker("run", "--rm", "--ipc", f"container:{other}", "busybox", "true")
        assert r.returncode != 0 and b"non-shareable IPC" in r.stderr, r
        r = docker("run", "--rm", "--pid", "container:lk-no-such", "busybox", "true")
        assert r.returncode == 125 and b"No such container: lk-no-such" in r.stderr, r
    finally:
        docker("rm", "-f", name, other)


def test_cgroupns_and_cgroup_parent(docker: Docker, name: str) -> None:
    out = run(docker, "--cgroupns", "private", "busybox", "cat", "/proc/self/cgroup")
    assert all(ln.endswith(":/") for ln in out.splitlines()), out
    parent = f"{name}-parent"
    try:
        out = run(docker, "--cgroup-parent", parent, "busybox", "cat", "/proc/self/cgroup")
        assert f":/{parent}/" in out, out
    finally:
        for d in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            d.rmdir()


def test_devices_and_device_cgroup_rules(docker: Docker) -> None:
    if not Path("/dev/fuse").is_char_device():
        pytest.skip("no /dev/fuse on this host")
    out = run(docker, "--device", "/dev/fuse:/dev/lkfuse:r", "busybox", "sh", "-c",
              "ls -l /dev/lkfuse; exec 3</dev/lkfuse && echo read-ok; "
              "(exec 4>/dev/lkfuse) || echo write-denied")
    assert out.startswith("crw") and "10, 229" in out, out
    assert "read-ok" in out and "write-denied" in out, out
    probe = "mknod /dev/lkf c 10 229; exec 3<>/dev/lkf && echo opened"
    r = docker("run", "--rm", "busybox", "sh", "-c", probe)
    assert b"opened" not in r.stdout and b"not permitted" in r.stderr, r
    out = run(docker, "--device-cgroup-rule", "c 10:229 rw", "busybox", "sh", "-c", probe)
    assert "opened" in out, out


def test_privileged(docker: Docker) -> None:
    st = status(docker, "--privileged")
    with open("/proc/self/status") as f:  # every capability this host can give
        bnd = next(ln.split()[1] for ln in f if ln.startswith("CapBnd:"))
    assert st["Seccomp"] == "0" and st["CapEff"] == bnd, st
    host_dev = next(p.name for p in sorted(Path("/dev").iterdir())
                    if p.is_block_device() or p.name == "fuse")
    out = run(docker, "--privileged", "busybox", "sh", "-c",
              f"ls /dev/{host_dev}; grep ' /sys ' /proc/mounts; grep -c ' /proc/sys ' "
              "/proc/mounts || true")
    lines = out.splitlines()
    assert lines[0] == f"/dev/{host_dev}" and " rw," in lines[1] and lines[2] == "0", out
    out = run(docker, "busybox", "sh", "-c", "grep ' /sys ' /proc/mounts")
    assert " ro," in out, out
    mount = "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted"
    assert run(docker, "--privileged", "busybox", "sh", "-c", mount) == "mounted\n"
    r = docker("run", "--rm", "busybox", "sh", "-c", mount)
    assert r.returncode != 0 and b"mounted" not in r.stdout, r


def test_refusals_name_the_option(docker: Docker) -> None:
    r = docker("run", "--rm", "--sysctl", "kernel.shm_rmid_forced=1", "--ipc", "host",
               "busybox", "true")
    assert r.returncode == 125 and b"hosts ipc namespace" in r.stderr, r


def test_inspect_shows_dockers_defaults(docker: Docker, name: str) -> None:
    assert docker("create", "--name", name, "busybox", "true").returncode == 0
    try:
        r = docker("inspect", "-f", "{{.HostConfig.IpcMode}} {{.HostConfig.ShmSize}} "
                   "{{json .HostConfig.MaskedPaths}}", name)
        ipc, shm, masked = r.stdout.decode().split(" ", 2)
        assert (ipc, shm) == ("private", "67108864") and "/proc/kcore" in masked, r
    finally:
        docker("rm", "-f", name)


def test_update_applies_cpuset_and_refuses_what_it_cannot(docker: Docker, name: str) -> None:
    assert docker("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
    try:
        cpu = str(min(os.sched_getaffinity(0)))
        r = docker("update", "--cpuset-cpus", cpu, name)
        assert r.returncode == 0, r.stderr
        r = docker("exec", name, "grep", "Cpus_allowed_list", "/proc/1/status")
        assert r.stdout.split()[-1].decode() == cpu, r
        r = docker("update", "--blkio-weight", "300", name)
        assert r.returncode != 0 and b"BlkioWeight" in r.stderr, r
        r = docker("update", "--memory", "64m", "--memory-swap", "128m", name)
        assert r.returncode == 0, r.stderr
        r = docker("inspect", "-f", "{{.HostConfig.CpusetCpus}} {{.HostConfig.Memory}}", name)
        assert r.stdout.decode().split() == [cpu, str(64 << 20)], r
    finally:
        docker("rm", "-f", name)


def test_blkio_throttle_in_the_cgroup_and_unapplied_resources_refused(docker: Docker) -> None:
    disk = next((d.name for d in sorted(Path("/sys/block").iterdir())
                 if Path(f"/dev/{d.name}").is_block_device()), None)
    if disk is None:
        pytest.skip("no block device here")
    rdev = os.stat(f"/dev/{disk}").st_rdev
    out = run(docker, "--device-read-bps", f"/dev/{disk}:1mb", "busybox", "sh", "-c",
              "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device 2>/dev/null || "
              "cat /sys/fs/cgroup/io.max")
    assert f"{os.major(rdev)}:{os.minor(rdev)} " in out and "1048576" in out, out
    r = docker("run", "--rm", "--blkio-weight", "300", "busybox", "true")
    assert r.returncode == 125 and b"BlkioWeight" in r.stderr, r
    r = docker("run", "--rm", "--kernel-memory", "64m", "busybox", "true")
    assert r.returncode == 125 and b"KernelMemory" in r.stderr, r


def test_oom_kill_disable_and_swappiness(docker: Docker) -> None:
    """Applied in the container's memory cgroup where labkit-runtime can (cgroup v1), else
    refused with the field named (never taken and ignored)."""
    from labkit.engine.containers.resopts import runtime_applies
    args = ("--memory", "64m", "--oom-kill-disable", "--memory-swappiness", "7", "busybox")
    if not (runtime_applies("oom_kill_disable") and runtime_applies("memory_swappiness")):
        r = docker("run", "--rm", *args, "true")
        assert r.returncode == 125 and (b"OomKillDisable" in r.stderr
                                        or b"MemorySwappiness" in r.stderr), r
        return
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("no cgroup v1 memory controller: dockerd discards these with a warning")
    out = run(docker, *args, "cat", "/sys/fs/cgroup/memory/memory.oom_control",
              "/sys/fs/cgroup/memory/memory.swappiness")
    assert "oom_kill_disable 1" in out and out.splitlines()[-1] == "7", out


def test_masked_and_readonly_paths_through_the_api(engine: Any, name: str) -> None:
    docker = pytest.importorskip("docker")
    api = docker.APIClient(base_url=f"unix://{engine.socket}", version="1.41")
    script = ("cat /etc/passwd | wc -c; touch /tmp/x 2>&1 || true; "
              "grep -c ' /proc/timer_list ' /proc/mounts || true")
    try:
        c = api.create_container("busybox", ["sh", "-c", script], name=name, host_config={
            "MaskedPaths": ["/etc/passwd"], "ReadonlyPaths": ["/tmp"]})
        assert api.inspect_container(c)["HostConfig"]["MaskedPaths"] == ["/etc/passwd"]
        api.start(c)
        assert api.wait(c)["StatusCode"] == 0
        out = api.logs(c).decode().splitlines()
        assert out[0] == "0" and "Read-only file system" in out[1], out
        assert out[2] == "0", out  # the default masked /proc/timer_list is not masked now
    finally:
        api.remove_container(name, force=True)
    try:
        c = api.create_container("busybox", ["true"], name=name,
                                 host_config={"Privileged": True})
        hc = api.inspect_container(c)["HostConfig"]
        assert hc["MaskedPaths"] is None and hc["ReadonlyPaths"] is None
    finally:
        api.remove_container(name, force=True)
        api.close()


def test_add_host_dns_and_domainname(docker: Docker) -> None:
    out = run(docker, "--add-host", "lkhost:10.1.2.3", "--dns", "9.9.9.9", "--dns-search",
              "example.com", "--dns-option", "ndots:2", "--domainname", "lab.example",
              "busybox", "sh", "-c", "cat /etc/hosts /etc/resolv.conf /proc/sys/kernel/domainname")
    assert "10.1.2.3\tlkhost\n" in out, out
    assert "nameserver 9.9.9.9\nsearch example.com\noptions ndots:2\n" in out, out
    assert out.endswith("lab.example\n"), out
    r = docker("run", "--rm", "--link", "x:y", "busybox", "true")
    assert r.returncode == 125 and b"links" in r.stderr, r
