"""`labkit run` / `labkit create` flags -> Docker's POST /containers/create body.

The argument list is split by hand at the image (the first word that is not an option or an
option's value), because everything after the image is the container's command, dashes and
all (`labkit run busybox ls -l`), as the Docker CLI reads it.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from labkit import errors
from labkit.cli import _mounts, _netopts
from labkit.cli._create_opts import VALUE_OPTS, add_flags, apply_flags

__all__ = [
    "RUN_VALUE_OPTS",
    "add_create_flags",
    "create_body",
    "parse_memory",
    "parse_restart",
    "split_at_positional",
]

RUN_VALUE_OPTS = {"-e", "--env", "--env-file", "-w", "--workdir", "-u", "--user",
                  "--entrypoint", "-h", "--hostname", "-m", "--memory", "--cpus",
                  "--pids-limit", "--restart", "--network", "--net", "--name", "-a",
                  "--attach", "-l", "--label", "--detach-keys", "--stop-signal",
                  "--stop-timeout", "--cidfile", "--platform", "--pull", "--log-driver",
                  "--log-opt", "-p", "--publish", "-v", "--volume", "--mount", "--tmpfs",
                  "--cap-add", "--cap-drop", "--memory-swap", "--cpu-shares", "--cpuset-cpus",
                  "--shm-size"} | VALUE_OPTS | _netopts.VALUE_OPTS
_SHORT_VALUE = {o[1] for o in RUN_VALUE_OPTS if len(o) == 2}


def split_at_positional(argv: list[str], value_opts: set[str]) -> int:
    """Index of the first positional word in ``argv`` (len(argv) when there is none)."""
    short_value = {o[1] for o in value_opts if len(o) == 2}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return i + 1
        if word.startswith("--"):
            if "=" not in word and word in value_opts:
                i += 1
        elif word.startswith("-") and len(word) > 1:
            for j, ch in enumerate(word[1:], start=1):
                if ch in short_value:
                    if j == len(word) - 1:
                        i += 1  # the value is the next word
                    break  # else the rest of the word is the value (-eFOO=1)
        else:
            return i
        i += 1
    return len(argv)


def add_create_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("-i", "--interactive", action="store_true", help="keep STDIN open")
    a("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    a("--name", help="assign a name to the container")
    a("-e", "--env", action="append", default=[], help="set environment variables")
    a("--env-file", action="append", default=[], help="read in a file of environment variables")
    a("-w", "--workdir", help="working directory inside the container")
    a("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    a("--entrypoint", help="overwrite the default ENTRYPOINT of the image")
    a("-h", "--hostname", help="container host name")
    a("-m", "--memory", help="memory limit (e.g. 64m, 1g)")
    a("--cpus", help="number of CPUs (e.g. 0.5)")
    a("--pids-limit", type=int, help="tune container pids limit (-1 for unlimited)")
    a("--restart", default="no", help="restart policy: no, on-failure[:N], always, unless-stopped")
    a("--init", action="store_true", help="run an init inside the container (reaps zombies)")
    a("-l", "--label", action="append", default=[], help="set metadata on a container")
    a("--rm", action="store_true", help="remove the container when it exits")
    a("--stop-signal", help="signal to stop the container")
    a("--stop-timeout", type=int, help="timeout (in seconds) to stop a container")
    a("-a", "--attach", action="append", default=[], help="attach to STDIN, STDOUT or STDERR")
    a("--detach-keys", help="override the key sequence for detaching a container")
    _netopts.add_flags(p)  # -p/-P, --expose, --network, --ip, --dns, --add-host, --link...
    add_flags(p)  # health checks, security, namespaces, devices, limits
    _mounts.add_flags(p)  # -v/--volume, --mount
    a("--help", action="help", help="print usage")


def parse_restart(text: str) -> dict[str, Any]:
    """--restart -> HostConfig.RestartPolicy; bad input names the accepted forms."""
    name, _, count = text.partition(":")
    if name in ("no", "always", "unless-stopped") and not count:
        return {"Name": "" if name == "no" else name, "MaximumRetryCount": 0}
    if name == "on-failure" and (not count or count.isdigit()):
        return {"Name": name, "MaximumRetryCount": int(count or 0)}
    raise errors.InvalidArgumentError(
        "--restart", f"invalid restart policy {text!r}",
        hint="use no, always, unless-stopped or on-failure[:max-retries]")


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int:
    """Docker's RAMInBytes: "64m" -> 67108864 (binary units, optional trailing b)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", text.strip().lower())
    if not m:
        raise errors.InvalidArgumentError("--memory", f"invalid size {text!r}",
                                          hint="e.g. 64m, 512k, 1g")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise errors.InvalidArgumentError("--env-file", f"{path}: {err.strerror}") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if "=" in line else f"{line}={os.environ.get(line, '')}")
    return out


def create_body(args: argparse.Namespace, image: str, cmd: list[str]) -> dict[str, Any]:
    """The create body the Docker CLI sends for these flags (Engine API v1.41)."""
    env: list[str] = []
    for path in args.env_file:
        env += _env_file(path)
    for item in args.env:
        env.append(item if "=" in item else f"{item}={os.environ.get(item, '')}")
    attach = {s.lower() for s in args.attach}
    bad = attach - {"stdin", "stdout", "stderr"}
    if bad:
        raise errors.InvalidArgumentError("--attach", f"invalid stream {min(bad)!r}",
                                          hint="use STDIN, STDOUT or STDERR")
    detached = getattr(args, "detach", False)
    stdin = args.interactive or "stdin" in attach
    host: dict[str, Any] = {"RestartPolicy": parse_restart(args.restart),
                            "AutoRemove": args.rm, "Init": args.init or None}
    if args.memory:
        host["Memory"] = parse_memory(args.memory)
    if args.cpus:
        try:
            host["NanoCpus"] = int(float(args.cpus) * 1e9)
        except ValueError:
            raise errors.InvalidArgumentError("--cpus", f"invalid number {args.cpus!r}") from None
    if args.pids_limit is not None:
        host["PidsLimit"] = args.pids_limit
    if args.rm and host["RestartPolicy"]["Name"]:
        raise errors.InvalidArgumentError("--restart", "conflicting options: --restart and --rm")
    body: dict[str, Any] = {
        "Hostname": args.hostname or "", "User": args.user or "",
        "AttachStdin": stdin and not detached,
        "AttachStdout": not detached and (not attach or "stdout" in attach),
        "AttachStderr": not detached and (not attach or "stderr" in attach),
        "Tty": args.tty, "OpenStdin": stdin, "StdinOnce": stdin and not detached,
        "Env": env, "Cmd": cmd or None, "Image": image,
        "WorkingDir": args.workdir or "", "Labels": {lbl.partition("=")[0]: lbl.partition("=")[2] for lbl in args.label},
        "HostConfig": host,
    }
    if args.entrypoint is not None:
        body["Entrypoint"] = [args.entrypoint] if args.entrypoint else [""]
    if args.stop_signal:
        body["StopSignal"] = args.stop_signal
    if args.stop_timeout is not None:
        body["StopTimeout"] = args.stop_timeout
    apply_flags(args, body)
    _mounts.apply(args, host)
    _netopts.apply(args, body)
    return body
