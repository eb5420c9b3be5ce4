"""labkit bench net: `docker run --rm busybox true` on the default bridge, labkit's daemon
against dockerd and podman, the same Docker CLI driving all three (issue 10 item 6).

One run makes one network namespace, ``lk-bnet-<pid>`` (labkit.measure.peer_daemons), and
starts all three daemons inside it (nsenter --net), each with its state in a temp dir
(/tmp/lk-bnet-*, labkit's in /tmp/lk-bnt-*):

* labkit's daemon: labkit.measure.sandbox.LabEngine with ``netns=``; its default network is
  whatever labkit's default is (the default bridge once the engine attaches containers to
  one; the table's "default network" column says what a container got in this run);
* dockerd (Debian's docker.io) with its default bridge docker0 and iptables on: both land in
  the bench's own netns, never the host's (ip-netns(8): links and netfilter tables are per
  namespace), and go with it;
* podman's Docker-compatible API service (``podman system service``) with its own root,
  runroot, tmpdir and containers.conf, its default network "podman" (a bridge, cni-podman0,
  with the CNI or netavark backend podman finds) created in the same netns.

The same busybox image in each: labkit's built-in one, ``docker save``-d from labkit and
``docker load``-ed into dockerd and podman.  The same Docker CLI (Debian docker.io's
``docker``, labkit.measure.peers.debian_docker_cli) and the same argv for all three; only
DOCKER_HOST (and a DOCKER_CONFIG of each one's own) differ.

Workloads (labkit.measure.bench_net_report.WORKLOADS): ``docker run --rm busybox true`` (the
default network) and ``docker run --rm --network none busybox true``, each daemon's floor, so
the bridge's own cost (bridge minus none) shows.  Each sample is the wall time of one CLI
process, fork to exit (time.perf_counter_ns).  Warm-up rounds first (dropped); every round
runs every workload on every daemon, the daemons' and the workloads' order rotating each round
so load from elsewhere hits all alike.  A daemon that cannot start, or a workload that fails on
it, is a row "cannot run: <reason>", never a crash; its first failure ends that pair.  Targets
(labkit at least 5x faster than dockerd and podman on the bridge) are reported, never asserted.
At the end: containers removed, daemons stopped by pid, mounts under the temp dirs unmounted,
the temp dirs and the netns deleted.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.measure.bench_images_report import cli_error
from labkit.measure.bench_net_report import (
    CSV_HEADER,
    DAEMONS,
    WORKLOADS,
    NetRow,
    NetTarget,
    bridge_cost,
    print_table,
    render_table,
    targets,
    to_csv,
    to_json,
    write_png,
)

__all__ = [
    "CSV_HEADER",
    "DAEMONS",
    "WORKLOADS",
    "NetRow",
    "NetTarget",
    "bridge_cost",
    "describe_network",
    "print_table",
    "render_table",
    "run",
    "steps",
    "targets",
    "to_csv",
    "to_json",
    "write_png",
]

CLI_TIMEOUT = 120.0
PROBE = ("run", "--rm", "busybox", "ip", "-o", "addr", "show")


@dataclass
class _Side:
    """One daemon as the Docker CLI sees it: env None when it could not start (``why``)."""

    name: str
    env: dict[str, str] | None = None
    why: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _cli(cli: str, env: dict[str, str], *args: str
         ) -> tuple[float, subprocess.CompletedProcess[str]]:
    import time

    t0 = time.perf_counter_ns()
    p = subprocess.run([cli, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, check=False, timeout=CLI_TIMEOUT)
    return (time.perf_counter_ns() - t0) / 1e6, p


def describe_network(ip_addr_output: str) -> str:
    """What a container got from its default network, from `ip -o addr show` inside it:
    "eth0 172.17.0.2/16" (its non-loopback addresses), or "lo only" when it has none."""
    addrs = []
    for line in ip_addr_output.splitlines():
        parts = line.split()
        # "<n>: <ifname> inet <addr>/<len> ..." (ip-address(8), -o: one line per address)
        if len(parts) >= 4 and parts[2] == "inet" and parts[1] != "lo":
            addrs.append(f"{parts[1].split('@')[0]} {parts[3]}")
    return ", ".join(addrs) if addrs else "lo only (no network interface)"


def _reason(err: BaseException, log: Path | None) -> str:
    """An error's message plus the last line of the daemon's log (read before it goes)."""
    text = str(err).strip() or type(err).__name__
    if log is not None and log.exists():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        if tail:
            text += f" (log: {tail[-1].strip()[-200:]})"
    return text


def _load(cli: str, side: _Side, archive: Path) -> None:
    assert side.env is not None
    _, p = _cli(cli, side.env, "load", "-q", "-i", str(archive))
    if p.returncode != 0:
        side.env, side.why = None, f"`docker load` of busybox failed: {cli_error(p.stderr)}"


def _probe(cli: str, side: _Side) -> None:
    """Untimed: what the default network gives a container on this daemon (the note)."""
    assert side.env is not None
    _, p = _cli(cli, side.env, *PROBE)
    side.note = ("default network: " + describe_network(p.stdout) if p.returncode == 0
                 else f"network probe failed: {cli_error(p.stderr)}")


def _measure(cli: str, sides: list[_Side], runs: int, warmup: int,
             progress: Callable[[str], None] | None) -> None:
    wls = list(WORKLOADS)
    for i in range(warmup + runs):
        order = sides[i % len(sides):] + sides[:i % len(sides)]
        for wl in wls[i % len(wls):] + wls[:i % len(wls)]:
            for s in order:
                if s.env is not None and wl not in s.errors:
                    ms, p = _cli(cli, s.env, *WORKLOADS[wl])
                    if p.returncode != 0:
                        s.errors[wl] = cli_error(p.stderr)
                    elif i >= warmup:
                        s.samples.setdefault(wl, []).append(ms)
                if progress is not None:
                    progress(f"{'warm-up' if i < warmup else 'round'} {i + 1}, {wl}, {s.name}")


def _cli_version(cli: str) -> str:
    p = subprocess.run([cli, "--version"], capture_output=True, text=True, check=False)
    return f"{cli} ({p.stdout.strip() or '?'})"


def run(runs: int = 20, warmup: int = 2, *, cli: str | None = None,
        progress: Callable[[str], None] | None = None
        ) -> tuple[list[NetRow], dict[str, str]]:
    """Start the three daemons in one netns of the bench's, time both workloads on each,
    interleaved, stop everything; one NetRow per (workload, daemon) and the set-up
    (CLI, netns, each daemon's default network).

    Raises:
        InvalidArgumentError: runs < 1 or warmup < 0.
        UnsupportedError: no Docker CLI.
    """
    import os

    from labkit.measure._bytecode import ensure_compiled
    from labkit.measure.peer_daemons import BenchNetns, Dockerd, PodmanService
    from labkit.measure.peers import debian_docker_cli
    from labkit.measure.sandbox import LabEngine

    if runs < 1 or warmup < 0:
        raise errors.InvalidArgumentError("runs/warmup", f"{runs}/{warmup}: need runs >= 1, "
                                          "warmup >= 0")
    cli = cli or debian_docker_cli()
    ensure_compiled()
    tmp = Path(tempfile.mkdtemp(prefix="lk-bnet-"))
    ns = BenchNetns(f"lk-bnet-{os.getpid()}")
    lab, dk, pod = _Side("labkit"), _Side("dockerd"), _Side("podman")
    engine: LabEngine | None = None
    dockerd: Dockerd | None = None
    podman: PodmanService | None = None
    setup = {"cli": _cli_version(cli), "netns": ns.name}
    try:
        ns.create()
        archive = tmp / "busybox.tar"
        try:
            engine = LabEngine("bnt", netns=ns.name)
            engine.start()
            lab.env = engine.docker_env
            _, p = _cli(cli, lab.env, "save", "-o", str(archive), "busybox:latest")
            if p.returncode != 0:
                setup["image"] = f"labkit's `docker save` failed ({cli_error(p.stderr)})"
        except Exception as err:  # noqa: BLE001 - a peer that cannot run is a row
            lab.env, lab.why = None, _reason(err, None)
        if not archive.exists():
            # labkit could not hand its image over: the peers get its busybox layer imported
            from labkit.engine.images.busybox import pack_rootfs_layer

            pack_rootfs_layer(tmp / "layer.tar", compression="none")
            setup["image"] = (setup.get("image", "labkit did not start") + ": the peers "
                              "`docker import` labkit's busybox layer")
        else:
            setup["image"] = "labkit's busybox, docker save from labkit, docker load to peers"
        if shutil.which("dockerd") is None:
            dk.why = "not installed: labkit/measure/install-docker-io.sh (Debian's docker.io)"
        else:
            try:
                dockerd = Dockerd(tmp, ns.name, bridge=True)
                dockerd.start()
                dk.env = dockerd.env
            except Exception as err:  # noqa: BLE001
                dk.why = _reason(err, tmp / "dockerd" / "dockerd.log")
        try:
            podman = PodmanService(tmp, ns.name)
            podman.start()
            pod.env = podman.env
            setup["podman network backend"] = podman.network_backend()
        except Exception as err:  # noqa: BLE001
            pod.why = _reason(err, tmp / "podman" / "podman.log")
        for s in (dk, pod):
            if s.env is not None:
                if archive.exists():
                    _load(cli, s, archive)
                else:
                    _, p = _cli(cli, s.env, "import", str(tmp / "layer.tar"), "busybox:latest")
                    if p.returncode != 0:
                        s.env, s.why = None, f"`docker import` failed: {cli_error(p.stderr)}"
        sides = [lab, dk, pod]
        for s in sides:
            if s.env is not None:
                _probe(cli, s)
                setup[f"network {s.name}"] = s.note.removeprefix("default network: ")
        _measure(cli, sides, runs, warmup, progress)
        # the probe's note belongs to the default-network row only
        return [NetRow(wl, s.name, tuple(s.samples.get(wl, ())),
                       s.why or s.errors.get(wl) or None, s.note if wl == "bridge" else "")
                for wl in WORKLOADS for s in sides], setup
    finally:
        _stop(podman, dockerd, engine)
        ns.delete()
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(*daemons: Any) -> None:
    """Stop each that was made, one failing stop not keeping the others running."""
    for d in daemons:
        if d is None:
            continue
        try:
            d.stop()
        except Exception:  # noqa: BLE001,S110 - the next one must still be stopped
            pass


def steps(runs: int, warmup: int) -> int:
    """How many progress() calls run() makes: for a progress bar's total."""
    return (runs + warmup) * len(WORKLOADS) * len(DAEMONS)
