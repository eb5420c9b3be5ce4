"""`labkit login / logout / pull / push`: the registry verbs, printed as the Docker CLI does.

Credentials are read from and written to the Docker CLI's own config.json (_dockerconfig), so
`docker login` and `labkit login` serve each other.  The password is read from a prompt or
stdin (``--password-stdin``), sent once to the daemon (POST /auth) and then only as the
X-Registry-Auth header; it is never printed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from labkit import errors
from labkit.cli import _dockerconfig
from labkit.engine.client import Client

__all__ = ["run"]


def _domain(name: str) -> str:
    from labkit.engine.registry.reference import parse
    return parse(name).domain


def _server_domain(server: str) -> str:
    s = server.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if s in ("", "index.docker.io", "registry-1.docker.io") else s


def _print_stream(resp: Any, quiet: bool) -> None:
    """Docker's non-terminal rendering: "ID: status" lines; bars are left out."""
    for raw in resp.iter_lines():
        if not raw.strip():
            continue
        msg = json.loads(raw)
        if "error" in msg or "errorDetail" in msg:
            text = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
            raise errors.LabkitError(str(text))
        status = msg.get("status")
        if quiet or not status or msg.get("progressDetail", {}).get("current") is not None:
            continue
        print(f"{msg['id']}: {status}" if msg.get("id") else status, flush=True)


def _login(args: argparse.Namespace) -> int:
    domain = _server_domain(args.server or "")
    user = args.username or input("Username: ")
    if args.password_stdin:
        if args.password:
            raise errors.InvalidArgumentError("--password", "--password and --password-stdin "
                                              "are mutually exclusive")
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = args.password or getpass.getpass("Password: ")
    if not user or not password:
        raise errors.InvalidArgumentError("login", "username and password are required")
    client = Client(autostart=True)
    body = {"username": user, "password": password,
            "serveraddress": _dockerconfig.key_for(domain)}
    client.transport.request("POST", "/auth", body=body).json()
    path = _dockerconfig.store(domain, user, password)
    print(f"WARNING! Your password will be stored unencrypted in {path}.", file=sys.stderr)
    print("Login Succeeded")
    return 0


def _logout(args: argparse.Namespace) -> int:
    domain = _server_domain(args.server or "")
    key = _dockerconfig.key_for(domain)
    if _dockerconfig.erase(domain):
        print(f"Removing login credentials for {key}")
    else:
        print(f"Not logged in to {key}")
    return 0


def _full(ref: Any) -> str:
    """The fully qualified name `docker pull -q` prints (docker.io/library/busybox:latest)."""
    sep = "@" if ref.digest else ":"
    return f"{ref.domain}/{ref.path}{sep}{ref.reference}"


def _pull(args: argparse.Namespace) -> int:
    from labkit.engine.registry.reference import parse
    ref = parse(args.name)
    params = {"fromImage": ref.familiar_name, "tag": ref.reference, "platform": args.platform}
    hdr = {"X-Registry-Auth": _dockerconfig.header_for(ref.domain)}
    client = Client(autostart=True, timeout=None)
    resp = client.transport.request("POST", "/images/create", params, headers=hdr)
    _print_stream(resp, args.quiet)
    if args.quiet:
        print(_full(ref))
    return 0


def _push(args: argparse.Namespace) -> int:
    from labkit.engine.registry.reference import parse
    ref = parse(args.name)
    if ref.digest:
        raise errors.InvalidArgumentError("push", "name a tag, not a digest")
    name = ref.familiar_name
    hdr = {"X-Registry-Auth": _dockerconfig.header_for(ref.domain)}
    client = Client(autostart=True, timeout=None)
    resp = client.transport.request("POST", f"/images/{name}/push",
                                    {"tag": None if args.all_tags else ref.tag}, headers=hdr)
    _print_stream(resp, args.quiet)
    return 0


def run(argv: list[str], prog: str) -> int:
    verb = prog.rsplit(" ", 1)[-1]
    p = argparse.ArgumentParser(prog=prog)
    if verb == "login":
        p.add_argument("server", nargs="?", default="")
        p.add_argument("-u", "--username", default="")
        p.add_argument("-p", "--password", default="")
        p.add_argument("--password-stdin", action="store_true")
        return _login(p.parse_args(argv))
    if verb == "logout":
        p.add_argument("server", nargs="?", default="")
        return _logout(p.parse_args(argv))
    p.add_argument("name")
    p.add_argument("-q", "--quiet", action="store_true")
    if verb == "pull":
        p.add_argument("--platform", default=None)
        return _pull(p.parse_args(argv))
    p.add_argument("-a", "--all-tags", action="store_true")
    return _push(p.parse_args(argv))
