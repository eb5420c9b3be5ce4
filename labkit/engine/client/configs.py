"""Config endpoints: ``Configs`` shares its code with secrets (secrets.py); re-exported here
so each resource has its module."""

from __future__ import annotations

from labkit.engine.client.secrets import Configs

__all__ = ["Configs"]
