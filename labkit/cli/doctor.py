"""labkit doctor [--json] [--strict] [--no-live]: what this host offers, with hints."""

from __future__ import annotations

import argparse
import json

__all__ = ["parser", "run"]


def parser(prog: str = "labkit doctor") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Check the kernel features labkit uses and say how to get "
                               "the missing ones.")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when any check is missing (default: always exit 0)")
    p.add_argument("--no-live", dest="live", action="store_false", default=None,
                   help="only read files; do not load BPF or create links")
    return p


def run(argv: list[str], prog: str = "labkit doctor") -> int:
    args = parser(prog).parse_args(argv)
    from labkit import doctor

    rows = doctor.check(live=args.live)
    if args.json:
        print(json.dumps(doctor.to_json_rows(rows), indent=2))
    else:
        from labkit.doctor.render import print_table

        print_table(rows)
    if args.strict and any(r.ok is False for r in rows):
        return 1
    return 0
