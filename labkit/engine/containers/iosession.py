"""One attach or exec stream to a shim's io socket (stdcopy frames, or raw with a tty)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["IoSession"]


class IoSession:
    """One attach (or exec) stream: the shim's io socket, framed stdcopy output."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tty: bool,
                 exit_future: asyncio.Future[Any] | None = None) -> None:
        self.reader, self.writer, self.tty = reader, writer, tty
        self.exit_future = exit_future
        self.error = ""  # written to the client as stderr before closing (a failed exec)

    @classmethod
    async def connect(cls, socket: str, exec_id: str, stdin: bool, stdout: bool, stderr: bool,
                      tty: bool) -> IoSession:
        reader, writer = await asyncio.open_unix_connection(socket)
        hello = {"exec_id": exec_id, "stdin": stdin, "stdout": stdout, "stderr": stderr}
        writer.write(json.dumps(hello).encode() + b"\n")
        await writer.drain()
        return cls(reader, writer, tty)
