"""Docker's JSON progress messages (moby pkg/jsonmessage, pkg/streamformatter).

The Docker CLI draws one line per ``id`` and a bar from ``progressDetail`` {current, total};
``progress`` is the text form for clients that print it as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

__all__ = ["bar", "error", "follow", "layer", "status"]

_REPORT_EVERY = 256 << 10  # bytes between two bar updates of one layer


def _human(n: float) -> str:
    # go-units HumanSize: decimal units, 3 significant digits ("1.23MB")
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def bar(current: int, total: int) -> str:
    """``[=====>      ]  1.2MB/2.3MB`` as jsonmessage.JSONProgress.String draws it."""
    width = 50
    if total <= 0:
        return f"{_human(current)}"
    filled = min(width, current * width // total)
    arrow = "=" * max(filled - 1, 0) + (">" if filled < width else "=") if filled else ""
    return f"[{arrow:<{width}}] {_human(current):>8}/{_human(total)}"


def status(text: str, **extra: Any) -> dict[str, Any]:
    return {"status": text, **extra}


def layer(text: str, ident: str, current: int | None = None,
          total: int | None = None) -> dict[str, Any]:
    """One layer's line; with ``current`` a bar (``total`` may be unknown)."""
    msg: dict[str, Any] = {"status": text, "progressDetail": {}, "id": ident}
    if current is not None:
        detail: dict[str, int] = {"current": current}
        if total:
            detail["total"] = total
        msg["progressDetail"] = detail
        msg["progress"] = bar(current, total or 0)
    return msg


def error(message: str) -> dict[str, Any]:
    """A failure inside the stream (the status line has already gone out)."""
    return {"errorDetail": {"message": message}, "error": message}


async def follow(work: Callable[[Callable[[int], None]], Awaitable[None]], text: str,
                 ident: str, total: int) -> AsyncGenerator[dict[str, Any], None]:
    """Run ``work(note)`` and yield a ``text`` bar line each time it notes progress (at
    most one per 256 KiB); re-raise its error.  Cancelled with the stream."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    last = [0]

    def note(n: int) -> None:
        if n - last[0] >= _REPORT_EVERY or n == total:
            last[0] = n
            queue.put_nowait(n)

    task = asyncio.ensure_future(work(note))
    try:
        while not task.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield layer(text, ident, getter.result(), total)
            else:
                getter.cancel()
        task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
