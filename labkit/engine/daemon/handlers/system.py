"""/_ping, /version, /info, /events."""

from __future__ import annotations

from aiohttp import web

from labkit.engine.containers.events import check_filters
from labkit.engine.containers.listing import parse_until
from labkit.engine.daemon import streams
from labkit.engine.daemon.handlers.swarm import info_section, ping_status
from labkit.engine.daemon.params import engine, filters, reply
from labkit.engine.daemon.serialize import info, version

PING_HEADERS = {"Api-Version": "1.41", "Ostype": "linux", "Docker-Experimental": "false",
                "Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
                "Pragma": "no-cache"}


async def ping(request: web.Request) -> web.Response:
    # Swarm: dockerd >= 23 (docs/api/version-history.md, "not versioned"); the CLI reads it
    # as optional.
    return web.Response(text="OK", headers={**PING_HEADERS, "Swarm": ping_status(
        engine(request))}, content_type="text/plain")


async def get_version(request: web.Request) -> web.Response:
    return reply(version())


async def get_info(request: web.Request) -> web.Response:
    eng = engine(request)
    out = {**info(eng), "Swarm": await info_section(eng)}
    managers = out["Swarm"].get("Managers") or 0
    if out["Swarm"].get("ControlAvailable") and managers and managers % 2 == 0:
        # dockerd warns of two managers; any even count tolerates no more failures than
        # one manager fewer would (a majority of n is n // 2 + 1)
        warning = (f"WARNING: Running Swarm in a {managers}-manager configuration. It "
                   f"tolerates {(managers - 1) // 2} failed manager(s), as {managers - 1} "
                   "managers would: use an odd number (3, 5 or 7).")
        out["Warnings"] = [*(out.get("Warnings") or []), warning]
    return reply(out)


async def events(request: web.Request) -> web.StreamResponse:
    q = request.query
    flt = filters(request)
    check_filters(flt)  # a 400 before the stream's 200
    items = engine(request).bus.stream(parse_until(q.get("since")), parse_until(q.get("until")),
                                       flt)
    return await streams.send_json_lines(request, items)
