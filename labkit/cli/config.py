"""`labkit config VERB`: create, ls, inspect, rm: swarm configs, the same verbs as secrets
(labkit.cli.secret) except that a config's data is not secret: `inspect --pretty` shows it."""

from __future__ import annotations

import argparse

from labkit.cli.secret import make_parser, run_for

__all__ = ["add_arguments", "run_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    make_parser(p, "config")


def run_command(args: argparse.Namespace) -> int:
    return run_for(args, "config")
