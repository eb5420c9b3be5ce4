"""The throw-away labkit engine of the notebooks: labkit.measure.sandbox, under its lab name.

It lives in measure (the psutil room, which its process rows need, and the benchmarks start
it) so that measure never imports lab (DESIGN.md: a room imports only rooms above it).
"""

from __future__ import annotations

from labkit.measure.sandbox import LabEngine, ProcRow, process_rows

__all__ = ["LabEngine", "ProcRow", "process_rows"]
