"""`labkit run` health and kernel-view flags -> the create body the Docker CLI would send."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from labkit import errors
from labkit.cli import _create
from labkit.cli._create_opts import parse_duration


def body_of(*argv: str) -> dict:
    p = argparse.ArgumentParser(add_help=False)
    _create.add_create_flags(p)
    cut = _create.split_at_positional(list(argv), _create.RUN_VALUE_OPTS)
    args = p.parse_args(list(argv[:cut]))
    return _create.create_body(args, argv[cut], list(argv[cut + 1:]))


@pytest.mark.parametrize("text,ns", [("1s", 10**9), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8),
                                     ("1.5h", 5400 * 10**9), ("0", 0), ("-2s", -2 * 10**9)])
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration("--health-interval", text) == ns


@pytest.mark.parametrize("bad", ["", "1", "s", "1x", "1s2"])
def test_bad_duration_names_the_flag(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="--health-timeout"):
        parse_duration("--health-timeout", bad)


def test_health_flags() -> None:
    body = body_of("--health-cmd", "curl -f x", "--health-interval", "2s", "--health-timeout",
                   "1s", "--health-retries", "4", "--health-start-period", "1m", "busybox")
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 2 * 10**9,
                                   "Timeout": 10**9, "StartPeriod": 60 * 10**9,
                                   "StartInterval": 0, "Retries": 4}
    assert body_of("--no-healthcheck", "busybox")["Healthcheck"] == {"Test": ["NONE"]}
    assert "Healthcheck" not in body_of("busybox")
    with pytest.raises(errors.InvalidArgumentError, match="conflicts with --health"):
        body_of("--no-healthcheck", "--health-cmd", "true", "busybox")
    with pytest.raises(errors.InvalidArgumentError, match="--health-interval"):
        body_of("--health-interval=-1s", "busybox")


def test_kernel_view_flags(tmp_path: Path) -> None:
    prof = tmp_path / "p.json"
    prof.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    host = body_of("--ulimit", "nofile=10:20", "--ulimit", "core=5", "--sysctl", "net.x=1",
                   "--security-opt", f"seccomp={prof}", "--security-opt", "no-new-privileges",
                   "--privileged", "--device", "/dev/fuse:/dev/f:r", "--device", "/dev/null",
                   "--device-cgroup-rule", "c 1:3 r", "--pid", "host", "--ipc", "shareable",
                   "--uts", "host", "--cgroupns", "private", "--cgroup-parent", "lk-p",
                   "--shm-size", "1m", "--tmpfs", "/run:size=1m", "--tmpfs", "/t",
                   "--cpuset-cpus", "0", "--oom-score-adj", "-10", "--group-add", "audio",
                   "--cap-add", "NET_ADMIN", "busybox", "true")["HostConfig"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 20},
                               {"Name": "core", "Soft": 5, "Hard": 5}]
    assert host["Sysctls"] == {"net.x": "1"}
    assert host["SecurityOpt"][0] == "seccomp=" + json.dumps({"defaultAction": "SCMP_ACT_ALLOW"},
                                                             separators=(",", ":"))
    assert host["SecurityOpt"][1] == "no-new-privileges" and host["Privileged"] is True
    assert host["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f", "CgroupPermissions": "r"},
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/null", "CgroupPermissions": "rwm"}]
    assert host["DeviceCgroupRules"] == ["c 1:3 r"]
    assert (host["PidMode"], host["IpcMode"], host["UTSMode"], host["CgroupnsMode"]) == (
        "host", "shareable", "host", "private")
    assert host["CgroupParent"] == "lk-p" and host["ShmSize"] == 1 << 20
    assert host["Tmpfs"] == {"/run": "size=1m", "/t": ""}
    assert host["CpusetCpus"] == "0" and host["OomScoreAdj"] == -10
    assert host["GroupAdd"] == ["audio"] and host["CapAdd"] == ["NET_ADMIN"]
    with pytest.raises(errors.InvalidArgumentError, match="invalid ulimit argument"):
        body_of("--ulimit", "nofile", "busybox")
    with pytest.raises(errors.InvalidArgumentError, match="opening seccomp profile"):
        body_of("--security-opt", f"seccomp={tmp_path}/none.json", "busybox")


def test_log_flags() -> None:
    host = body_of("--log-driver", "syslog", "--log-opt", "tag={{.Name}}", "--log-opt",
                   "syslog-address=udp://127.0.0.1:514", "busybox")["HostConfig"]
    assert host["LogConfig"] == {"Type": "syslog", "Config": {
        "tag": "{{.Name}}", "syslog-address": "udp://127.0.0.1:514"}}
    # only options: the daemon's default driver applies (Type "")
    assert body_of("--log-opt", "max-size=1k", "busybox")["HostConfig"]["LogConfig"] == {
        "Type": "", "Config": {"max-size": "1k"}}
    assert "LogConfig" not in body_of("busybox")["HostConfig"]
    with pytest.raises(errors.InvalidArgumentError, match="invalid logging opts for driver none"):
        body_of("--log-driver", "none", "--log-opt", "x=1", "busybox")
