"""`labkit network VERB`: create, ls, inspect, rm, prune, connect, disconnect (Docker's verbs).

One call through labkit.engine.client per verb.  `create` turns --subnet/--ip-range/
--gateway/--aux-address into IPAM pools as the Docker CLI does (consolidateIpam in
cli/command/network/create.go): each range, gateway and aux address joins the --subnet that
contains it; `ls` is a table like `docker network ls` (NETWORK ID, NAME, DRIVER, SCOPE).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from labkit import errors
from labkit.cli import _fmt
from labkit.cli.image import _filters
from labkit.engine.client import Client

__all__ = ["add_arguments", "ipam_pools", "ls_row", "run_command"]

out = Console(highlight=False, soft_wrap=True)
LS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
              "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
              "CreatedAt": "CREATED AT"}


def _pairs(items: list[str], what: str) -> dict[str, str]:
    """k=v options and labels; a bare key has the value "" (`-o encrypted`, as the CLI)."""
    res = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise errors.InvalidArgumentError(what, f"{item!r} is not key=value")
        res[k] = v
    return res


def _contains(flag: str, subnet: str, item: str) -> bool:
    import ipaddress

    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise errors.InvalidArgumentError("--subnet", f"invalid subnet {subnet}") from None
    try:
        inner = ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise errors.InvalidArgumentError(flag, f"invalid {flag[2:]} {item}") from None
    return inner.version == net.version and inner.subnet_of(net)  # type: ignore[arg-type]


def ipam_pools(subnets: list[str], ranges: list[str], gateways: list[str],
               aux: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """--subnet/--ip-range/--gateway/--aux-address -> IPAM.Config, docker/cli's rules."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise errors.InvalidArgumentError(
            "--subnet", "every ip-range or gateway must have a corresponding subnet")
    pools: dict[str, dict[str, Any]] = {}
    for s in subnets:
        _contains("--subnet", s, s)  # a bad CIDR is refused here, not left to the daemon
        for other in pools:
            if _contains("--subnet", other, s) or _contains("--subnet", s, other):
                raise errors.InvalidArgumentError(
                    "--subnet", "multiple overlapping subnet configuration is not allowed")
        pools[s] = {"Subnet": s}
    for flag, key, values in (("--ip-range", "IPRange", ranges),
                              ("--gateway", "Gateway", gateways)):
        for value in values:
            homes = [s for s in subnets if _contains(flag, s, value)]
            if not homes:
                raise errors.InvalidArgumentError(flag, f"no matching subnet for "
                                                        f"{flag[2:].replace('-', ' ')} {value}")
            for s in homes:
                if key in pools[s]:
                    raise errors.InvalidArgumentError(
                        flag, f"cannot configure multiple {flag[2:]}s ({value}, "
                              f"{pools[s][key]}) on the same subnet ({s})")
                pools[s][key] = value
    for name, addr in (aux or {}).items():
        if "/" in addr:
            raise errors.InvalidArgumentError("--aux-address", f"{addr} is not an address")
        homes = [s for s in subnets if _contains("--aux-address", s, addr)]
        if not homes:
            raise errors.InvalidArgumentError("--aux-address",
                                              f"no matching subnet for aux-address {addr}")
        for s in homes:
            pools[s].setdefault("AuxiliaryAddresses", {})[name] = addr
    return list(pools.values())


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = sub.add_parser("create", help="create a network")
    s.add_argument("name", metavar="NETWORK")
    s.add_argument("-d", "--driver", default="bridge", help="driver (default bridge)")
    s.add_argument("--subnet", action="append", default=[], help="subnet in CIDR format")
    s.add_argument("--ip-range", action="append", default=[],
                   help="allocate container addresses from a sub-range (CIDR)")
    s.add_argument("--gateway", action="append", default=[],
                   help="IPv4 or IPv6 gateway for a subnet")
    s.add_argument("--aux-address", action="append", default=[],
                   help="auxiliary addresses the IPAM must not hand out (name=ip)")
    s.add_argument("--ipv6", action="store_true", help="enable IPv6 networking")
    s.add_argument("--internal", action="store_true", help="restrict external access")
    s.add_argument("--attachable", action="store_true", help="enable manual attachment")
    s.add_argument("-o", "--opt", action="append", default=[], help="driver option k=v")
    s.add_argument("--label", action="append", default=[], help="label k=v")
    s = sub.add_parser("ls", aliases=["list"], help="list networks")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("-f", "--filter", action="append", default=[],
                   help="driver=, id=, label=, name=, scope=, type=custom|builtin, dangling=")
    s.add_argument("--no-trunc", action="store_true", help="full network IDs")
    s.add_argument("--format", help="json, table or a Go template ({{.Name}}...)")
    s = sub.add_parser("inspect", help="networks' JSON")
    s.add_argument("-f", "--format", help="a Go template per network ({{.Id}}...)")
    s.add_argument("networks", nargs="+", metavar="NETWORK")
    s = sub.add_parser("rm", aliases=["remove"], help="remove networks")
    s.add_argument("networks", nargs="+", metavar="NETWORK")
    s = sub.add_parser("prune", help="remove every custom network no container uses")
    s.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    s.add_argument("--filter", action="append", default=[], help="until=..., label=...")
    s = sub.add_parser("connect", help="connect a container to a network")
    s.add_argument("network", metavar="NETWORK")
    s.add_argument("container", metavar="CONTAINER")
    s.add_argument("--ip", help="IPv4 address on the network")
    s.add_argument("--ip6", help="IPv6 address on the network")
    s.add_argument("--alias", action="append", default=[], help="network-scoped alias")
    s = sub.add_parser("disconnect", help="disconnect a container from a network")
    s.add_argument("network", metavar="NETWORK")
    s.add_argument("container", metavar="CONTAINER")
    s.add_argument("-f", "--force", action="store_true", help="force the disconnection")


