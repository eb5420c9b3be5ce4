"""`labkit build` and `labkit commit`: Docker's verbs for the classic builder and commit.

    labkit build -t NAME [-f FILE] [--build-arg K=V]... [--no-cache] [--force-rm] [-q]
                 [--target T] DIR
    labkit commit [-m MSG] [-a AUTHOR] [-c INSTRUCTION]... [--pause=false] CONTAINER [REPO[:TAG]]

The build streams the daemon's steps (rich: the "Step N/M" lines bold, the layer IDs dim,
errors red) and exits with the failed step's code, as `docker build` does.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.markup import escape

from labkit import errors
from labkit.engine.client import Client
from labkit.engine.client.buildctx import pack_context

__all__ = ["run"]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not k:
            raise errors.InvalidArgumentError(what, f"{item!r} is not KEY=VALUE")
        out[k] = v if eq else ""
    return out


def _build(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog, description="build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[], help="name[:tag] (repeatable)")
    p.add_argument("-f", "--file", help="the Dockerfile (default DIR/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--force-rm", action="store_true",
                   help="remove the step's container even when the step fails")
    p.add_argument("--target", default="")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("dir")
    a = p.parse_args(argv)
    con, err = Console(highlight=False), Console(stderr=True, highlight=False)
    context, name = pack_context(a.dir, a.file)
    if not a.quiet:
        con.print(f"[dim]Sending build context to the daemon  {len(context) / 1024:.1f}kB[/]")
    client = Client(autostart=True)
    image = ""
    for msg in client.images.build(context, tag=a.tag[0] if a.tag else None, dockerfile=name,
                                   buildargs=_pairs(a.build_arg, "--build-arg"),
                                   nocache=a.no_cache, labels=_pairs(a.label, "--label"),
                                   target=a.target, quiet=a.quiet, forcerm=a.force_rm):
        if "error" in msg:
            err.print(f"[red]{escape(str(msg['error']))}[/]")
            return int((msg.get("errorDetail") or {}).get("code") or 1)
        if "aux" in msg:
            image = str(msg["aux"].get("ID", ""))
            continue
        text = str(msg.get("stream", ""))
        if a.quiet:
            continue
        if text.startswith("Step "):
            con.print(f"[bold]{escape(text.rstrip())}[/]")
        elif text.startswith(" ---> "):
            con.print(f"[dim]{escape(text.rstrip())}[/]")
        else:
            con.out(text, end="")
    for extra in a.tag[1:]:
        repo, _, tag = extra.rpartition(":") if ":" in extra.rsplit("/", 1)[-1] else (extra, "", "")
        client.images.tag(image, repo or extra, tag or None)
        if not a.quiet:
            con.print(f"Successfully tagged {escape(extra)}")
    if a.quiet:
        print(image)
    return 0


def _commit(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog, description="make an image from a container's changes")
    p.add_argument("-m", "--message", default=None)
    p.add_argument("-a", "--author", default=None)
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-p", "--pause", default="true", choices=("true", "false"))
    p.add_argument("container")
    p.add_argument("ref", nargs="?")
    a = p.parse_args(argv)
    repo = tag = None
    if a.ref:
        last = a.ref.rsplit("/", 1)[-1]
        repo, tag = (a.ref.rsplit(":", 1) if ":" in last else (a.ref, None))
    iid = Client(autostart=True).images.commit(
        a.container, repo, tag, comment=a.message, author=a.author, changes=a.change,
        pause=a.pause == "true")
    print(iid)
    return 0


def run(argv: list[str], prog: str = "labkit build") -> int:
    verb = prog.split()[-1]
    try:
        return _commit(argv, prog) if verb == "commit" else _build(argv, prog)
    except errors.LabkitError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
