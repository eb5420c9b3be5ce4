"""HostConfig kernel-view options: each one refused with a named 400, or mapped into config.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from labkit import errors
from labkit.engine.containers import hostopts, ocihost, ocispec, resopts, seccompconv
from labkit.engine.containers.createbody import parse_create

FILES = {"/etc/passwd": "root:x:0:0::/root:/bin/sh\n",
         "/etc/group": "root:x:0:\nstaff:x:50:\naudio:x:29:\n"}


def lookup(path: str) -> str | None:
    return FILES.get(path)


def create(host: dict[str, Any], **config: Any) -> Any:
    return parse_create({"Image": "busybox", "Cmd": ["true"], "HostConfig": host, **config})


def spec_of(host: dict[str, Any], peer: Any = None, **config: Any) -> dict[str, Any]:
    s = create(host, **config)
    return ocispec.translate("c" * 64, s.config, s.host_config, {}, lookup, peer=peer)


# -- refusals: (HostConfig, substring of the 400's message) --------------------------------
@pytest.mark.parametrize("host,message", [
    ({"IpcMode": "invalid"}, "invalid IPC mode: invalid"),
    ({"PidMode": "invalid"}, "invalid PID mode: invalid"),
    ({"PidMode": "container"}, "invalid PID mode: container"),
    ({"UTSMode": "invalid"}, "invalid UTS mode: invalid"),
    ({"UsernsMode": "private"}, "does not remap users"),
    ({"CgroupnsMode": "shared"}, "invalid cgroup namespace mode: shared"),
    ({"SecurityOpt": ["bogus"]}, 'invalid --security-opt 1: "bogus"'),
    ({"SecurityOpt": ["foo=bar"]}, 'invalid --security-opt 2: "foo=bar"'),
    ({"SecurityOpt": ["no-new-privileges:maybe"]}, "invalid --security-opt 2"),
    ({"SecurityOpt": ["seccomp={not json"]}, "Decoding seccomp profile failed"),
    ({"SecurityOpt": ['seccomp={"syscalls": []}']}, "no defaultAction"),
    ({"SecurityOpt": ["label=bogus"]}, "Bad label option"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"IpcMode": "host", "ShmSize": 1 << 20}, "ShmSize"),
    ({"OomScoreAdj": 1001}, "range for oom score adj is [-1000, 1000]"),
    ({"CgroupParent": "../../escape"}, "invalid cgroup parent"),
    ({"CpusetCpus": "0-"}, "Invalid value 0- for cpuset cpus"),
    ({"CpusetCpus": "4096"}, "Requested CPUs are not available"),
    ({"CpusetMems": "77"}, "Requested memory nodes are not available"),
    ({"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"}]},
     "invalid device mode: rwx"),
    ({"Devices": [{"PathOnHost": "dev/null"}]}, "must be absolute"),
    ({"DeviceCgroupRules": ["c 1:3 rwq"]}, "invalid device cgroup format 'c 1:3 rwq'"),
    ({"Ulimits": [{"Name": "nofiles", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: nofiles"),
    ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]},
     "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
    ({"Sysctls": {"vm.swappiness": "10"}}, "is not in a separate kernel namespace"),
    ({"Sysctls": {"kernel.shmmax": "1"}, "IpcMode": "host"}, "hosts ipc namespace"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}, "NetworkMode": "host"}, "host network namespace"),
    ({"Sysctls": {"net/../kernel.core_pattern": "x"}}, "invalid sysctl name"),
    ({"Tmpfs": {"foo": ""}}, "mount path must be absolute"),
    ({"Tmpfs": {"//": ""}}, "destination can't be '/'"),
    ({"Tmpfs": {"/run": "size=1m,bogus"}}, "invalid tmpfs option 'bogus'"),
    ({"Tmpfs": {"/run": "size=1m\x00,mode=1"}}, "invalid tmpfs option"),
    ({"Sysctls": {"kernel.shmmax": "1\x00"}}, "NUL byte"),
    ({"SecurityOpt": ["seccomp=" + "[" * 100000]}, "nested too deeply"),
    ({"MaskedPaths": ["proc/kcore"]}, "absolute path"),
    ({"BlkioWeight": 300}, "BlkioWeight is not supported by labkit"),
    ({"Links": ["db:a:b"]}, "invalid link"),
    ({"Cgroup": "container:x"}, "joining another container's cgroup"),
    ({"ExtraHosts": ["foo:not-an-ip"]}, 'invalid IP address in add-host: "not-an-ip"'),
    ({"ExtraHosts": ["foo:nohost"]}, "invalid IP address"),
    ({"Dns": ["8.8.8.x"]}, "8.8.8.x is not an ip address"),
    ({"DnsSearch": ["a b"]}, "invalid resolv.conf entry"),
    ({"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
    ({"KernelMemory": 1 << 30}, "KernelMemory is not supported"),
    ({"CpuRealtimeRuntime": 1000}, "CpuRealtimeRuntime is not supported"),
    ({"DeviceRequests": [{"Count": -1}]}, "DeviceRequests is not supported"),
    ({"CpuCount": 2}, "Windows option"),
    ({"StorageOpt": {"size": "1G"}}, "StorageOpt is not supported"),
    ({"Isolation": "hyperv"}, "Invalid isolation: 'hyperv' - linux only supports 'default'"),
    ({"Runtime": "kata"}, "Unknown runtime specified kata"),
    ({"BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1}]}, "not a block device"),
    ({"BlkioDeviceWriteIOps": [{"Path": "/dev/nope", "Rate": 1}]}, "No such file"),
])
def test_refused_with_a_named_400(host: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        create(host)
    assert message in str(info.value)


@pytest.mark.parametrize("runtime_has_it", [True, False])
def test_v1_memory_knobs_applied_refused_or_discarded(monkeypatch: Any,
                                                      runtime_has_it: bool) -> None:
    from labkit.engine.containers import createbody
    monkeypatch.setattr(resopts, "runtime_applies", lambda slot: runtime_has_it)
    monkeypatch.setattr(createbody, "_cgroup_v2", lambda: False)  # a v1 host, whatever this is
    host = {"OomKillDisable": True, "MemorySwappiness": 10, "Memory": 64 << 20}
    if runtime_has_it:
        s = create(dict(host))
        mem = ocispec.resources(s.host_config)["memory"]
        assert mem["disableOOMKiller"] is True and mem["swappiness"] == 10
    else:
        for key in ("OomKillDisable", "MemorySwappiness"):
            with pytest.raises(errors.InvalidArgumentError, match=f"{key} is not supported"):
                create({key: host[key]})
    # cgroup v2 has no such files: dockerd's warning, and the value discarded
    warnings: list[str] = []
    h = dict(host)
    resopts.check_resources(h, cgroup_v2=True, warnings=warnings)
    assert (h["OomKillDisable"], h["MemorySwappiness"]) == (False, None)
    assert "Your kernel does not support OomKillDisable. OomKillDisable discarded." in warnings
    assert any("Memory swappiness discarded" in w for w in warnings)
    assert "memory" not in ocispec.resources({"OomKillDisable": False,
                                              "MemorySwappiness": -1})


def test_zero_values_ask_for_nothing() -> None:
    create({"BlkioWeight": 0, "MemorySwappiness": -1, "KernelMemory": 0, "CpuCount": 0,
            "DeviceRequests": None, "Isolation": "", "Runtime": ""})


def test_blkio_throttles() -> None:
    disk = next((f"/dev/{d.name}" for d in sorted(Path("/sys/block").iterdir())
                 if Path(f"/dev/{d.name}").is_block_device()), None)
    if disk is None:
        pytest.skip("no block device here")
    rdev = os.stat(disk).st_rdev
    s = spec_of({"BlkioDeviceReadBps": [{"Path": disk, "Rate": 1 << 20}],
                 "BlkioDeviceWriteIOps": [{"Path": disk, "Rate": 50}]})
    blk = s["linux"]["resources"]["blockIO"]
    assert blk["throttleReadBpsDevice"] == [{"major": os.major(rdev), "minor": os.minor(rdev),
                                             "rate": 1 << 20}]
    assert blk["throttleWriteIOPSDevice"][0]["rate"] == 50


def test_config_fields_refused() -> None:
    # Config.Volumes is applied now (anonymous volumes): a relative path is refused by name
    assert create({}, Volumes={"/data": {}}).mounts[0]["Destination"] == "/data"
    with pytest.raises(errors.InvalidArgumentError, match="must be absolute"):
        create({}, Volumes={"data": {}})
    # the MAC goes to the container's first endpoint (checked when it is made)
    assert create({}, MacAddress="02:42:ac:11:00:02").config["MacAddress"] == "02:42:ac:11:00:02"


def test_etc_files_and_domainname() -> None:
    s = create({"ExtraHosts": ["foo:10.1.2.3", "v6:[::1]"], "Dns": ["9.9.9.9"],
                "DnsSearch": ["example.com"], "DnsOptions": ["ndots:2"]},
               Hostname="box", Domainname="lab.example")
    files = ocispec.etc_files_text("c" * 64, s.config, s.host_config)
    assert files["/etc/hostname"] == "box\n"
    assert files["/etc/hosts"].endswith("10.1.2.3\tfoo\n::1\tv6\n")
    assert files["/etc/resolv.conf"] == ("nameserver 9.9.9.9\nsearch example.com\n"
                                         "options ndots:2\n")
    spec = ocispec.translate("c" * 64, s.config, s.host_config, {}, lookup)
    assert (spec["hostname"], spec["domainname"]) == ("box", "lab.example")
    plain = create({})
    assert ocispec.etc_files_text("c" * 64, plain.config, plain.host_config)[
        "/etc/resolv.conf"] == ""


def test_uts_host_conflicts_with_hostname() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="hostname and the UTS mode"):
        create({"UTSMode": "host"}, Hostname="x")


@pytest.mark.parametrize("hc,message", [
    ({"Interval": 500_000}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Timeout": -1}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"StartPeriod": 10}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"StartInterval": 10}, "StartInterval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["HTTP", "x"]}, "unknown healthcheck type"),
    ({"Test": ["CMD"]}, "CMD needs a command"),
])
def test_healthcheck_refusals(hc: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=message):
        create({}, Healthcheck=hc)


# -- defaults filled in as dockerd stores them ---------------------------------------------
def test_create_time_defaults() -> None:
    h = create({}).host_config
    assert h["IpcMode"] == "private" and h["ShmSize"] == 64 << 20
    assert h["CgroupnsMode"] in ("host", "private")
    from labkit.engine.runtime.spec import MASKED_PATHS, READONLY_PATHS
    assert h["MaskedPaths"] == list(MASKED_PATHS)
    assert h["ReadonlyPaths"] == list(READONLY_PATHS)
    p = create({"Privileged": True}).host_config
    assert p["Privileged"] is True and p["MaskedPaths"] is None and p["ReadonlyPaths"] is None
    assert create({"MaskedPaths": []}).host_config["MaskedPaths"] == []
    # moby's zero values where the body said nothing, as `docker inspect` prints them
    assert (h["PidMode"], h["UTSMode"], h["SecurityOpt"], h["Devices"], h["OomKillDisable"],
            h["CpusetCpus"], h["Ulimits"]) == ("", "", None, [], False, "", None)


def test_lsm_options_warn_where_the_host_has_no_such_lsm(monkeypatch: Any) -> None:
    monkeypatch.setattr(hostopts, "_lsm_enabled", lambda name: False)
    s = create({"SecurityOpt": ["label=level:s0", "apparmor=myprofile"]})
    assert any("SELinux" in w for w in s.warnings)
    assert any("AppArmor" in w and "myprofile" in w for w in s.warnings)
    assert create({"SecurityOpt": ["label=disable", "apparmor=unconfined"]}).warnings == []
    monkeypatch.setattr(hostopts, "_lsm_enabled", lambda name: True)
    with pytest.raises(errors.InvalidArgumentError, match="AppArmor profile"):
        create({"SecurityOpt": ["apparmor=myprofile"]})
    with pytest.raises(errors.InvalidArgumentError, match="SELinux labels"):
        create({"SecurityOpt": ["label=level:s0"]})


# -- mapping into config.json ---------------------------------------------------------------
def test_security_options() -> None:
    s = spec_of({})
    assert s["process"]["noNewPrivileges"] is False  # Docker's default
    assert "seccomp" in s["linux"]
    s = spec_of({"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]})
    assert s["process"]["noNewPrivileges"] is True and "seccomp" not in s["linux"]
    assert spec_of({"SecurityOpt": ["no-new-privileges=false"]}
                   )["process"]["noNewPrivileges"] is False
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}
    s = spec_of({"SecurityOpt": [f"seccomp={json.dumps(prof)}"]})
    assert s["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}


def test_seccomp_docker_profile_resolution() -> None:
    prof = seccompconv.parse_profile(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                     "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"name": "read", "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_KILL"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["amd64"]}},
            {"names": ["new_call"], "action": "SCMP_ACT_ALLOW",
             "includes": {"minKernel": "99.0"}},
        ]}))
    out = seccompconv.to_oci(prof, ["CAP_KILL"], machine="x86_64", kernel="6.1.0-13-amd64")
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert [r["names"] for r in out["syscalls"]] == [["read"], ["arch_prctl"]]
    assert out["defaultErrnoRet"] == 1
    admin = seccompconv.to_oci(prof, ["CAP_SYS_ADMIN"], machine="aarch64", kernel="99.1")
    assert [r["names"] for r in admin["syscalls"]] == [["read"], ["mount"], ["ptrace"],
                                                       ["new_call"]]
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_privileged() -> None:
    s = spec_of({"Privileged": True, "CapDrop": ["CHOWN"]})
    from labkit._sys.caps import CAP_NAMES
    assert set(s["process"]["capabilities"]["bounding"]) == set(CAP_NAMES)
    assert "seccomp" not in s["linux"]
    assert s["linux"]["maskedPaths"] == [] and s["linux"]["readonlyPaths"] == []
    assert {"allow": True, "access": "rwm"} in s["linux"]["resources"]["devices"]
    assert any(d["path"] == "/dev/null" for d in s["linux"]["devices"])
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]


def test_devices_and_rules() -> None:
    s = spec_of({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull",
                              "CgroupPermissions": "rw"}],
                 "DeviceCgroupRules": ["c 1:5 r", "b *:* m"]})
    dev = s["linux"]["devices"][0]
    assert {"path": "/dev/xnull", "type": "c", "major": 1, "minor": 3} == {
        k: v for k, v in dev.items() if k in ("path", "type", "major", "minor")}
    rules = s["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in rules
    assert {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"} in rules
    assert {"allow": True, "type": "b", "access": "m"} in rules
    with pytest.raises(errors.InvalidArgumentError, match="not a device node"):
        spec_of({"Devices": [{"PathOnHost": "/etc/hostname"}]})
    with pytest.raises(errors.InvalidArgumentError, match="no-such-device"):
        spec_of({"Devices": [{"PathOnHost": "/dev/no-such-device"}]})


def test_limits_sysctls_oom_groups_cgroup_parent_cpuset() -> None:
    s = spec_of({"Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200},
                             {"Name": "core", "Soft": -1, "Hard": -1}],
                 "Sysctls": {"kernel.shmmax": "4096", "net.ipv4.ip_forward": "1"},
                 "OomScoreAdj": -5, "GroupAdd": ["audio", "777"], "CgroupParent": "/lk-p/q",
                 "CpusetCpus": "0", "CpusetMems": "0"})
    p, linux = s["process"], s["linux"]
    assert {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200} in p["rlimits"]
    assert {"type": "RLIMIT_CORE", "soft": -1, "hard": -1} in p["rlimits"]
    assert sum(r["type"] == "RLIMIT_NOFILE" for r in p["rlimits"]) == 1
    assert linux["sysctl"] == {"kernel.shmmax": "4096", "net.ipv4.ip_forward": "1"}
    assert p["oomScoreAdj"] == -5 and p["user"]["additionalGids"] == [29, 777]
    assert linux["cgroupsPath"] == "lk-p/q/" + "c" * 64
    assert linux["resources"]["cpu"] == {"cpus": "0", "mems": "0"}
    with pytest.raises(errors.InvalidArgumentError, match="Unable to find group nogroup"):
        spec_of({"GroupAdd": ["nogroup"]})


def test_namespaces_shm_and_tmpfs() -> None:
    def kinds(s: dict[str, Any]) -> dict[str, str | None]:
        return {n["type"]: n.get("path") for n in s["linux"]["namespaces"]}

    def shm(s: dict[str, Any]) -> dict[str, Any] | None:
        return next((m for m in s["mounts"] if m["destination"] == "/dev/shm"), None)

    s = spec_of({"ShmSize": 1 << 20})
    assert set(kinds(s)) >= {"pid", "ipc", "uts", "mount", "network"}
    assert f"size={1 << 20}" in shm(s)["options"]
    s = spec_of({"PidMode": "host", "IpcMode": "host", "UTSMode": "host",
                 "CgroupnsMode": "private"})
    assert "pid" not in kinds(s) and "ipc" not in kinds(s) and "uts" not in kinds(s)
    assert "cgroup" in kinds(s) and "hostname" not in s
    assert shm(s)["source"] == "/dev/shm" and shm(s)["type"] == "bind"
    assert shm(spec_of({"IpcMode": "none"})) is None
    seen = []

    def peer(ref: str, kind: str) -> int:
        seen.append((ref, kind))
        return 4242
    s = spec_of({"PidMode": "container:web", "IpcMode": "container:db"}, peer=peer)
    assert kinds(s)["pid"] == "/proc/4242/ns/pid" and kinds(s)["ipc"] == "/proc/4242/ns/ipc"
    assert shm(s)["type"] == "tmpfs"  # its own, and create warned so
    assert any("not /dev/shm" in w for w in create({"IpcMode": "container:db"}).warnings)
    assert ("web", "pid") in seen and ("db", "ipc") in seen
    s = spec_of({"Tmpfs": {"/run": "exec,size=1m", "/dev/shm": ""}})
    run = next(m for m in s["mounts"] if m["destination"] == "/run")
    assert run["type"] == "tmpfs" and run["options"] == ["noexec", "nosuid", "nodev", "exec",
                                                         "size=1m"]
    assert [m["destination"] for m in s["mounts"]].count("/dev/shm") == 1


def test_store_peer_checks_running_and_shareable() -> None:
    class Rec:
        def __init__(self, status: str, ipc: str) -> None:
            self.status, self.pid, self.host_config = status, 99, {"IpcMode": ipc}

    class Store:
        def __init__(self) -> None:
            self.recs = {"run": Rec("running", "shareable"), "priv": Rec("running", "private"),
                         "stopped": Rec("exited", "shareable")}

        def get(self, ref: str) -> Rec:
            if ref not in self.recs:
                raise errors.NotFoundError("container", ref)
            return self.recs[ref]

    at_start = ocihost.store_peer(Store(), running=True)
    assert at_start("run", "ipc") == 99 and at_start("priv", "pid") == 99
    with pytest.raises(errors.InvalidArgumentError, match="non-shareable IPC"):
        at_start("priv", "ipc")
    with pytest.raises(errors.InvalidArgumentError, match="non running container"):
        at_start("stopped", "pid")
    at_create = ocihost.store_peer(Store(), running=False)
    assert at_create("stopped", "pid") == 0
    with pytest.raises(errors.InvalidArgumentError, match="No such container: nosuch"):
        at_create("nosuch", "pid")


def test_update_fields() -> None:
    # what the Docker CLI sends for `docker update --memory 64m`: every field, zero if unset
    cli = {k: 0 for k in ("CpuShares", "BlkioWeight", "KernelMemory", "CpuCount")}
    cli.update({"Memory": 64 << 20, "CgroupParent": "", "Devices": None, "Ulimits": None,
                "MemorySwappiness": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}})
    assert resopts.update_fields(cli) == {"Memory": 64 << 20}
    assert resopts.update_fields({"CpusetCpus": "0", "PidsLimit": 0}) == {
        "CpusetCpus": "0", "PidsLimit": 0}
    with pytest.raises(errors.InvalidArgumentError, match="cannot update BlkioWeight"):
        resopts.update_fields({"BlkioWeight": 300})
    with pytest.raises(errors.InvalidArgumentError, match="unknown update field.*Bogus"):
        resopts.update_fields({"Bogus": 1})


def test_healthcheck_merge_with_the_image() -> None:
    image = {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5, "Retries": 2}}
    cfg = ocispec.merge_image({"Healthcheck": {"Test": [], "Interval": 9}}, image)
    assert cfg["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 9, "Retries": 2}
    assert ocispec.merge_image({}, image)["Healthcheck"]["Test"] == ["CMD", "true"]
    none = ocispec.merge_image({"Healthcheck": {"Test": ["NONE"]}}, image)["Healthcheck"]
    assert none["Test"] == ["NONE"]
    assert "Healthcheck" not in ocispec.merge_image({}, {})
