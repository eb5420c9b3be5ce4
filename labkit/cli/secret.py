"""`labkit secret VERB`: create, ls, inspect, rm (Docker's verbs; run on a manager).

``create NAME FILE`` or ``create NAME -`` (stdin).  At most 500 KiB is read, so a larger
input is refused by the daemon with Docker's message rather than held in memory whole; the
data is never printed back (the API does not return it).  `labkit config` shares this code
(configs differ only in that `inspect --pretty` shows their data).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from labkit import errors
from labkit.cli.image import _filters
from labkit.cli.service import _ago, print_table
from labkit.engine.client import Client
from labkit.engine.client.secrets import Secrets

__all__ = ["MAX_READ", "add_arguments", "make_parser", "read_data", "run_command", "run_for"]

MAX_READ = 500 * 1024 + 1   # one byte past the limit: enough for the daemon to refuse


def read_data(source: str, kind: str) -> bytes:
    """The object's data from a file or stdin ("-"), at most MAX_READ bytes."""
    if source == "-":
        return sys.stdin.buffer.read(MAX_READ)
    try:
        with open(source, "rb") as f:
            return f.read(MAX_READ)
    except FileNotFoundError:
        raise errors.NotFoundError(f"{kind} file", source) from None
    except (IsADirectoryError, PermissionError) as e:
        raise errors.InvalidArgumentError(kind, f"cannot read {source}: {e.strerror}") from None


def make_parser(p: argparse.ArgumentParser, kind: str) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = sub.add_parser("create", help=f"create a {kind} from a file or STDIN")
    s.add_argument("-l", "--label", action="append", default=[], help=f"{kind} labels")
    if kind == "config":
        s.add_argument("--template-driver", help=argparse.SUPPRESS)
    s.add_argument("name", metavar=kind.upper())
    s.add_argument("file", metavar="FILE|-")
    s = sub.add_parser("ls", aliases=["list"], help=f"list {kind}s")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("-f", "--filter", action="append", default=[],
                   help="id=, name=, label=")
    s = sub.add_parser("inspect", help=f"{kind}s as JSON (or --pretty)")
    s.add_argument("--pretty", action="store_true", help="human-readable")
    s.add_argument("names", nargs="+", metavar=kind.upper())
    s = sub.add_parser("rm", aliases=["remove"], help=f"remove {kind}s")
    s.add_argument("names", nargs="+", metavar=kind.upper())


def add_arguments(p: argparse.ArgumentParser) -> None:
    make_parser(p, "secret")


def _pretty(obj: dict[str, Any], kind: str) -> str:
    spec = obj.get("Spec") or {}
    lines = [f"ID:              {obj.get('ID', '')}", f"Name:              {spec.get('Name', '')}"]
    if spec.get("Labels"):
        lines.append("Labels:")
        lines += [f" - {k}={v}" for k, v in sorted(spec["Labels"].items())]
    lines += [f"Created at:        {obj.get('CreatedAt', '')}",
              f"Updated at:        {obj.get('UpdatedAt', '')}"]
    if kind == "config":
        data = base64.b64decode(spec.get("Data") or "").decode("utf-8", "replace")
        lines += ["Data:", data.rstrip("\n")]
    return "\n".join(lines) + "\n"


def run_for(args: argparse.Namespace, kind: str) -> int:
    from labkit.cli.swarm import connect

    c: Client = connect()
    api: Secrets = c.secrets if kind == "secret" else c.configs
    verb = {"list": "ls", "remove": "rm"}.get(args.verb, args.verb)
    if verb == "create":
        labels = {}
        for item in args.label:
            k, _, v = item.partition("=")
            if not k:
                raise errors.InvalidArgumentError("--label", f"{item!r} is not key=value")
            labels[k] = v
        print(api.create(args.name, read_data(args.file, kind), labels))
        return 0
    if verb == "ls":
        objs = sorted(api.list(_filters(args.filter)), key=lambda o: o["Spec"]["Name"])
        if args.quiet:
            sys.stdout.write("".join(f"{o['ID']}\n" for o in objs))
            return 0
        cols = ["ID", "NAME"] + (["DRIVER"] if kind == "secret" else []) + ["CREATED",
                                                                              "UPDATED"]
        print_table(cols, [[o["ID"], o["Spec"]["Name"]] +
                           ([((o["Spec"].get("Driver") or {}).get("Name", ""))]
                            if kind == "secret" else []) +
                           [_ago(str(o.get("CreatedAt", ""))), _ago(str(o.get("UpdatedAt",
                                                                              "")))]
                           for o in objs])
        return 0
    rc = 0
    if verb == "inspect":
        found = []
        for name in args.names:
            try:
                found.append(api.inspect(name))
            except errors.NotFoundError:
                print(f"Error: no such {kind}: {name}", file=sys.stderr)
                rc = 1
        if args.pretty:
            sys.stdout.write("\n".join(_pretty(o, kind) for o in found))
        else:
            print(json.dumps(found, indent=4))
        return rc
    for name in args.names:
        try:
            api.remove(name)
            print(name)
        except errors.LabkitError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            rc = 1
    return rc


def run_command(args: argparse.Namespace) -> int:
    return run_for(args, "secret")
