"""/configs...: docker config create / ls / inspect / rm / update (labels only): the
secrets handlers with kind "config" (a config's data is shown, in Spec.Data)."""

from __future__ import annotations

from labkit.engine.daemon.handlers.secrets import handlers

__all__ = ["create", "inspect", "list_", "remove", "update"]

_h = handlers("config")
create, list_, inspect, update, remove = (_h["create"], _h["list_"], _h["inspect"],
                                          _h["update"], _h["remove"])
