"""`labkit node VERB`: ls, inspect, promote, demote, update, rm (run against a manager).

Docker's verbs, flags and output (docker/cli cli/command/node): `ls` is a rich table with
Docker's columns and a ``*`` on this node; `inspect --pretty` follows Docker's template;
promote, demote and update read the node, change its Spec and send it back with the
Version.Index they read (a concurrent change is refused, "update out of sequence").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from labkit import errors
from labkit.cli._fmt import natural_key
from labkit.cli.image import _filters
from labkit.cli.swarm import connect
from labkit.engine.client import Client

__all__ = ["add_arguments", "pretty", "run_command"]

out = Console(highlight=False, soft_wrap=True)


def _cap(text: str) -> str:
    """docker/cli formatter.PrettyPrint: the first letter upper-cased."""
    return text[:1].upper() + text[1:]


def _self_id(c: Client) -> str:
    return str((c.system.info().get("Swarm") or {}).get("NodeID") or "")


def _ref(c: Client, ref: str) -> str:
    """"self" is this node (docker/cli resolves it through GET /info, as here)."""
    return (_self_id(c) or ref) if ref == "self" else ref


def _manager_status(node: dict[str, Any]) -> str:
    ms = node.get("ManagerStatus")
    if not ms:
        return ""
    return "Leader" if ms.get("Leader") else _cap(str(ms.get("Reachability") or ""))


def _ls(c: Client, args: argparse.Namespace) -> int:
    nodes = sorted(c.nodes.list(_filters(args.filter)),
                   key=lambda n: natural_key((n.get("Description") or {}).get("Hostname", "")))
    if args.quiet:
        sys.stdout.write("".join(f"{n['ID']}\n" for n in nodes))
        return 0
    me = _self_id(c) if nodes else ""
    tab = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"):
        tab.add_column(col, no_wrap=True)
    for n in nodes:
        desc = n.get("Description") or {}
        tab.add_row(f"{n['ID']} {'*' if n['ID'] == me else ' '}", desc.get("Hostname", ""),
                    _cap((n.get("Status") or {}).get("State", "")),
                    _cap((n.get("Spec") or {}).get("Availability", "")), _manager_status(n),
                    (desc.get("Engine") or {}).get("EngineVersion", ""))
    # never cut a 25-character node id: as wide as the table needs, however narrow the tty
    need = Measurement.get(out, out.options.update(width=10**4), tab).maximum
    Console(highlight=False, soft_wrap=True, width=max(out.width, need)).print(tab)
    return 0


def _bytes(n: float) -> str:
    """go-units BytesSize (binary units, 4 significant digits): 1.5GiB."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024.0
        i += 1
    return f"{n:.4g}{units[i]}"


