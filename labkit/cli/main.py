"""labkit: the command line (entry point ``labkit = labkit.cli.main:main``).

A small dispatcher.  The table COMMANDS names each command, the module that implements it
and a one-line help; only the chosen module is imported, so ``labkit --help`` and short
commands start fast.  A command module provides either::

    def run(argv: list[str], prog: str) -> int          # parses its own arguments

or the pair::

    def add_arguments(p: argparse.ArgumentParser) -> None
    def run_command(args: argparse.Namespace) -> int

(``prog`` is e.g. "labkit doctor").  Typed labkit errors become one
line, ``labkit: error: <message>`` and a hint line, with exit status 1 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import labkit
from labkit import errors

__all__ = ["COMMANDS", "main"]

# name -> (module, help).  Docker-style verbs will join here as more modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("labkit.cli.doctor", "check what this host's kernel offers labkit"),
    "bench": ("labkit.cli.bench", "benchmarks: runtime start-to-exit, engine docker-run latency"),
    "vm": ("labkit.cli.vm", "build, boot and use the disposable test VM"),
    "container": ("labkit.cli.container", "manage containers (Docker's verbs: run, ps, exec...)"),
    "daemon": ("labkit.cli.daemon", "serve the Docker Engine API (the engine's daemon)"),
    "image": ("labkit.cli.image", "manage images (ls, rm, save, load, import, bootstrap...)"),
    "volume": ("labkit.cli.volume", "manage volumes (create, ls, inspect, rm, prune)"),
    "network": ("labkit.cli.network", "manage networks (create, ls, rm, connect...)"),
    "lab": ("labkit.cli.lab", "run a notebook's exercise checks outside Jupyter (lab check 01)"),
    "build": ("labkit.cli.build", "build an image from a Dockerfile (the classic builder)"),
    "commit": ("labkit.cli.build", "make an image from a container's changes"),
    "swarm": ("labkit.cli.swarm", "manage the swarm (init, join, join-token, update, unlock...)"),
    "node": ("labkit.cli.node", "manage swarm nodes (ls, inspect, promote, demote, update, rm)"),
    "service": ("labkit.cli.service", "manage swarm services (create, ls, ps, scale, update...)"),
    "secret": ("labkit.cli.secret", "manage swarm secrets (create, ls, inspect, rm)"),
    "config": ("labkit.cli.config", "manage swarm configs (create, ls, inspect, rm)"),
    "stack": ("labkit.cli.stack", "deploy compose files as stacks (deploy, ls, services, ps, rm)"),
}
COMMANDS.update({verb: ("labkit.cli.registry", f"registry: {what}") for verb, what in (
    ("login", "log in to a registry (kept in the Docker CLI's config.json)"),
    ("logout", "forget a registry's credentials"),
    ("pull", "pull an image from a registry"), ("push", "push an image to a registry"))})
# Docker's short forms (`labkit run`, `labkit ps`, ...): the same module reads its verb from prog.
COMMANDS.update({verb: ("labkit.cli.container", f"= labkit container {verb}") for verb in (
    "run", "create", "start", "stop", "kill", "restart", "rm", "ps", "logs", "exec", "attach",
    "inspect", "wait", "top", "stats", "port", "pause", "unpause", "rename", "update")})


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labkit",
        description="Rebuild a container platform from Linux kernel primitives, and measure it.",
        epilog="Run 'labkit COMMAND --help' for a command's options.")
    p.add_argument("--version", action="version", version=f"labkit {labkit.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def split(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Find the command word: (command, its arguments); (None, argv) when there is none."""
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            return arg, list(argv[i + 1:])
    return None, list(argv)


def report(err: errors.LabkitError) -> None:
    """Print a typed error as one line plus a hint line, as the CLI contract says."""
    print(f"labkit: error: {err}", file=sys.stderr)
    if err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the labkit command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = split(argv)
    top = _top_parser()
    if command is None:
        top.parse_args(argv)  # handles --help / --version, or errors on unknown options
        top.print_help()
        return 2
    if (idx := argv.index(command)) > 0:
        top.parse_args(argv[:idx])  # options before the command: --help, --version
    if command not in COMMANDS:
        top.error(f"unknown command {command!r} (choose from {', '.join(COMMANDS)})")
    prog = f"labkit {command}"
    try:
        module = importlib.import_module(COMMANDS[command][0])
    except ModuleNotFoundError as err:
        if err.name != COMMANDS[command][0]:
            raise
        report(errors.UnsupportedError(f"labkit {command}", "not in this build yet",
                                       hint=f"{err.name} is missing"))
        return 1
    try:
        if hasattr(module, "run"):
            return int(module.run(rest, prog=prog))
        parser = argparse.ArgumentParser(prog=prog, description=COMMANDS[command][1])
        module.add_arguments(parser)
        return int(module.run_command(parser.parse_args(rest)))
    except errors.LabkitError as err:
        report(err)
        return 1
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
