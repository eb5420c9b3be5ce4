"""Glue for pyroute2's synchronous API (netns and links), shared by engine/net and doctor.

It lives in labkit.ns, the room of network namespaces, so the doctor (listed above the
engine in DESIGN.md) can use it without reaching into labkit.engine.net.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def off_loop(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` in a worker thread when this thread runs an asyncio loop (a Jupyter
    kernel): pyroute2's synchronous API drives its own event loop and refuses to nest in
    a running one ("This event loop is already running")."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lk-rtnl") as ex:
            return ex.submit(fn, *args, **kwargs).result()

    return wrapper
