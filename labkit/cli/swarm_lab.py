"""`labkit swarm lab up | down | exec | ls`: a local swarm of labkit nodes (measure.swarmlab).

    labkit swarm lab up --managers 3 --workers 2      # rich progress, then a node table
    labkit swarm lab exec m1 docker node ls           # DOCKER_HOST at node m1's daemon
    labkit swarm lab down                             # every process, netns, link and dir
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_lab"]


def add_lab(sub: Any) -> None:
    """Add the ``lab`` verb (with its own verbs) to ``labkit swarm``'s subparsers."""
    lab = sub.add_parser("lab", help="a local swarm: nodes in network namespaces of this host",
                         description="Build, use and remove a swarm of labkit nodes on this "
                                     "machine, each a daemon in its own network namespace.")
    verbs = lab.add_subparsers(dest="lab_verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="make the nodes and form the swarm")
    up.add_argument("--managers", type=int, default=3, help="manager nodes (default 3)")
    up.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    up.add_argument("--name", default="lab", help="the lab's name (default lab)")
    up.add_argument("--subnet", default="10.211.0.0/24",
                    help="underlay subnet, inside the lab's namespaces only")
    up.add_argument("--autolock", action="store_true", help="init with --autolock")
    up.add_argument("--heartbeat", type=float, default=1.0,
                    help="dispatcher heartbeat period in seconds (default 1)")
    up.set_defaults(run=_up)
    down = verbs.add_parser("down", help="remove everything the lab made")
    down.add_argument("--name", default="lab")
    down.set_defaults(run=_down)
    ex = verbs.add_parser("exec", help="run a command with DOCKER_HOST at node N's daemon")
    ex.add_argument("--name", default="lab")
    ex.add_argument("node", help="node name (m1, w2) or number (1 = first manager)")
    ex.add_argument("argv", nargs=argparse.REMAINDER, help="the command")
    ex.set_defaults(run=_exec)
    ls = verbs.add_parser("ls", help="the labs and their nodes")
    ls.set_defaults(run=_ls)


def _up(args: argparse.Namespace) -> int:
    from rich.console import Console

    from labkit.measure.swarmlab import SwarmLab

    con = Console(stderr=True)
    lab = SwarmLab(args.managers, args.workers, name=args.name, subnet=args.subnet,
                   autolock=args.autolock, heartbeat=args.heartbeat)
    with con.status("forming the swarm") as status:
        def say(msg: str) -> None:
            status.update(msg)
            con.print(f"[dim]{msg}")

        lab.up(progress=say)
    _table(lab)
    if lab.unlock_key:
        print(f"unlock key: {lab.unlock_key}")
    return 0


def _table(lab: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("NODE", "ROLE", "ADDRESS", "NETNS", "DOCKER_HOST", title=f"swarm lab {lab.name}")
    for n in lab.nodes:
        t.add_row(n.name, n.role, n.addr, n.netns, f"unix://{n.socket}")
    Console().print(t)


def _down(args: argparse.Namespace) -> int:
    from labkit.measure.swarmlab import SwarmLab

    SwarmLab.load(args.name).down()
    print(f"swarm lab {args.name}: removed")
    return 0


def _exec(args: argparse.Namespace) -> int:
    from labkit import errors
    from labkit.measure.swarmlab import SwarmLab

    argv = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise errors.InvalidArgumentError("command", "give the command to run, e.g. "
                                          "`labkit swarm lab exec m1 docker node ls`")
    try:
        return SwarmLab.load(args.name).exec(args.node, argv).returncode
    except FileNotFoundError as err:
        print(f"labkit swarm lab exec: {err}", file=sys.stderr)
        return 127


def _ls(args: argparse.Namespace) -> int:
    from labkit.measure.swarmlab import SwarmLab, labs

    names = labs()
    if not names:
        print("no swarm lab (labkit swarm lab up makes one)")
    for name in names:
        _table(SwarmLab.load(name))
    return 0