def _created_at(created: str) -> str:
    """RFC 3339 "2024-01-02T03:04:05.12Z" -> Go's time.String, as `network ls` shows it."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d(?:\.\d+)?)Z", created)
    return f"{m.group(1)} {m.group(2)} +0000 UTC" if m else created


def ls_row(n: dict[str, Any], trunc: bool = True) -> dict[str, str]:
    """One `docker network ls` row (the fields --format sees), every value a string."""
    nid = str(n.get("Id", ""))
    labels = n.get("Labels") or {}
    return {"CreatedAt": _created_at(str(n.get("Created", ""))),
            "Driver": str(n.get("Driver", "")), "ID": nid[:12] if trunc else nid,
            "IPv6": "true" if n.get("EnableIPv6") else "false",
            "Internal": "true" if n.get("Internal") else "false",
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "Name": str(n.get("Name", "")), "Scope": str(n.get("Scope", ""))}


def _ls(c: Client, args: argparse.Namespace) -> int:
    nets = sorted(c.networks.list(_filters(args.filter)),
                  key=lambda n: _fmt.natural_key(n["Name"]))
    rows = [ls_row(n, trunc=not args.no_trunc) for n in nets]
    if args.quiet:
        sys.stdout.write("".join(f"{r['ID']}\n" for r in rows))
        return 0
    fmt = args.format
    if fmt == "json":
        sys.stdout.write("".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n"
                                 for r in rows))
        return 0
    if fmt and fmt.strip() != "table":
        sys.stdout.write(_fmt.render_rows(fmt, rows, LS_HEADERS))
        return 0
    tab = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NETWORK ID", "NAME", "DRIVER", "SCOPE"):
        tab.add_column(col, no_wrap=True)
    for r in rows:
        tab.add_row(r["ID"], r["Name"], r["Driver"], r["Scope"])
    out.print(tab)
    return 0


def _inspect(c: Client, args: argparse.Namespace) -> int:
    found, rc = [], 0
    for ref in args.networks:
        try:
            found.append(c.networks.inspect(ref))
        except errors.NotFoundError:
            print(f"Error: No such network: {ref}", file=sys.stderr)
            rc = 1
    if args.format:
        sys.stdout.write("".join(_fmt.render(args.format, n) + "\n" for n in found))
    else:
        print(json.dumps(found, indent=4))
    return rc


def _rm(c: Client, args: argparse.Namespace) -> int:
    rc = 0
    for ref in args.networks:
        try:
            c.networks.remove(ref)
            print(ref)
        except errors.LabkitError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            rc = 1
    return rc


def _prune(c: Client, args: argparse.Namespace) -> int:
    flt = _filters(args.filter)
    if not args.force:
        sys.stdout.write("WARNING! This will remove all custom networks not used by at least "
                         "one container.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    names = c.networks.prune(flt).get("NetworksDeleted") or []
    if names:
        print("Deleted Networks:\n" + "".join(f"{n}\n" for n in names), end="")
    return 0


def _create(c: Client, args: argparse.Namespace) -> int:
    pools = ipam_pools(args.subnet, args.ip_range, args.gateway,
                       _pairs(args.aux_address, "--aux-address"))
    res = c.networks.create(args.name, args.driver, _pairs(args.opt, "--opt"), pools,
                            internal=args.internal, ipv6=args.ipv6,
                            labels=_pairs(args.label, "--label"), attachable=args.attachable)
    if res.get("Warning"):
        print(f"WARNING: {res['Warning']}", file=sys.stderr)
    print(res["Id"])
    return 0


def run_command(args: argparse.Namespace) -> int:
    from labkit.cli.container import connect

    c = connect()
    verb = {"list": "ls", "remove": "rm"}.get(args.verb, args.verb)
    if verb == "connect":
        c.networks.connect(args.network, args.container, ip=args.ip, ip6=args.ip6,
                           aliases=args.alias)
        return 0
    if verb == "disconnect":
        c.networks.disconnect(args.network, args.container, force=args.force)
        return 0
    return {"create": _create, "ls": _ls, "inspect": _inspect, "rm": _rm,
            "prune": _prune}[verb](c, args)
