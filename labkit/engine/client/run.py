"""``run()``: create, attach, wait, start, collect output, remove, as docker-py's containers.run.

The same order as `docker run` (attach and wait before start, so no output is lost and the
exit is not missed); returns the exit status and the demultiplexed output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit.engine.client import Client
from labkit.engine.client.streams import demux_all

__all__ = ["RunResult", "run"]


@dataclass(frozen=True, slots=True)
class RunResult:
    id: str
    status: int
    stdout: bytes
    stderr: bytes


def run(client: Client, image: str, cmd: list[str], *, name: str | None = None,
        remove: bool = True, **config: Any) -> RunResult:
    """Run ``cmd`` in a new container of ``image`` to its end; extra Docker create fields in
    ``config`` (e.g. ``HostConfig={"NetworkMode": "none"}``)."""
    body = {"Image": image, "Cmd": cmd, "AttachStdout": True, "AttachStderr": True,
            **config}
    c = client.containers
    cid = str(c.create(body, name=name)["Id"])
    try:
        hijack = c.attach(cid)
        waiter = c.wait(cid, "next-exit")
        c.start(cid)
        hijack.close_write()
        chunks = []
        while data := hijack.recv():
            chunks.append(data)
        hijack.close()
        status = int((waiter.json() or {}).get("StatusCode", -1))
    finally:
        if remove:
            c.remove(cid, force=True)
    out, err = demux_all(b"".join(chunks))
    return RunResult(cid, status, out, err)