def pretty(node: dict[str, Any]) -> str:
    """`docker node inspect --pretty` (docker/cli node/formatter.go's template)."""
    spec, desc = node.get("Spec") or {}, node.get("Description") or {}
    status, ms = node.get("Status") or {}, node.get("ManagerStatus")
    rows: list[tuple[str, str]] = [("ID:", node.get("ID", ""))]
    if spec.get("Name"):
        rows.append(("Name:", spec["Name"]))
    if spec.get("Labels"):
        rows += [("Labels:", "")] + [(f" - {k}" + (f"={v}" if v else ""), "")
                                     for k, v in sorted(spec["Labels"].items())]
    rows += [("Hostname:", desc.get("Hostname", "")), ("Joined at:", node.get("CreatedAt", "")),
             ("Status:", ""), (" State:", _cap(status.get("State", "")))]
    if status.get("Message"):
        rows.append((" Message:", _cap(status["Message"])))
    rows.append((" Availability:", _cap(spec.get("Availability", ""))))
    if status.get("Addr"):
        rows.append((" Address:", status["Addr"]))
    if ms:
        rows += [("Manager Status:", ""), (" Address:", ms.get("Addr", "")),
                 (" Raft Status:", _cap(ms.get("Reachability", ""))),
                 (" Leader:", "Yes" if ms.get("Leader") else "No")]
    res, plat = desc.get("Resources") or {}, desc.get("Platform") or {}
    eng = desc.get("Engine") or {}
    rows += [("Platform:", ""), (" Operating System:", plat.get("OS", "")),
             (" Architecture:", plat.get("Architecture", "")), ("Resources:", ""),
             (" CPUs:", str(int(res.get("NanoCPUs") or 0) // 10**9)),
             (" Memory:", _bytes(res["MemoryBytes"]) if res.get("MemoryBytes") else "")]
    plugins: dict[str, list[str]] = {}
    for p in eng.get("Plugins") or []:
        plugins.setdefault(p.get("Type", ""), []).append(p.get("Name", ""))
    if plugins:
        rows += [("Plugins:", "")] + [(f" {t}:", ", ".join(v)) for t, v in sorted(
            plugins.items())]
    rows.append(("Engine Version:", eng.get("EngineVersion", "")))
    if eng.get("Labels"):
        rows += [("Engine Labels:", "")] + [(f" - {k}" + (f"={v}" if v else ""), "")
                                            for k, v in sorted(eng["Labels"].items())]
    tls = desc.get("TLSInfo") or {}
    if any(tls.values()):
        rows += [("TLS Info:", ""), (" TrustRoot:", ""), (str(tls.get("TrustRoot", "")).rstrip(
            "\n"), ""), (" Issuer Subject:", tls.get("CertIssuerSubject", "")),
            (" Issuer Public Key:", tls.get("CertIssuerPublicKey", ""))]
    width = max(len(k) for k, v in rows if v) + 3
    return "".join((f"{k:<{width}}{v}" if v else k) + "\n" for k, v in rows)


def _inspect(c: Client, args: argparse.Namespace) -> int:
    found, rc = [], 0
    for ref in args.nodes:
        try:
            found.append(c.nodes.get(_ref(c, ref)))
        except errors.NotFoundError:
            print(f"Error: No such node: {ref}", file=sys.stderr)
            rc = 1
    if args.pretty:
        sys.stdout.write("\n".join(pretty(n) for n in found))
    else:
        print(json.dumps(found, indent=4))
    return rc


# Changes a node's Spec (given the node object and the Spec to change); False: nothing to send.
Merge = Callable[[dict[str, Any], dict[str, Any]], bool]


def _update_nodes(c: Client, refs: list[str], merge: Merge, done: Callable[[str], None]) -> int:
    """docker/cli updateNodes: GET, change the Spec, POST it with the version read."""
    for ref in refs:
        node = c.nodes.get(_ref(c, ref))
        spec = dict(node.get("Spec") or {})
        if merge(node, spec):
            c.nodes.update(node["ID"], node["Version"]["Index"], spec)
            done(ref)
    return 0


def _role(role: str, c: Client, refs: list[str]) -> int:
    def merge(node: dict[str, Any], spec: dict[str, Any]) -> bool:
        if spec.get("Role") == role:
            print(f"Node {node['ID']} is already a {role}.")
            return False
        spec["Role"] = role
        return True

    def done(ref: str) -> None:
        print(f"Node {ref} promoted to a manager in the swarm." if role == "manager"
              else f"Manager {ref} demoted in the swarm.")

    return _update_nodes(c, refs, merge, done)


def _update(c: Client, args: argparse.Namespace) -> int:
    if args.role is None and args.availability is None and not args.label_add \
            and not args.label_rm:
        raise errors.InvalidArgumentError("node update", "nothing to update: give --role, "
                                          "--availability, --label-add or --label-rm")

    def merge(node: dict[str, Any], spec: dict[str, Any]) -> bool:
        if args.role is not None:
            spec["Role"] = args.role
        if args.availability is not None:
            spec["Availability"] = args.availability
        labels = dict(spec.get("Labels") or {})
        for item in args.label_add:
            k, _, v = item.partition("=")
            labels[k] = v
        for k in args.label_rm:
            if k not in labels:  # docker/cli: fail explicitly
                raise errors.InvalidArgumentError("--label-rm", f"key {k} doesn't exist in "
                                                  "node's labels")
            del labels[k]
        spec["Labels"] = labels
        return True

    return _update_nodes(c, [args.node], merge, print)


def _rm(c: Client, args: argparse.Namespace) -> int:
    rc = 0
    for ref in args.nodes:
        try:
            c.nodes.remove(ref, force=args.force)
            print(ref)
        except errors.LabkitError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            rc = 1
    return rc


def _choice(allowed: tuple[str, ...], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in allowed:
            raise argparse.ArgumentTypeError(f'invalid {what} "{text}": {", ".join(allowed)}')
        return text.lower()
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = sub.add_parser("ls", aliases=["list"], help="list the swarm's nodes")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("-f", "--filter", action="append", default=[],
                   help="id=, name=, label=, node.label=, role=, membership=")
    s = sub.add_parser("inspect", help="nodes as JSON (or --pretty)")
    s.add_argument("--pretty", action="store_true", help="human-readable")
    s.add_argument("nodes", nargs="+", metavar="NODE", help="id, prefix, hostname or self")
    for verb, what in (("promote", "to manager"), ("demote", "to worker")):
        s = sub.add_parser(verb, help=f"change nodes' role {what}")
        s.add_argument("nodes", nargs="+", metavar="NODE")
    s = sub.add_parser("update", help="change a node's role, availability or labels")
    s.add_argument("--role", type=_choice(("worker", "manager"), "role"))
    s.add_argument("--availability", type=_choice(("active", "pause", "drain"),
                                                  "availability"))
    s.add_argument("--label-add", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--label-rm", action="append", default=[], metavar="KEY")
    s.add_argument("node", metavar="NODE")
    s = sub.add_parser("rm", aliases=["remove"], help="remove nodes from the swarm")
    s.add_argument("-f", "--force", action="store_true", help="even a node that is up")
    s.add_argument("nodes", nargs="+", metavar="NODE")


def run_command(args: argparse.Namespace) -> int:
    c = connect()
    verb = {"list": "ls", "remove": "rm"}.get(args.verb, args.verb)
    if verb in ("promote", "demote"):
        return _role("manager" if verb == "promote" else "worker", c, args.nodes)
    return {"ls": _ls, "inspect": _inspect, "update": _update, "rm": _rm}[verb](c, args)
