"""`labkit stack VERB`: deploy, ls, services, ps, rm (Docker's verbs; run on a manager).

``deploy -c FILE NAME`` reads the compose file (labkit.engine.swarm.stack.compose: every
problem named with its line), checks everything it needs before creating anything, then
creates or updates the stack's networks, secrets, configs and services
(labkit.engine.swarm.stack.deploy).  Several ``-c`` files are not merged: one file per stack.
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli.service import converge, ls_rows, print_table, ps_rows
from labkit.engine.swarm.stack import deploy as dep

__all__ = ["add_arguments", "run_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = sub.add_parser("deploy", aliases=["up"], help="deploy a new stack or update one")
    s.add_argument("-c", "--compose-file", required=True, metavar="FILE",
                   help="path to a compose file, or - for stdin")
    s.add_argument("--prune", action="store_true", help="remove services no longer in the file")
    s.add_argument("--resolve-image", choices=("always", "changed", "never"),
                   default="always", help="pin images to their digest (default always)")
    s.add_argument("-d", "--detach", action="store_true", default=True,
                   help="exit at once (the default, as Docker's)")
    s.add_argument("--wait", dest="detach", action="store_false",
                   help="wait until every service converged")
    s.add_argument("name", metavar="STACK")
    s = sub.add_parser("ls", aliases=["list"], help="list stacks")
    s = sub.add_parser("services", help="list the services in a stack")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("name", metavar="STACK")
    s = sub.add_parser("ps", help="list the tasks in a stack")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    s.add_argument("name", metavar="STACK")
    s = sub.add_parser("rm", aliases=["remove", "down"], help="remove stacks")
    s.add_argument("names", nargs="+", metavar="STACK")


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def run_command(args: argparse.Namespace) -> int:
    from labkit.cli.swarm import connect
    from labkit.engine.swarm.stack.compose import load

    c = connect()
    verb = {"list": "ls", "remove": "rm", "down": "rm", "up": "deploy"}.get(args.verb,
                                                                            args.verb)
    if verb == "deploy":
        compose = load(args.compose_file)   # every compose problem first, before any request
        ids = dep.deploy(c, compose, args.name, say=print, warn=_err,
                         resolve_image=args.resolve_image != "never", prune=args.prune)
        if not args.detach:
            rc = 0
            for sid in ids:
                rc = converge(c, sid) or rc
            return rc
        return 0
    if verb == "ls":
        print_table(("NAME", "SERVICES"), [[n, str(k)] for n, k in dep.list_stacks(c)])
        return 0
    if verb == "services":
        services = dep.stack_services(c, args.name)
        if not services and not args.quiet:
            _err(f"Nothing found in stack: {args.name}")
            return 0
        if args.quiet:
            sys.stdout.write("".join(f"{s['ID']}\n" for s in services))
            return 0
        print_table(("ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"), ls_rows(services))
        return 0
    if verb == "ps":
        tasks = dep.stack_tasks(c, args.name)
        if not tasks and not args.quiet:
            _err(f"Nothing found in stack: {args.name}")
            return 0
        if args.quiet:
            sys.stdout.write("".join(f"{t['ID']}\n" for t in tasks))
            return 0
        print_table(("ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR",
                     "PORTS"), ps_rows(c, tasks, trunc=not args.no_trunc))
        return 0
    ok = True
    for name in args.names:
        ok = dep.remove(c, name, say=print, warn=_err) and ok
    return 0 if ok else 1
