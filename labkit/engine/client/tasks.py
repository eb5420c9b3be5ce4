"""Task endpoints: ``Tasks`` lives with services (services.py); this module re-exports it so
each resource has its module, as the other client modules do."""

from __future__ import annotations

from labkit.engine.client.services import Tasks

__all__ = ["Tasks"]
