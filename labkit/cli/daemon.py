"""labkit daemon [--socket PATH] [--debug]: the Docker Engine API server."""

from __future__ import annotations

__all__ = ["run"]


def run(argv: list[str], prog: str = "labkit daemon") -> int:
    from labkit.engine.daemon.main import main
    return main(argv, prog)
