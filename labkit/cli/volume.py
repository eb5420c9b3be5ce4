"""`labkit volume VERB`: create, ls, inspect, rm, prune (the local driver, Docker's verbs).

One call through labkit.engine.client per verb; `ls` is a rich table.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from labkit import errors
from labkit.cli._fmt import human_size
from labkit.cli.image import _filters
from labkit.engine.client import Client

__all__ = ["add_arguments", "run_command"]

out = Console(highlight=False, soft_wrap=True)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    res = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not k or (not eq and what == "--opt"):
            raise errors.InvalidArgumentError(what, f"{item!r} is not key=value")
        res[k] = v
    return res


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = sub.add_parser("create", help="create a volume")
    s.add_argument("name", nargs="?", default=None, help="its name (default: a random ID)")
    s.add_argument("-d", "--driver", default=None, help="volume driver (local)")
    s.add_argument("-o", "--opt", action="append", default=[], help="driver option k=v")
    s.add_argument("--label", action="append", default=[], help="label k=v")
    s = sub.add_parser("ls", aliases=["list"], help="list volumes")
    s.add_argument("-q", "--quiet", action="store_true", help="only names")
    s.add_argument("-f", "--filter", action="append", default=[], help="key=value")
    s = sub.add_parser("inspect", help="a volume's JSON")
    s.add_argument("volumes", nargs="+", metavar="VOLUME")
    s = sub.add_parser("rm", aliases=["remove"], help="remove volumes")
    s.add_argument("-f", "--force", action="store_true", help="no error if it is missing")
    s.add_argument("volumes", nargs="+", metavar="VOLUME")
    s = sub.add_parser("prune", help="remove every volume no container uses (API 1.41: named ones too)")
    s.add_argument("-f", "--force", action="store_true", help="do not ask (labkit never asks)")
    s.add_argument("--filter", action="append", default=[], help="label=...")


def _ls(c: Client, args: argparse.Namespace) -> int:
    vols = c.volumes.list(_filters(args.filter))
    if args.quiet:
        sys.stdout.write("".join(f"{v['Name']}\n" for v in vols))
        return 0
    tab = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("DRIVER", "VOLUME NAME", "MOUNTPOINT"):
        tab.add_column(col, no_wrap=True)
    for v in vols:
        tab.add_row(v.get("Driver", "local"), v["Name"], v.get("Mountpoint", ""))
    out.print(tab)
    return 0


def _inspect(c: Client, args: argparse.Namespace) -> int:
    found, rc = [], 0
    for name in args.volumes:
        try:
            found.append(c.volumes.inspect(name))
        except errors.NotFoundError:
            print(f"Error: No such volume: {name}", file=sys.stderr)
            rc = 1
    print(json.dumps(found, indent=4))
    return rc


def _rm(c: Client, args: argparse.Namespace) -> int:
    rc = 0
    for name in args.volumes:
        try:
            c.volumes.remove(name, force=args.force)
            print(name)
        except errors.LabkitError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            rc = 1
    return rc


def _prune(c: Client, args: argparse.Namespace) -> int:
    flt = _filters(args.filter)
    res = c.volumes.prune(flt)
    names = res.get("VolumesDeleted") or []
    if names:
        print("Deleted Volumes:\n" + "".join(f"{n}\n" for n in names))
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed') or 0)}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from labkit.cli.container import connect

    c = connect()
    verb = {"list": "ls", "remove": "rm"}.get(args.verb, args.verb)
    if verb == "create":
        vol = c.volumes.create(args.name, args.driver, _pairs(args.opt, "--opt"),
                               _pairs(args.label, "--label"))
        print(vol["Name"])
        return 0
    return {"ls": _ls, "inspect": _inspect, "rm": _rm, "prune": _prune}[verb](c, args)
