"""Long-lived responses: wait (headers at once, body at the condition), logs, events, stats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from aiohttp import web

from labkit import errors
from labkit.engine.logs.records import in_thread, records
from labkit.engine.shim.stdcopy import STREAMS, encode

T = TypeVar("T")

__all__ = ["attach_logs", "in_thread", "log_chunks", "nothing", "open_stream", "send_chunks", "send_json_lines",
           "send_wait", "wait_body"]


async def open_stream(request: web.Request, content_type: str) -> web.StreamResponse:
    """A 200 whose headers leave at once (chunked body follows)."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


async def send_json_lines(request: web.Request, items: AsyncIterator[Any]) -> web.StreamResponse:
    """Stream objects as JSON lines; stop quietly when the client goes away."""
    resp = await open_stream(request, "application/json")
    with contextlib.suppress(ConnectionError):
        async for item in items:
            await resp.write(json.dumps(item).encode() + b"\n")
        await resp.write_eof()
    return resp


async def send_wait(request: web.Request, fut: asyncio.Future[Any]) -> web.StreamResponse:
    """POST /wait: 200 and the headers now (the CLI blocks on them, docker-api.md 3.2), the
    body when the condition holds; a client that left (`run -d`) is not an error."""
    resp = await open_stream(request, "application/json")
    exit_ = await fut
    with contextlib.suppress(ConnectionError):
        await resp.write(wait_body(exit_))
        await resp.write_eof()
    return resp


async def send_chunks(request: web.Request, chunks: AsyncIterator[bytes],
                      content_type: str) -> web.StreamResponse:
    """Stream byte chunks (headers at once, as dockerd: `logs -f` on a quiet container)."""
    resp = await open_stream(request, content_type)
    with contextlib.suppress(ConnectionError):
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
    return resp


async def attach_logs(engine: Any, ref: str, q: Any) -> bytes:
    """attach?logs=1: what the container already printed, framed as the live stream."""
    want = {"stdout": q.get("stdout", ""), "stderr": q.get("stderr", "")}
    if not any(v in ("1", "true") for v in want.values()):
        return b""
    return b"".join([c async for c in log_chunks(engine, ref, want)])


async def nothing() -> None:
    """attach?stream=0: no live session."""


def wait_body(exit_: Any) -> bytes:
    err = {"Message": exit_.error} if exit_.error else None
    return json.dumps({"StatusCode": exit_.exit_status, "Error": err}).encode() + b"\n"


def log_chunks(engine: Any, ref: str, q: Any) -> AsyncIterator[bytes]:
    """GET /containers/{id}/logs: the json-file records as frames (raw with a tty).

    The checks (streams chosen, container known, driver readable) run now, so their
    400/404/501 go out before any header; the records come from the returned iterator."""
    from labkit.engine.containers.listing import parse_until

    stdout, stderr = q.get("stdout", "") in ("1", "true"), q.get("stderr", "") in ("1", "true")
    if not (stdout or stderr):
        raise errors.InvalidArgumentError(
            "stdout", "Bad parameters: you must choose at least one stream")
    from labkit.engine.logs.drivers import ReadNotSupportedError, read_source
    rec, json_path = engine.log_path(ref)
    lc = rec.host_config.get("LogConfig") or {}
    source = read_source(lc.get("Type") or "json-file", lc.get("Config") or {}, json_path)
    if source is None:  # none, or a network driver with cache-disabled (dual logging off)
        raise ReadNotSupportedError
    path, fmt = source
    tail_q = q.get("tail", "all")
    if tail_q not in ("all", "") and not tail_q.lstrip("-").isdigit():
        raise errors.InvalidArgumentError("tail", f"invalid tail value {tail_q!r}")
    tail = -1 if tail_q in ("all", "") else int(tail_q)
    since = int((parse_until(q.get("since")) or 0) * 1e9) if q.get("since") else 0
    until = int((parse_until(q.get("until")) or 0) * 1e9) if q.get("until") else 0
    stamps, tty = q.get("timestamps", "") in ("1", "true"), bool(rec.config.get("Tty"))
    details = q.get("details", "") in ("1", "true")

    def chunk(e: Any) -> bytes:
        # moby daemon/logs.go: "k=v,k2=v2 " (sorted by key) before the line with --details,
        # then the time (RFC3339NanoFixed: always 9 digits) before that with --timestamps
        data = e.log
        if details:
            data = ",".join(f"{k}={v}" for k, v in e.attrs).encode() + b" " + data
        if stamps:
            data = _fixed_time(e.ns).encode() + b" " + data
        return data if tty or not data else encode(STREAMS.get(e.stream, 1), data)
    follow = q.get("follow", "") in ("1", "true")
    return records(engine, rec, path, chunk, follow, tail, since, until, stdout, stderr, fmt)


def _fixed_time(ns: int) -> str:
    """Go's jsonmessage.RFC3339NanoFixed in UTC: 2026-12-03T16:41:21.180297093Z."""
    sec, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


