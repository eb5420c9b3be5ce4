"""labkit: rebuild a container platform from Linux kernel primitives, and measure every step.

Importing ``labkit`` is cheap on purpose (the runtime and the shim start with it); the
subpackages are imported by name: ``labkit.ns``, ``labkit.cgroups``, ``labkit.engine``.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # PEP 562: ``labkit.require(...)`` for notebooks (STYLE C13) without importing the
    # notebook helpers (pandas, matplotlib) when the runtime imports labkit.
    if name == "require":
        from labkit.lab import require

        return require
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
