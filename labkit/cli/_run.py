"""The streaming verbs: run (foreground and -d), attach, exec, logs, stats.

`run` in the foreground makes the Docker CLI's calls in its order (docker-api.md 3.1):
create -> attach (hijack, before start so no output is lost) -> wait (next-exit, or removed
with --rm; its headers arrive at once, its body at exit) -> start -> resize (tty) -> stream
-> exit with the wait body's StatusCode.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from labkit import errors
from labkit.cli import _fmt, _stream
from labkit.engine.client import Client
from labkit.engine.shim.stdcopy import Decoder

__all__ = ["attach", "exec_in", "logs", "run_container", "start_attached", "stats"]


def _print_err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_container(client: Client, body: dict[str, Any], args: argparse.Namespace,
                  create_only: bool, prog: str) -> int:
    c = client.containers
    try:
        created = c.create(body, name=args.name)
    except errors.NotFoundError as err:
        if "image" in str(err).lower():
            image = str(body["Image"])
            tagged = image if ":" in image.rsplit("/", 1)[-1] or "@" in image else f"{image}:latest"
            _print_err(f"Unable to find image '{tagged}' locally")
        _print_err(f"labkit: Error response from daemon: {err}.\nSee '{prog} --help'.")
        return 125
    cid = str(created["Id"])
    for warning in created.get("Warnings") or []:
        _print_err(f"WARNING: {warning}")
    if create_only:
        print(cid)
        return 0
    if getattr(args, "detach", False):
        try:
            c.start(cid)
        except errors.LabkitError as err:
            _print_err(f"labkit: Error response from daemon: {err}.")
            return _start_error_code(err)
        print(cid)
        return 0
    tty, stdin = bool(body["Tty"]), bool(body["AttachStdin"])
    hijack = c.attach(cid, stdin=stdin, stdout=body["AttachStdout"],
                      stderr=body["AttachStderr"], detach_keys=args.detach_keys)
    waiter = c.wait(cid, "removed" if args.rm else "next-exit")
    try:
        c.start(cid)
    except errors.LabkitError as err:
        hijack.close()
        waiter.close()
        _print_err(f"labkit: Error response from daemon: {err}.")
        if args.rm:
            try:
                c.remove(cid, force=True)
            except errors.LabkitError:
                pass
        return _start_error_code(err)
    return _stream_until_exit(client, cid, hijack, waiter, tty, stdin,
                              _stream.parse_detach_keys(args.detach_keys),
                              lambda h, w: c.resize(cid, h, w))


def _start_error_code(err: Exception) -> int:
    from labkit.cli.container import exit_code_for_start_error

    return exit_code_for_start_error(err)


def _stream_until_exit(client: Client, cid: str, hijack: Any, waiter: Any, tty: bool,
                       stdin: bool, detach: bytes, resize: Any) -> int:
    if tty and (size := _stream.terminal_size()) is not None:
        try:
            resize(*size)
        except errors.LabkitError:
            pass
    with _stream.raw_terminal(0) if tty and stdin else _nullctx(), _sig_proxy(client, cid, tty):
        how = _stream.pump(hijack, tty, stdin, detach, resize)
    hijack.close()
    if how == "detached":
        waiter.close()
        return 0
    with _sig_proxy(client, cid, tty):
        result = waiter.json() or {}
    if (err := result.get("Error")) and err.get("Message"):
        _print_err(f"labkit: {err['Message']}")
    return int(result.get("StatusCode", 0))


# Docker's --sig-proxy (on by default): signals the CLI gets go to the container, through the
# kill API.  Not with a tty: there ^C is a byte the container's terminal turns into SIGINT.
_PROXIED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


@contextmanager
def _sig_proxy(client: Client, cid: str, tty: bool) -> Iterator[None]:
    if tty:
        yield
        return
    import signal

    def forward(signum: int, _frame: Any) -> None:
        try:
            client.containers.kill(cid, signal.Signals(signum).name)
        except errors.LabkitError:
            pass  # the container may be gone already; its exit ends the run anyway

    old = {name: signal.signal(getattr(signal, name), forward) for name in _PROXIED}
    try:
        yield
    finally:
        for name, handler in old.items():
            signal.signal(getattr(signal, name), handler)


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def start_attached(client: Client, name: str, stdin: bool) -> int:
    """`start -a [-i]`: attach, wait for the next exit, start, stream."""
    info = client.containers.inspect(name)
    tty = bool((info.get("Config") or {}).get("Tty"))
    hijack = client.containers.attach(name, stdin=stdin)
    waiter = client.containers.wait(name, "next-exit")
    client.containers.start(name)
    return _stream_until_exit(client, name, hijack, waiter, tty, stdin,
                              _stream.DEFAULT_DETACH,
                              lambda h, w: client.containers.resize(name, h, w))


def attach(client: Client, name: str, stdin: bool, detach_keys: str | None) -> int:
    info = client.containers.inspect(name)
    if not (info.get("State") or {}).get("Running"):
        raise errors.ConflictError("You cannot attach to a stopped container, start it first")
    cfg = info.get("Config") or {}
    stdin = stdin and bool(cfg.get("OpenStdin"))
    hijack = client.containers.attach(name, stdin=stdin, detach_keys=detach_keys)
    waiter = client.containers.wait(name, "next-exit")
    return _stream_until_exit(client, name, hijack, waiter, bool(cfg.get("Tty")), stdin,
                              _stream.parse_detach_keys(detach_keys),
                              lambda h, w: client.containers.resize(name, h, w))


def exec_in(client: Client, name: str, cmd: list[str], args: argparse.Namespace) -> int:
    from labkit.cli._create import _env_file

    env = [e for path in args.env_file for e in _env_file(path)] + list(args.env)
    exec_id = client.execs.create(name, cmd, stdin=args.interactive, tty=args.tty, env=env,
                                  workdir=args.workdir, user=args.user,
                                  privileged=args.privileged)
    if args.detach:
        client.execs.start_detached(exec_id)
        return 0
    hijack = client.execs.start(exec_id, tty=args.tty)
    if args.tty and (size := _stream.terminal_size()) is not None:
        try:
            client.execs.resize(exec_id, *size)
        except errors.LabkitError:
            pass
    with _stream.raw_terminal(0) if args.tty and args.interactive else _nullctx():
        how = _stream.pump(hijack, args.tty, args.interactive,
                           _stream.parse_detach_keys(args.detach_keys),
                           lambda h, w: client.execs.resize(exec_id, h, w))
    hijack.close()
    if how == "detached":
        return 0
    # The daemon sets ExitCode before it closes the stream (docker-api.md 3.1); poll briefly
    # in case an older daemon closes first.
    for _ in range(50):
        info = client.execs.inspect(exec_id)
        if info.get("ExitCode") is not None and not info.get("Running"):
            return int(info["ExitCode"])
        time.sleep(0.02)
    return int(client.execs.inspect(exec_id).get("ExitCode") or 0)


def logs(client: Client, args: argparse.Namespace) -> int:
    info = client.containers.inspect(args.container)
    tty = bool((info.get("Config") or {}).get("Tty"))
    resp = client.containers.logs(args.container, follow=args.follow, tail=args.tail,
                                  since=args.since, until=args.until,
                                  timestamps=args.timestamps)
    dec = Decoder()
    try:
        while data := resp.read1():
            if tty:
                os.write(1, data)
                continue
            for stream, payload in dec.feed(data):
                os.write(2 if stream == 2 else 1, payload)
    finally:
        resp.close()
    return 0


def _stats_row(name: str, s: dict[str, Any], trunc: bool) -> dict[str, str]:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    d_cpu = ((cpu.get("cpu_usage") or {}).get("total_usage", 0)
             - (pre.get("cpu_usage") or {}).get("total_usage", 0))
    d_sys = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                         or []) or 1
    cpu_pct = d_cpu / d_sys * ncpu * 100.0 if d_sys > 0 and d_cpu > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = float(mem.get("usage") or 0) - float((mem.get("stats") or {}).get(
        "total_inactive_file", (mem.get("stats") or {}).get("inactive_file", 0)) or 0)
    limit = float(mem.get("limit") or 0)
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "read")
    wr = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "write")
    cid = str(s.get("id") or name)

    def bin_size(n: float) -> str:  # go-units BytesSize: binary units, 4 significant digits
        units = ["B", "KiB", "MiB", "GiB", "TiB"]
        i = 0
        while n >= 1024 and i < len(units) - 1:
            n, i = n / 1024, i + 1
        return f"{n:.4g}{units[i]}"

    return {"Container": name, "ID": cid[:12] if trunc else cid,
            "Name": str(s.get("name") or "").lstrip("/") or name,
            "CPUPerc": f"{cpu_pct:.2f}%",
            "MemUsage": f"{bin_size(max(usage, 0))} / {bin_size(limit)}",
            "MemPerc": f"{(usage / limit * 100.0 if limit else 0.0):.2f}%",
            "NetIO": f"{_fmt.human_size(rx)} / {_fmt.human_size(tx)}",
            "BlockIO": f"{_fmt.human_size(rd)} / {_fmt.human_size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


STATS_DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                 "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
                 "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def stats(client: Client, args: argparse.Namespace) -> int:
    """`stats --no-stream` prints one table; without it, redraws every second until ^C."""
    names = args.containers or [c["Id"] for c in client.containers.list(all=args.all)]
    template = args.format or STATS_DEFAULT
    while True:
        rows = []
        for name in names:
            resp = client.containers.stats(name, stream=False)
            rows.append(_stats_row(name, resp.json() or {}, not args.no_trunc))
        text = _fmt.render_rows(template, rows, STATS_HEADERS)
        if args.no_stream:
            sys.stdout.write(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text)
        sys.stdout.flush()
        time.sleep(1.0)
