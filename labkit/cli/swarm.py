"""`labkit swarm VERB`: init, join, join-token, leave, update, unlock, unlock-key, ca.

Docker's verbs, flags and output (docker/cli cli/command/swarm), one client call or a
GET-change-POST round trip per verb.  The printed join command names ``docker swarm join``
as Docker's does: the same line works with the Docker CLI pointed at a labkit node.

Other modules add verbs (the lead's ``swarm lab``) through ``add_subcommands``: each verb
is a subparser whose ``run`` default is the function to call with the parsed arguments.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.client import Client

__all__ = ["add_arguments", "add_subcommands", "connect", "print_join_command",
           "run_command"]

AVAILABILITIES = ("active", "pause", "drain")


def connect() -> Client:
    """The daemon's client; a swarm node is a daemon started on purpose, never on demand."""
    return Client(autostart=False)


def _duration(flag: str) -> Callable[[str], int]:
    """Go's time.ParseDuration for an argparse flag ("48h", "90m", "2h30m") -> ns."""
    def parse(text: str) -> int:
        from labkit.cli._create_opts import parse_duration

        try:
            return parse_duration(flag, text)
        except errors.InvalidArgumentError as err:  # argparse's own message otherwise hides it
            raise argparse.ArgumentTypeError(f"{err.problem} (e.g. 48h, 90m, 2h30m)") from None
    return parse


def _availability(text: str) -> str:
    if text.lower() not in AVAILABILITIES:
        raise argparse.ArgumentTypeError(f'invalid availability "{text}", only active, pause '
                                         "and drain are supported")
    return text.lower()


def _go_bool(text: str) -> bool:
    """strconv.ParseBool, as pflag reads --autolock=VALUE."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def parse_external_ca(spec: str) -> dict[str, Any]:
    """``protocol=cfssl,url=https://...[,cacert=FILE][,k=v]`` (docker/cli swarm/opts.go)."""
    fields = next(csv.reader(io.StringIO(spec)), [])
    ca: dict[str, Any] = {"Protocol": "", "URL": "", "Options": {}, "CACert": ""}
    for f in fields:
        key, eq, value = f.partition("=")
        if not eq:
            raise errors.InvalidArgumentError("--external-ca", f"invalid field '{f}' must be a "
                                              "key=value pair")
        if key == "protocol":
            if value.lower() != "cfssl":
                raise errors.InvalidArgumentError("--external-ca", "unrecognized external CA "
                                                  f"protocol {value}")
            ca["Protocol"] = "cfssl"
        elif key == "url":
            ca["URL"] = value
        elif key == "cacert":
            text = Path(value).read_text()
            if "-----BEGIN CERTIFICATE-----" not in text:
                raise errors.InvalidArgumentError("--external-ca", "CA cert for external CA "
                                                  "must be in PEM format")
            ca["CACert"] = text
        else:
            ca["Options"][key] = value
    for need, key in (("protocol", "Protocol"), ("url", "URL")):
        if not ca[key]:
            raise errors.InvalidArgumentError("--external-ca", f"the external-ca option needs "
                                              f"a {need}= parameter")
    if not ca["Options"]:
        del ca["Options"]
    return ca


def _spec_flags(p: argparse.ArgumentParser, ca_only: bool = False) -> None:
    """The flags that change the Spec (docker/cli addSwarmFlags); None = not given."""
    p.add_argument("--cert-expiry", type=_duration("--cert-expiry"), metavar="DURATION",
                   help="validity period for node certificates (ns|us|ms|s|m|h), e.g. 2160h")
    p.add_argument("--external-ca", action="append", metavar="SPEC",
                   help="a CFSSL signer: protocol=cfssl,url=https://...[,cacert=FILE]")
    if ca_only:
        return
    p.add_argument("--dispatcher-heartbeat", type=_duration("--dispatcher-heartbeat"),
                   metavar="DURATION", help="dispatcher heartbeat period (default 5s)")
    p.add_argument("--task-history-limit", type=int, metavar="N",
                   help="task history retention limit (default 5)")
    p.add_argument("--max-snapshots", type=int, metavar="N",
                   help="number of additional Raft snapshots to retain")
    p.add_argument("--snapshot-interval", type=int, metavar="N",
                   help="number of log entries between Raft snapshots (default 10000)")


