"""`labkit run/create` flags for health checks and the container's kernel view, mapped to the
create body as the Docker CLI maps them (cli/command/container/opts.go)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from labkit import errors

__all__ = ["VALUE_OPTS", "add_flags", "apply_flags", "parse_duration"]

VALUE_OPTS = {"--health-cmd", "--health-interval", "--health-timeout", "--health-retries",
              "--health-start-period", "--health-start-interval", "--ulimit", "--sysctl",
              "--security-opt", "--device", "--device-cgroup-rule", "--pid", "--ipc", "--uts",
              "--userns", "--cgroupns", "--cgroup-parent", "--shm-size", "--tmpfs",
              "--cpuset-cpus", "--cpuset-mems", "--oom-score-adj", "--group-add",
              "--cap-add", "--cap-drop", "--log-driver", "--log-opt"}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
       "h": 3600 * 10**9}


def parse_duration(flag: str, text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "500ms", "-1s") -> nanoseconds."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    if body == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _NS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise errors.InvalidArgumentError(flag, f'invalid duration "{text}"',
                                          hint="e.g. 30s, 1m30s, 500ms")
    return sign * int(total)


def add_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--health-cmd", help="command to run to check health")
    a("--health-interval", help="time between running the check (ms|s|m|h) (default 0s)")
    a("--health-timeout", help="maximum time to allow one check to run (ms|s|m|h)")
    a("--health-retries", type=int, help="consecutive failures needed to report unhealthy")
    a("--health-start-period", help="start period before retries count (ms|s|m|h)")
    a("--health-start-interval", help="time between checks during the start period")
    a("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")
    a("--ulimit", action="append", default=[], help="ulimit options (e.g. nofile=1024:2048)")
    a("--sysctl", action="append", default=[], help="sysctl options (e.g. net.ipv4.ip_forward=1)")
    a("--security-opt", action="append", default=[], help="security options")
    a("--privileged", action="store_true", help="give extended privileges to this container")
    a("--device", action="append", default=[], help="add a host device to the container")
    a("--device-cgroup-rule", action="append", default=[], help="add a rule to the cgroup "
                                                               "allowed devices list")
    a("--cap-add", action="append", default=[], help="add Linux capabilities")
    a("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    a("--log-driver", help="logging driver for the container (daemon default: daemon.json)")
    a("--log-opt", action="append", default=[], help="log driver options (key=value)")
    a("--pid", help="PID namespace to use (host, container:NAME)")
    a("--ipc", help="IPC mode to use (none, private, shareable, host, container:NAME)")
    a("--uts", help="UTS namespace to use (host)")
    a("--userns", help="user namespace to use (host)")
    a("--cgroupns", help="cgroup namespace to use (host, private)")
    a("--cgroup-parent", help="optional parent cgroup for the container")
    a("--shm-size", help="size of /dev/shm (e.g. 64m)")
    a("--tmpfs", action="append", default=[], help="mount a tmpfs directory (e.g. /run:size=1m)")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    a("--oom-score-adj", type=int, help="tune host's OOM preferences (-1000 to 1000)")
    a("--group-add", action="append", default=[], help="add additional groups to join")


def _ulimit(text: str) -> dict[str, Any]:
    name, eq, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        s = int(soft)
        h = int(hard) if hard else s
    except ValueError:
        raise errors.InvalidArgumentError("--ulimit", f"invalid ulimit argument: {text}",
                                          hint="e.g. nofile=1024:2048") from None
    if not eq or not name:
        raise errors.InvalidArgumentError("--ulimit", f"invalid ulimit argument: {text}")
    return {"Name": name, "Soft": s, "Hard": h}


def _device(text: str) -> dict[str, str]:
    parts = text.split(":")
    perms = "rwm"
    if len(parts) > 1 and parts[-1] and set(parts[-1]) <= set("rwm") and \
            not parts[-1].startswith("/"):
        perms = parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise errors.InvalidArgumentError("--device", f"bad format for path: {text}")
    return {"PathOnHost": parts[0], "PathInContainer": parts[-1], "CgroupPermissions": perms}


def _security_opt(opt: str) -> str:
    """seccomp=FILE is sent as seccomp=<the file's JSON>, as the Docker CLI does."""
    key, sep, value = opt.partition("=")
    if key != "seccomp" or not sep or value == "unconfined":
        return opt
    import json
    try:
        with open(value, encoding="utf-8") as f:
            profile = json.load(f)
    except (OSError, ValueError) as err:
        raise errors.InvalidArgumentError(
            "--security-opt", f"opening seccomp profile ({value}) failed: {err}") from None
    return "seccomp=" + json.dumps(profile, separators=(",", ":"))


