"""labkit: rebuild a container platform from Linux kernel primitives, and measure every step.

Importing ``labkit`` is cheap on purpose (the runtime and the shim start with it); the
subpackages are imported by name: ``labkit.ns``, ``labkit.cgroups``, ``labkit.engine``.
"""

__version__ = "0.1.0"
