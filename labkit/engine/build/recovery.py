"""Daemon start: what a build killed with the daemon left behind goes away.

A RUN step's container (label ``labkit.build.step``) is removed, and a step image that was
registered only for it (a marker in ``buildcache/steps/``) is dropped.  Layers and cache
entries stay: they are complete (published by rename), and the retry reuses them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from labkit import errors
from labkit.engine.build.layerstore import drop_step_image, leftover_steps
from labkit.engine.build.runstep import STEP_LABEL

__all__ = ["sweep"]

log = logging.getLogger("labkit.build")


async def sweep(eng: Any) -> None:
    for rec in list(eng.store.all()):
        if (rec.config.get("Labels") or {}).get(STEP_LABEL):
            with contextlib.suppress(errors.LabkitError):
                await eng.control.remove(rec.id, force=True)
                log.info("removed build container %s left by an interrupted build", rec.id[:12])
    for hexid in leftover_steps(eng.images):
        drop_step_image(eng.images, hexid)
