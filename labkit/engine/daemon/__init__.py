"""The Docker Engine API v1.41 over a unix socket (aiohttp): `labkit daemon`.

``make_app(engine)`` builds the application (app.py), ``main()`` runs it (main.py).
Handlers stay thin (STYLE C12); errmap.py is the one error table.
"""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from labkit.engine.daemon.main import main as _main
    return _main(argv)
