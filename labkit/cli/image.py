"""`labkit image VERB`: ls, inspect, rm, tag, save, load, import, history, prune, bootstrap.

Each verb is one or two calls through labkit.engine.client (the daemon owns the image
store); lists are rich tables.  Errors from the daemon come back as labkit's typed errors
and are printed by labkit.cli.main as one line and a hint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labkit import errors
from labkit.cli._fmt import human_size
from labkit.engine.client import Client

__all__ = ["add_arguments", "run_command"]

out = Console(highlight=False, soft_wrap=True)


def _filters(items: list[str]) -> dict[str, list[str]]:
    flt: dict[str, list[str]] = {}
    for f in items:
        key, eq, value = f.partition("=")
        if not eq or not key:
            raise errors.InvalidArgumentError("--filter", f"bad format of filter {f!r}",
                                              hint="expected key=value, e.g. dangling=true")
        flt.setdefault(key, []).append(value)
    return flt


def add_arguments(p: argparse.ArgumentParser) -> None:
    from labkit.cli import _bootstrap

    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = sub.add_parser("ls", aliases=["list"], help="list images")
    s.add_argument("-a", "--all", action="store_true", help="show dangling images too")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("-f", "--filter", action="append", default=[], help="key=value")
    s.add_argument("--no-trunc", action="store_true", help="full IDs")
    s = sub.add_parser("inspect", help="an image's JSON")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s = sub.add_parser("rm", aliases=["rmi"], help="untag and delete images")
    s.add_argument("-f", "--force", action="store_true", help="delete even if a stopped "
                   "container uses it, or it has several repositories")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s = sub.add_parser("tag", help="give an image another name")
    s.add_argument("source", metavar="SOURCE_IMAGE")
    s.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    s = sub.add_parser("save", help="write images to a docker-archive tar")
    s.add_argument("-o", "--output", type=Path, help="the tar file to write (default stdout)")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s = sub.add_parser("load", help="load images from a docker-archive or OCI tar")
    s.add_argument("-i", "--input", type=Path, help="the tar file to read (default stdin)")
    s = sub.add_parser("import", help="a rootfs tar (file or http(s) URL) as a new image")
    s.add_argument("source", metavar="FILE|URL|-")
    s.add_argument("ref", nargs="?", metavar="REPOSITORY[:TAG]")
    s.add_argument("-c", "--change", action="append", default=[],
                   help="Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, "
                   "EXPOSE)")
    s.add_argument("-m", "--message", default="", help="commit message")
    s = sub.add_parser("history", help="an image's history")
    s.add_argument("image")
    s.add_argument("--no-trunc", action="store_true", help="do not cut CREATED BY")
    s = sub.add_parser("prune", help="delete dangling (or with -a, unused) images")
    s.add_argument("-a", "--all", action="store_true", help="all images no container uses")
    s.add_argument("-f", "--force", action="store_true", help="do not ask (labkit never asks)")
    s.add_argument("--filter", action="append", default=[], help="label=... ")
    s = sub.add_parser("bootstrap", help="build a base image (busybox, debian) with no registry")
    _bootstrap.add_arguments(s)


def _ago(created: float) -> str:
    secs = max(0, time.time() - created)
    for unit, n in (("years", 31536000), ("months", 2592000), ("weeks", 604800),
                    ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= 2 * n:
            return f"{int(secs // n)} {unit} ago"
    return "Less than a minute ago" if secs < 60 else "About a minute ago"


def _ls(c: Client, args: argparse.Namespace) -> int:
    flt = _filters(args.filter)
    images = c.images.list(all=args.all, filters=flt)
    if args.quiet:
        ids = dict.fromkeys(i["Id"] if args.no_trunc else i["Id"][7:19] for i in images)
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        return 0
    tab = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"):
        tab.add_column(col, no_wrap=True)
    for img in images:
        iid = img["Id"] if args.no_trunc else img["Id"][7:19]
        for t in img["RepoTags"] or ["<none>:<none>"]:
            repo, _, tag = t.rpartition(":")
            tab.add_row(repo, tag, iid, _ago(img["Created"]), human_size(img["Size"]))
    out.print(tab)
    return 0


def _history(c: Client, args: argparse.Namespace) -> int:
    tab = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"):
        tab.add_column(col, no_wrap=True)
    for h in c.images.history(args.image):
        hid = h["Id"] if args.no_trunc or h["Id"] == "<missing>" else h["Id"][7:19]
        by = h.get("CreatedBy") or ""
        tab.add_row(hid, _ago(h.get("Created") or 0),
                    by if args.no_trunc else (by[:44] + "…" if len(by) > 45 else by),
                    human_size(h.get("Size") or 0), h.get("Comment") or "")
    out.print(tab)
    return 0


def _rm(c: Client, args: argparse.Namespace) -> int:
    rc = 0
    for name in args.images:
        try:
            for line in c.images.remove(name, force=args.force):
                for k, v in line.items():
                    print(f"{k}: {v}")
        except errors.LabkitError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            rc = 1
    return rc


def _prune(c: Client, args: argparse.Namespace) -> int:
    flt = _filters(args.filter)
    if args.all:
        flt["dangling"] = ["false"]
    res = c.images.prune(flt)
    deleted = res.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for line in deleted:
            for k, v in line.items():
                print(f"{k.lower()}: {v}")
        print()
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed') or 0)}")
    return 0


def _import(c: Client, args: argparse.Namespace) -> int:
    if args.source.startswith(("http://", "https://")):
        iid = c.images.import_url(args.source, args.ref, changes=args.change,
                                  message=args.message)
    elif "://" in args.source:
        raise errors.InvalidArgumentError(
            "source", f"{args.source!r}: only http:// and https:// URLs are fetched")
    elif args.source == "-":
        with _stdin_file() as src:
            iid = c.images.import_file(src, args.ref, changes=args.change, message=args.message)
    else:
        src = Path(args.source)
        if not src.is_file():
            raise errors.NotFoundError("file", args.source, hint="give a rootfs tar file or URL")
        iid = c.images.import_file(src, args.ref, changes=args.change, message=args.message)
    print(iid)
    return 0


@contextlib.contextmanager
def _stdin_file() -> Iterator[Path]:
    """stdin spooled to a private temp file: the upload needs its length (Content-Length)."""
    if sys.stdin.isatty():
        raise errors.InvalidArgumentError("input", "stdin is a terminal, not a tar",
                                          hint="redirect a file in, or give its path")
    with tempfile.NamedTemporaryFile(prefix="lk-stdin-", suffix=".tar") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        f.flush()
        yield Path(f.name)


def _load(c: Client, args: argparse.Namespace) -> int:
    if args.input is None:
        with _stdin_file() as src:
            lines = c.images.load(src)
    elif not args.input.is_file():
        raise errors.NotFoundError("file", str(args.input))
    else:
        lines = c.images.load(args.input)
    for line in lines:
        sys.stdout.write(str(line.get("stream", "")))
    return 0


def _save(c: Client, args: argparse.Namespace) -> int:
    if args.output is None:
        if sys.stdout.isatty():  # the Docker CLI's own refusal
            raise errors.InvalidArgumentError(
                "output", "cowardly refusing to save to a terminal",
                hint="use the -o flag or redirect")
        sys.stdout.flush()
        c.images.save(args.images, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    tmp = args.output.with_name(f".{args.output.name}.part")
    with open(tmp, "wb") as f:  # a cut-off save never leaves a half tar under the name
        try:
            c.images.save(args.images, f)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    tmp.rename(args.output)
    return 0


def _inspect(c: Client, args: argparse.Namespace) -> int:
    found: list[Any] = []
    rc = 0
    for name in args.images:
        try:
            found.append(c.images.inspect(name))
        except errors.NotFoundError:
            print(f"Error: No such image: {name}", file=sys.stderr)
            rc = 1
    print(json.dumps(found, indent=4))
    return rc


def run_command(args: argparse.Namespace) -> int:
    from labkit.cli.container import connect

    c = connect()
    verb = {"list": "ls", "rmi": "rm"}.get(args.verb, args.verb)
    if verb == "bootstrap":
        from labkit.cli import _bootstrap

        return _bootstrap.run_bootstrap(c, args)
    if verb == "tag":
        src, target = args.source, args.target
        last = target.rsplit("/", 1)[-1]
        repo, _, tag = target.rpartition(":") if ":" in last else (target, "", "")
        c.images.tag(src, repo, tag or None)
        return 0
    handlers = {"ls": _ls, "history": _history, "rm": _rm, "prune": _prune,
                "import": _import, "load": _load, "save": _save, "inspect": _inspect}
    return handlers[verb](c, args)