def merge_spec(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Put the given flags into ``spec`` (docker/cli mergeSwarmSpec): only what was set."""
    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            spec[section] = {**(spec.get(section) or {}), key: value}

    put("Orchestration", "TaskHistoryRetentionLimit", getattr(args, "task_history_limit", None))
    put("Dispatcher", "HeartbeatPeriod", getattr(args, "dispatcher_heartbeat", None))
    put("Raft", "KeepOldSnapshots", getattr(args, "max_snapshots", None))
    put("Raft", "SnapshotInterval", getattr(args, "snapshot_interval", None))
    put("EncryptionConfig", "AutoLockManagers", getattr(args, "autolock", None))
    put("CAConfig", "NodeCertExpiry", args.cert_expiry)
    if args.external_ca:
        put("CAConfig", "ExternalCAs", [parse_external_ca(s) for s in args.external_ca])
    return spec


def print_join_command(c: Client, node_id: str, worker: bool, manager: bool) -> None:
    """The `docker swarm join` line(s), from the node's ManagerStatus.Addr; nothing when the
    node has none (as docker/cli printJoinCommand)."""
    node = c.nodes.get(node_id)
    tokens = c.swarm.inspect().get("JoinTokens") or {}
    addr = (node.get("ManagerStatus") or {}).get("Addr")
    if not node.get("ManagerStatus"):
        return
    for role, on in (("worker", worker), ("manager", manager)):
        if on:
            print(f"To add a {role} to this swarm, run the following command:\n\n"
                  f"    docker swarm join --token {tokens.get(role.capitalize(), '')} "
                  f"{addr}\n")


def print_unlock_command(key: str) -> None:
    if key:
        print("To unlock a swarm manager after it restarts, run the `docker swarm unlock`\n"
              f"command and provide the following key:\n\n    {key}\n\n"
              "Remember to store this key in a password manager, since without it you\n"
              "will not be able to restart the manager.")


def _init(args: argparse.Namespace) -> int:
    c = connect()
    spec = merge_spec({}, args)
    node_id = c.swarm.init(advertise_addr=args.advertise_addr, listen_addr=args.listen_addr,
                           spec=spec, autolock=bool(args.autolock),
                           availability=args.availability or "")
    print(f"Swarm initialized: current node ({node_id}) is now a manager.\n")
    print_join_command(c, node_id, worker=True, manager=False)
    print("To add a manager to this swarm, run 'docker swarm join-token manager' and follow "
          "the instructions.")
    if args.autolock:
        print_unlock_command(c.swarm.unlock_key())
    return 0


def _join(args: argparse.Namespace) -> int:
    c = connect()
    c.swarm.join([args.addr], args.token, listen_addr=args.listen_addr,
                 advertise_addr=args.advertise_addr, availability=args.availability or "")
    manager = bool((c.system.info().get("Swarm") or {}).get("ControlAvailable"))
    print(f"This node joined a swarm as a {'manager' if manager else 'worker'}.")
    return 0


def _join_token(args: argparse.Namespace) -> int:
    if args.role not in ("worker", "manager"):
        raise errors.InvalidArgumentError("join-token", f"unknown role {args.role}")
    c = connect()
    worker = args.role == "worker"
    if args.rotate:
        sw = c.swarm.inspect()
        c.swarm.update(sw["Version"]["Index"], sw["Spec"], rotate_worker_token=worker,
                       rotate_manager_token=not worker)
        if not args.quiet:
            print(f"Successfully rotated {args.role} join token.\n")
    tokens = c.swarm.inspect().get("JoinTokens") or {}
    if args.quiet:
        print(tokens.get(args.role.capitalize(), ""))
        return 0
    node_id = (c.system.info().get("Swarm") or {}).get("NodeID", "")
    print_join_command(c, node_id, worker=worker, manager=not worker)
    return 0


def _leave(args: argparse.Namespace) -> int:
    connect().swarm.leave(force=args.force)
    print("Node left the swarm.")
    return 0


def _update(args: argparse.Namespace) -> int:
    if not any(v is not None for k, v in vars(args).items() if k not in ("verb", "run")):
        raise errors.InvalidArgumentError("swarm update", "nothing to update: give a flag "
                                          "(see labkit swarm update --help)")
    c = connect()
    sw = c.swarm.inspect()
    before = bool((sw["Spec"].get("EncryptionConfig") or {}).get("AutoLockManagers"))
    spec = merge_spec(dict(sw["Spec"]), args)
    c.swarm.update(sw["Version"]["Index"], spec)
    print("Swarm updated.")
    if args.autolock and not before:
        print_unlock_command(c.swarm.unlock_key())
    return 0


def _read_key(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().strip()


def _unlock(args: argparse.Namespace) -> int:
    c = connect()
    state = (c.system.info().get("Swarm") or {}).get("LocalNodeState", "inactive")
    if state == "inactive":
        print("Error: This node is not part of a swarm", file=sys.stderr)
        return 1
    if state != "locked":
        print("Error: swarm is not locked", file=sys.stderr)
        return 1
    c.swarm.unlock(_read_key("Enter unlock key: "))
    return 0


def _unlock_key(args: argparse.Namespace) -> int:
    c = connect()
    if args.rotate:
        sw = c.swarm.inspect()
        if not (sw["Spec"].get("EncryptionConfig") or {}).get("AutoLockManagers"):
            raise errors.ConflictError("cannot rotate because autolock is not turned on")
        c.swarm.update(sw["Version"]["Index"], sw["Spec"], rotate_unlock_key=True)
        if not args.quiet:
            print("Successfully rotated manager unlock key.")
    key = c.swarm.unlock_key()
    if not key:
        raise errors.ConflictError("no unlock key is set", hint="autolock is off: "
                                   "labkit swarm update --autolock=true")
    if args.quiet:
        print(key)
    else:
        print_unlock_command(key)
    return 0


def _trust_root(sw: dict[str, Any]) -> int:
    root = (sw.get("TLSInfo") or {}).get("TrustRoot", "")
    if not root:
        raise errors.ConflictError("No CA information available")
    print(root.strip())
    return 0


def _ca(args: argparse.Namespace) -> int:
    c = connect()
    sw = c.swarm.inspect()
    if not args.rotate:
        for flag, val in (("--ca-cert", args.ca_cert), ("--ca-key", args.ca_key),
                          ("--cert-expiry", args.cert_expiry),
                          ("--external-ca", args.external_ca)):
            if val is not None:
                raise errors.InvalidArgumentError(flag, f"`{flag}` flag requires the "
                                                  "`--rotate` flag to update the CA")
        return _trust_root(sw)
    if args.external_ca and not args.ca_cert:  # docker/cli ca.go's two checks
        raise errors.InvalidArgumentError("--ca-cert", "rotating to an external CA requires "
                                          "the `--ca-cert` flag to specify the external CA's "
                                          "cert - to add an external CA with the current root "
                                          "CA certificate, use the `update` command instead")
    if args.ca_cert and not args.external_ca and not args.ca_key:
        raise errors.InvalidArgumentError("--ca-cert", "the --ca-cert flag requires that a "
                                          "--ca-key flag and/or --external-ca flag be provided "
                                          "as well")
    spec = merge_spec(dict(sw["Spec"]), args)
    ca = dict(spec.get("CAConfig") or {})
    cert = Path(args.ca_cert).read_text() if args.ca_cert else ""
    key = Path(args.ca_key).read_text() if args.ca_key else ""
    if args.external_ca:  # the new external CAs sign with the new root
        ca["ExternalCAs"] = [dict(e, CACert=cert) for e in ca.get("ExternalCAs") or []]
    if cert or key:
        ca.update(SigningCACert=cert, SigningCAKey=key)
    else:  # no root given: a new one is made (docker/cli ca.go updateSwarmSpec)
        ca["ForceRotate"] = int(ca.get("ForceRotate") or 0) + 1
    spec["CAConfig"] = ca
    c.swarm.update(sw["Version"]["Index"], spec)
    if args.detach:
        return 0
    deadline = time.monotonic() + 120.0  # bounded: the rotation either converges or we say so
    while (sw := c.swarm.inspect()).get("RootRotationInProgress"):
        if time.monotonic() > deadline:
            raise errors.ConflictError("the root CA rotation is still in progress",
                                       hint="see labkit swarm ca later")
        time.sleep(0.5)
    return 0 if args.quiet else _trust_root(sw)


def add_subcommands(sub: Any) -> None:
    """Add Docker's swarm verbs to ``sub`` (an argparse subparsers object)."""
    s = sub.add_parser("init", help="initialize a swarm: this node becomes its first manager")
    s.add_argument("--advertise-addr", default="", metavar="ADDR",
                   help="advertised address (<ip>[:port])")
    s.add_argument("--listen-addr", default="0.0.0.0:2377", metavar="ADDR",
                   help="listen address (<ip>[:port], default 0.0.0.0:2377)")
    s.add_argument("--autolock", action="store_const", const=True, default=None,
                   help="enable manager autolocking (an unlock key is needed after a restart)")
    s.add_argument("--availability", type=_availability, metavar="STATE",
                   help="availability of the node: active, pause, drain")
    _spec_flags(s)
    s.set_defaults(run=_init)

    s = sub.add_parser("join", help="join a swarm as a worker or a manager")
    s.add_argument("--token", required=True, help="the join token (worker or manager)")
    s.add_argument("--listen-addr", default="0.0.0.0:2377", metavar="ADDR")
    s.add_argument("--advertise-addr", default="", metavar="ADDR")
    s.add_argument("--availability", type=_availability, metavar="STATE")
    s.add_argument("addr", metavar="HOST:PORT", help="a manager's address")
    s.set_defaults(run=_join)

    s = sub.add_parser("join-token", help="show (or rotate) the join token of a role")
    s.add_argument("-q", "--quiet", action="store_true", help="only display the token")
    s.add_argument("--rotate", action="store_true", help="rotate the join token")
    s.add_argument("role", metavar="worker|manager")
    s.set_defaults(run=_join_token)

    s = sub.add_parser("leave", help="leave the swarm")
    s.add_argument("-f", "--force", action="store_true", help="leave even as a manager")
    s.set_defaults(run=_leave)

    s = sub.add_parser("update", help="update the swarm's settings")
    s.add_argument("--autolock", type=_go_bool, nargs="?", const=True, metavar="true|false",
                   help="change manager autolocking")
    _spec_flags(s)
    s.set_defaults(run=_update)

    s = sub.add_parser("unlock", help="unlock a locked manager (the key from stdin or a "
                                      "prompt)")
    s.set_defaults(run=_unlock)

    s = sub.add_parser("unlock-key", help="show (or rotate) the unlock key")
    s.add_argument("-q", "--quiet", action="store_true", help="only display the key")
    s.add_argument("--rotate", action="store_true", help="rotate the unlock key")
    s.set_defaults(run=_unlock_key)

    s = sub.add_parser("ca", help="display (or rotate) the root CA")
    s.add_argument("--rotate", action="store_true", help="rotate the swarm's root CA")
    s.add_argument("--ca-cert", metavar="PEM-FILE", help="the new root CA certificate")
    s.add_argument("--ca-key", metavar="PEM-FILE", help="the new root CA key")
    s.add_argument("-d", "--detach", action="store_true", help="do not wait for the rotation")
    s.add_argument("-q", "--quiet", action="store_true", help="print nothing when done")
    _spec_flags(s, ca_only=True)
    s.set_defaults(run=_ca)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from labkit.cli.swarm_lab import add_lab

    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_subcommands(sub)
    add_lab(sub)


def run_command(args: argparse.Namespace) -> int:
    return int(args.run(args))
