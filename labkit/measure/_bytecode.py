"""Make sure labkit's own bytecode is current before timing anything that imports it.

Every labkit-runtime, shim and labkit command start is a fresh interpreter. Where
PYTHONDONTWRITEBYTECODE is set (as on the machines this lab was built on), imports never
write .pyc files, so a module edited since set-up is recompiled at every start: measured
at ~1-2 ms per module, ~5 ms on the runtime's path, which would be charged to labkit.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import labkit


def ensure_compiled() -> None:
    """Compile every labkit module whose .pyc is missing or stale (a no-op when current)."""
    compileall.compile_dir(str(Path(labkit.__file__).parent), quiet=1)