def _health(args: argparse.Namespace) -> dict[str, Any] | None:
    given = {k: getattr(args, k) for k in ("health_cmd", "health_interval", "health_timeout",
                                           "health_retries", "health_start_period",
                                           "health_start_interval")}
    if args.no_healthcheck:
        if any(v is not None for v in given.values()):
            raise errors.InvalidArgumentError("--no-healthcheck",
                                              "--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if all(v is None for v in given.values()):
        return None
    hc: dict[str, Any] = {"Test": ["CMD-SHELL", args.health_cmd] if args.health_cmd else []}
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"),
                      ("StartPeriod", "start_period"), ("StartInterval", "start_interval")):
        text = given[f"health_{flag}"]
        ns = parse_duration(f"--health-{flag.replace('_', '-')}", text) if text else 0
        if ns < 0:
            raise errors.InvalidArgumentError(f"--health-{flag.replace('_', '-')}",
                                              "cannot be negative")
        hc[key] = ns
    retries = args.health_retries or 0
    if retries < 0:
        raise errors.InvalidArgumentError("--health-retries", "cannot be negative")
    hc["Retries"] = retries
    return hc


def _log_config(driver: str, opts: list[str]) -> dict[str, Any]:
    """--log-driver/--log-opt as the Docker CLI sends them (parseLoggingOpts): key=value
    pairs (a bare key has the value ""); none takes no options."""
    if driver == "none" and opts:
        raise errors.InvalidArgumentError("--log-opt", "invalid logging opts for driver none")
    conf = {k: v for k, _, v in (o.partition("=") for o in opts)}
    return {"Type": driver, "Config": conf}


def apply_flags(args: argparse.Namespace, body: dict[str, Any]) -> None:
    """Fill ``body`` (and its HostConfig) from these flags; 400-style errors name the flag."""
    from labkit.cli._create import parse_memory
    hc = _health(args)
    if hc is not None:
        body["Healthcheck"] = hc
    host = body["HostConfig"]
    for flag, key, value in (
            ("--pid", "PidMode", args.pid), ("--ipc", "IpcMode", args.ipc),
            ("--uts", "UTSMode", args.uts), ("--userns", "UsernsMode", args.userns),
            ("--cgroupns", "CgroupnsMode", args.cgroupns),
            ("--cgroup-parent", "CgroupParent", args.cgroup_parent),
            ("--cpuset-cpus", "CpusetCpus", args.cpuset_cpus),
            ("--cpuset-mems", "CpusetMems", args.cpuset_mems)):
        if value:
            host[key] = value
    if args.privileged:
        host["Privileged"] = True
    if args.oom_score_adj is not None:
        host["OomScoreAdj"] = args.oom_score_adj
    if args.shm_size:
        host["ShmSize"] = parse_memory(args.shm_size)
    lists = {"SecurityOpt": [_security_opt(o) for o in args.security_opt],
             "DeviceCgroupRules": args.device_cgroup_rule,
             "GroupAdd": args.group_add, "CapAdd": args.cap_add, "CapDrop": args.cap_drop}
    host.update({k: v for k, v in lists.items() if v})
    if args.ulimit:
        host["Ulimits"] = [_ulimit(u) for u in args.ulimit]
    if args.device:
        host["Devices"] = [_device(d) for d in args.device]
    if args.sysctl:
        host["Sysctls"] = dict(s.split("=", 1) if "=" in s else (s, "") for s in args.sysctl)
    if args.log_driver or args.log_opt:
        host["LogConfig"] = _log_config(args.log_driver or "", args.log_opt)
    if args.tmpfs:
        host["Tmpfs"] = dict(t.split(":", 1) if ":" in t else (t, "") for t in args.tmpfs)
