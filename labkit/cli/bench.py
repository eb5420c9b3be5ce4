"""labkit bench runtime | engine | images | net | startup | swarm | services: container
start-to-exit latency, engine run, image ops, run on the default bridge, every way to start a
container side by side, swarm failover, and services (reschedule, routing mesh, overlay)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["parser", "run"]

DEFAULT_PEERS = "runc,crun"


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{n} is less than {minimum}")
        return n

    return parse


def parser(prog: str = "labkit bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Benchmarks that compare labkit with "
                                                        "its peers.")
    sub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    rt = sub.add_parser(
        "runtime", help="start-to-exit time of `X run` for labkit-runtime and peers",
        description="Time `X run --bundle B ID` of a busybox /bin/true container for "
                    "labkit-runtime and each peer, interleaved round-robin.",
        epilog="example: labkit bench runtime -n 30 --peers runc,crun --bundles labkit,runc "
               "--hosts cold,warm")
    rt.add_argument("-n", "--runs", type=_count(1), default=30,
                    help="timed runs per runtime (default 30)")
    rt.add_argument("--warmup", type=_count(0), default=3,
                    help="untimed runs per runtime first (default 3)")
    rt.add_argument("--peers", default=DEFAULT_PEERS,
                    help=f"comma-separated peer runtimes (default {DEFAULT_PEERS}); "
                         "'' for none")
    rt.add_argument("--bundles", default="labkit,runc",
                    help="whose `spec` writes config.json: labkit (seccomp), runc (none); "
                         "default both")
    rt.add_argument("--hosts", default="cold,warm",
                    help="host conditions: cold (cgroup attach idle), warm (a helper keeps it "
                         "busy); default both")
    rt.add_argument("--no-floor", action="store_true",
                    help="leave out the floor row (labkit-runtime's interpreter doing nothing)")
    rt.add_argument("--json", action="store_true", help="print rows as JSON, no table")
    en = sub.add_parser(
        "engine", help="`run --rm --network none busybox true` end to end: labkit vs peers",
        description="Time `docker run --rm --network none busybox true` against labkit's "
                    "daemon (and dockerd, podman), plus `labkit run`, interleaved.",
        epilog="example: labkit bench engine -n 20 --with-dockerd")
    en.add_argument("-n", "--runs", type=_count(1), default=20,
                    help="timed runs per candidate (default 20)")
    en.add_argument("--warmup", type=_count(0), default=2, help="untimed rounds first")
    en.add_argument("--with-dockerd", action="store_true",
                    help="also time dockerd (Debian docker.io, installed if missing), run in "
                         "a network namespace of its own")
    en.add_argument("--no-podman", action="store_true", help="skip podman even if installed")
    en.add_argument("--breakdown", type=_count(0), default=10, metavar="N",
                    help="then trace N runs with eBPF (proctree) and print CPU per room and "
                         "wall time per phase (default 10; 0 skips)")
    en.add_argument("--json", action="store_true", help="print rows as JSON, no table")
    im = sub.add_parser(
        "images", help="docker build (cold, cached), push and pull: labkit's daemon vs dockerd",
        description="Time the Docker CLI's classic build of a three-step Dockerfile (cold and "
                    "cached) and push + pull of a ~5 MB image to a real registry, against "
                    "labkit's daemon and dockerd side by side in one network namespace.",
        epilog="example: labkit bench images --runs 5 --csv images.csv --png images.png")
    im.add_argument("-n", "--runs", type=_count(1), default=5,
                    help="timed rounds per operation and daemon (default 5)")
    im.add_argument("--warmup", type=_count(0), default=1,
                    help="untimed rounds first (default 1)")
    im.add_argument("--only", choices=("build", "push-pull"),
                    help="run only the build or only the push-pull operations")
    im.add_argument("--json", action="store_true", help="print rows as JSON, no table")
    im.add_argument("--csv", metavar="FILE", help="also write the rows as CSV to FILE")
    im.add_argument("--png", metavar="FILE", help="also write a bar chart of the medians")
    nt = sub.add_parser(
        "net", help="`docker run --rm busybox true` on the default bridge: labkit's daemon vs "
                    "dockerd and podman",
        description="Time `docker run --rm busybox true` (the default network) and the same "
                    "with --network none (each daemon's floor) with one Docker CLI against "
                    "labkit's daemon, dockerd and podman's API service, all three in one "
                    "network namespace the bench makes, interleaved run by run.",
        epilog="example: labkit bench net --runs 20 --csv net.csv --png net.png")
    nt.add_argument("-n", "--runs", type=_count(1), default=20,
                    help="timed rounds per workload and daemon (default 20)")
    nt.add_argument("--warmup", type=_count(0), default=2,
                    help="untimed rounds first (default 2)")
    nt.add_argument("--cli", metavar="PATH",
                    help="the Docker CLI to drive all three (default: Debian docker.io's "
                         "/usr/bin/docker, else `docker` on PATH)")
    nt.add_argument("--json", action="store_true", help="print rows as JSON, no table")
    nt.add_argument("--csv", metavar="FILE", help="also write the rows as CSV to FILE")
    nt.add_argument("--png", metavar="FILE", help="also write a bar chart of the medians")
    st = sub.add_parser(
        "startup", help="container start latency: floors, labkit-runtime (warm, cli), runc, "
                        "crun, labkit's engine, podman, dockerd, and the probes' overhead",
        description="Time one busybox /bin/true container start, start to exit, for every "
                    "candidate side by side (interleaved round-robin), in a cold and a warm "
                    "host condition, then labkit-runtime warm with and without eBPF probes.",
        epilog="example: labkit bench startup -n 20 --csv startup.csv --png startup.png")
    st.add_argument("-n", "--runs", type=_count(1), default=20,
                    help="timed runs per candidate and host (default 20)")
    st.add_argument("--warmup", type=_count(0), default=3,
                    help="untimed rounds first (default 3)")
    st.add_argument("--candidates", metavar="LIST",
                    help="comma-separated candidates (default all): fork+exec, clone+ns, "
                         "hand-built floor, labkit-runtime warm, labkit-runtime cli, runc, "
                         "crun, labkit engine, podman, dockerd")
    st.add_argument("--hosts", default="cold,warm",
                    help="host conditions: cold (a quiet spell before each start), warm "
                         "(a helper keeps cgroup attach busy); default both")
    st.add_argument("--probes", default="lifecycle,nssyscalls,cgattach,runqlat,netio,oomkill",
                    help="labkit.probes modules to attach for the overhead rows (default "
                         "lifecycle,nssyscalls,cgattach,runqlat,netio,oomkill); '' skips that phase")
    st.add_argument("--json", action="store_true", help="print rows as JSON, no table")
    st.add_argument("--csv", metavar="FILE", help="also write the rows as CSV to FILE")
    st.add_argument("--png", metavar="FILE", help="also write a bar chart of the medians")
    _swarm_parser(sub)
    _services_parser(sub)
    return p


def _startup(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from labkit import errors
    from labkit.measure import bench_startup as bs

    _check_outputs(args)
    names = peers(args.candidates) if args.candidates is not None else list(bs.CANDIDATES)
    hosts, probes = peers(args.hosts), peers(args.probes)
    try:
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("labkit bench startup: setting up", total=bs.steps(
                args.runs, args.warmup, len(names), len(hosts), bool(probes)))
            rows = bs.run(candidates=names, runs=args.runs, warmup=args.warmup, hosts=hosts,
                          probes=probes, progress=lambda what: bar.update(
                              task, advance=1, description=what))
    except errors.InvalidArgumentError as err:
        parser().error(str(err))
    if args.json:
        print(bs.to_json(rows))
    else:
        bs.print_table(rows)
    if args.csv:
        bs.write_csv(rows, args.csv)
    if args.png:
        bs.write_png(rows, args.png)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """--csv/--png refused before minutes of measuring, not after."""
    from pathlib import Path

    for opt, value in (("--csv", args.csv), ("--png", args.png)):
        if value and not Path(value).resolve().parent.is_dir():
            parser().error(f"{opt} {value}: directory {Path(value).resolve().parent} does "
                           "not exist")


def _net(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress

    from labkit.measure import bench_net as bn

    _check_outputs(args)
    if args.cli and shutil.which(args.cli) is None:
        parser().error(f"--cli {args.cli}: no such executable")
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("labkit bench net", total=bn.steps(args.runs, args.warmup))
        rows, setup = bn.run(args.runs, args.warmup, cli=args.cli and shutil.which(args.cli),
                             progress=lambda what: bar.update(task, advance=1,
                                                              description=what))
    goals = bn.targets(rows)
    if args.json:
        print(bn.to_json(rows, goals, runs=args.runs, warmup=args.warmup, setup=setup))
    else:
        bn.print_table(rows, goals, args.runs, setup)
    if args.csv:
        Path(args.csv).write_text(bn.to_csv(rows, goals))
    if args.png:
        bn.write_png(rows, goals, Path(args.png))
    return 0


def _images(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress

    from labkit.measure import bench_images as bi

    _check_outputs(args)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("labkit bench images", total=bi.steps(args.runs, args.warmup,
                                                                  args.only))
        rows = bi.run(args.runs, args.warmup, only=args.only,
                      progress=lambda what: bar.update(task, advance=1, description=what))
    goals = bi.targets(rows)
    if args.json:
        print(bi.to_json(rows, goals, runs=args.runs, warmup=args.warmup))
    else:
        bi.print_table(rows, goals, args.runs)
    if args.csv:
        Path(args.csv).write_text(bi.to_csv(rows, goals))
    if args.png:
        bi.write_png(rows, goals, Path(args.png))
    return 0


def peers(text: str) -> list[str]:
    """Split --peers: "runc, crun" -> ["runc", "crun"] (empty parts dropped)."""
    return [p.strip() for p in text.split(",") if p.strip()]


def _swarm_parser(sub: Any) -> None:
    sw = sub.add_parser(
        "swarm", help="leader failover and node join on a local swarm (3 managers)",
        description="Form a local swarm (labkit swarm lab), kill the leader N times "
                    "(kill -> a new leader; kill -> the first acknowledged write through a "
                    "surviving manager) and time N joins of a worker; medians against the "
                    "targets (failover < 2 s, join < 1 s).",
        epilog="example: labkit bench swarm --trials 5 --joins 5")
    sw.add_argument("--trials", type=_count(1), default=5, help="leader kills (default 5)")
    sw.add_argument("--joins", type=_count(1), default=5, help="worker joins (default 5)")
    sw.add_argument("--managers", type=_count(3), default=3, help="managers (default 3)")
    sw.add_argument("--json", action="store_true", help="print the result as JSON")


def _swarm(args: argparse.Namespace) -> int:
    import json
    import statistics

    from rich.console import Console
    from rich.table import Table

    from labkit.measure import bench_swarm
    from labkit.measure.swarmlab import SwarmLab

    con = Console(stderr=True)
    lab = SwarmLab(args.managers, 1, name="bench", subnet="10.218.0.0/24")
    try:
        with con.status("forming the swarm") as status:
            def say(msg: str) -> None:
                status.update(msg)
                con.print(f"[dim]{msg}")

            lab.up(progress=say)
            trials = bench_swarm.failover_trials(lab, args.trials, progress=say)
            joins = bench_swarm.join_times(lab, args.joins, progress=say)
    finally:
        lab.down()
    res = bench_swarm.summary(trials, joins)
    if args.json:
        print(json.dumps({**res, "failover": [t.__dict__ for t in trials], "joins_s": joins,
                          "formation_joins": lab.formation_joins}, indent=2))
        return 0
    t = Table("measure", "median", "min", "max", "target", "met", title=(
        f"swarm: {args.managers} managers, {len(trials)} leader kills, {len(joins)} joins"))
    mjoins = [s for role, s in lab.formation_joins if role == "manager"]
    for name, xs, target in (
            ("kill -> new leader", [x.to_leader_s for x in trials], None),
            ("kill -> first acknowledged write", [x.to_write_s for x in trials], 2.0),
            ("worker join", joins, 1.0),
            ("manager join (while forming)", mjoins, 1.0)):
        med = statistics.median(xs)
        t.add_row(name, f"{med:.2f} s", f"{min(xs):.2f} s", f"{max(xs):.2f} s",
                  f"< {target:g} s" if target else "", "" if target is None
                  else ("yes" if med < target else "NOT met"))
    Console().print(t)
    return 0


SERVICE_PARTS = ("reschedule", "mesh", "throughput")


def _services_parser(sub: Any) -> None:
    sv = sub.add_parser(
        "services", help="swarm services: reschedule after a worker dies, routing mesh "
                         "spread, plain vs encrypted overlay throughput",
        description="Form a local swarm (1 manager + 2 workers, a registry on the underlay), "
                    "then: kill a worker N times and time node down -> every replica running "
                    "again (target < 5 s); send R requests to one node's published port and "
                    "count the answers per task (target: within 10 % of even); run iperf3 "
                    "between tasks on two nodes over a plain and an encrypted overlay "
                    "(Gbit/s medians and the ratio).",
        epilog="example: labkit bench services --trials 3 --requests 1000 --runs 3")
    sv.add_argument("--trials", type=_count(1), default=3, help="worker kills (default 3)")
    sv.add_argument("--replicas", type=_count(1), default=6,
                    help="replicas of the rescheduled service (default 6)")
    sv.add_argument("--requests", type=_count(3), default=1000,
                    help="requests through the routing mesh (default 1000)")
    sv.add_argument("--runs", type=_count(1), default=3,
                    help="iperf3 runs per overlay (default 3)")
    sv.add_argument("--seconds", type=_count(1), default=3,
                    help="seconds per iperf3 run (default 3)")
    sv.add_argument("--only", default=",".join(SERVICE_PARTS),
                    help="comma-separated parts to run (default all): "
                         + ", ".join(SERVICE_PARTS))
    sv.add_argument("--json", action="store_true", help="print the result as JSON")


def _services(args: argparse.Namespace) -> int:
    import json
    import statistics

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from labkit.measure import bench_services as bsv
    from labkit.measure.swarmlab import SwarmLab

    parts = peers(args.only)
    bad = [x for x in parts if x not in SERVICE_PARTS]
    if bad or not parts:
        parser().error(f"--only {args.only}: choose from {', '.join(SERVICE_PARTS)}")
    total = 1 + (args.trials if "reschedule" in parts else 0) + \
        (args.requests // 100 if "mesh" in parts else 0) + \
        (1 + 2 * args.runs if "throughput" in parts else 0)
    lab = SwarmLab(1, 2, name="bsvc", subnet="10.220.0.0/24", registry=True, heartbeat=0.5)
    trials: list[Any] = []
    mesh = tput = None
    try:
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("labkit bench services: forming the swarm", total=total)

            def say(msg: str) -> None:
                bar.update(task, advance=1, description=msg)

            lab.up(progress=lambda m: bar.update(task, description=m))
            say("swarm formed")
            if "reschedule" in parts:
                trials = bsv.reschedule_trials(lab, args.trials, args.replicas, progress=say)
            if "mesh" in parts:
                mesh = bsv.mesh_spread(lab, args.requests, progress=say)
            if "throughput" in parts:
                tput = bsv.overlay_throughput(lab, args.runs, args.seconds, progress=say)
    finally:
        lab.down()
    res = bsv.summary(trials, mesh, tput)
    if args.json:
        print(json.dumps({**res, "reschedule": [t.__dict__ for t in trials],
                          "throughput": tput.__dict__ if tput else None}, indent=2))
        return 0
    t = Table("measure", "median", "min", "max", "target", "met",
              title="services: 1 manager + 2 workers")
    if trials:
        for label, xs, target in (
                ("kill -> node down", [x.to_down_s for x in trials], None),
                ("node down -> all replicas running", [x.to_running_s for x in trials],
                 bsv.RESCHEDULE_TARGET_S)):
            med = statistics.median(xs)
            t.add_row(label, f"{med:.2f} s", f"{min(xs):.2f} s", f"{max(xs):.2f} s",
                      f"< {target:g} s" if target else "",
                      "" if target is None else ("yes" if med < target else "NOT met"))
    if mesh is not None:
        counts = " / ".join(str(c) for c in sorted(mesh.counts.values()))
        t.add_row(f"mesh: {mesh.requests} requests to {mesh.node} (per task)", counts,
                  "", f"failed {mesh.failed}", f"<= {bsv.MESH_TARGET:.0%} off even",
                  f"{'yes' if res['mesh_met'] else 'NOT met'} "
                  f"({mesh.max_deviation:.1%})")
    if tput is not None:
        for label, xs in (("overlay iperf3, plain", tput.plain_gbps),
                          ("overlay iperf3, encrypted", tput.encrypted_gbps)):
            if not xs:
                t.add_row(label, "not measured: no ESP with AES-GCM in this kernel", "",
                          "", "reported", "")
                continue
            t.add_row(label, f"{statistics.median(xs):.2f} Gbit/s", f"{min(xs):.2f}",
                      f"{max(xs):.2f}", "reported", "")
        if "encrypted_ratio" in res:
            t.add_row("encrypted / plain", f"{res['encrypted_ratio']:.2f}", "", "",
                      "reported", "")
    Console().print(t)
    return 0


def run(argv: list[str], prog: str = "labkit bench") -> int:
    args = parser(prog).parse_args(argv)
    if args.bench == "services":
        return _services(args)
    if args.bench == "swarm":
        return _swarm(args)
    if args.bench == "images":
        return _images(args)
    if args.bench == "net":
        return _net(args)
    if args.bench == "startup":
        return _startup(args)
    if args.bench == "engine":
        from labkit.measure import bench_engine

        erows, goals = bench_engine.run(args.runs, args.warmup,
                                        with_dockerd=args.with_dockerd,
                                        podman=not args.no_podman)
        if args.json:
            print(bench_engine.to_json(erows, goals))
        else:
            bench_engine.print_table(erows, goals)
        if args.breakdown:
            from labkit import errors

            try:
                summary = bench_engine.breakdown(args.breakdown)
            except errors.UnsupportedError as err:
                print(f"breakdown skipped: {err}" + (f" ({err.hint})" if err.hint else ""))
                return 0
            if args.json:
                import json

                print(json.dumps({"breakdown": summary, "runs": args.breakdown}, indent=2))
            else:
                bench_engine.print_breakdown(summary, args.breakdown)
        return 0
    from labkit.measure import bench_runtime

    rows = bench_runtime.run(runs=args.runs, warmup=args.warmup, peers=peers(args.peers),
                             progress=not args.json, bundles=tuple(peers(args.bundles)),
                             hosts=tuple(peers(args.hosts)), floor=not args.no_floor)
    if args.json:
        import json

        print(json.dumps([bench_runtime.row_dict(r) for r in rows], indent=2))
    else:
        bench_runtime.print_table(rows)
    return 0
