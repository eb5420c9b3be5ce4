"""Query and body helpers shared by the handlers (Docker's conventions, docker-api.md 2)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.containers.createbody import parse_json
from labkit.engine.containers.listing import parse_filters

__all__ = ["body", "cid", "engine", "filters", "flag", "integer", "reply"]


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """Docker booleans: 1/true/True/yes (anything else, e.g. 0/false, is false)."""
    v = request.query.get(name)
    if v is None:
        return default
    return v.lower() in ("1", "true", "yes", "")


def integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise errors.InvalidArgumentError(name, f"invalid integer {v!r}") from None


async def body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The JSON body as an object; {} when ``optional`` and empty."""
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    return parse_json(raw)


def filters(request: web.Request) -> dict[str, list[str]]:
    return parse_filters(request.query.get("filters"))


def reply(obj: Any, status: int = 200) -> web.Response:
    """JSON with Content-Type exactly "application/json": the Docker CLI reads error
    messages only then (client/request.go compares the header to that string)."""
    return web.Response(status=status, body=json.dumps(obj).encode(),
                        headers={"Content-Type": "application/json"})


def engine(request: web.Request) -> Any:
    from labkit.engine.daemon.app import ENGINE
    return request.app[ENGINE]


def cid(request: web.Request) -> str:
    return request.match_info["id"]
