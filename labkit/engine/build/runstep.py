"""One RUN: a real container through the engine's services (the path of ``docker run``),
its output streamed to the build, its upper dir made the step's layer.

The container runs from the step image with the build's Env, WorkingDir and User, the
command (``/bin/sh -c ...`` or the exec form) as its Cmd and no Entrypoint (moby
withEntrypointOverride), no network, health checks off, and the label
``labkit.build.step`` so a daemon killed mid-build removes it at its next start.  The
runtime's bind-mount points (/etc/hosts, /etc/hostname, /etc/resolv.conf) are left out of
the layer, as Docker's init layer keeps them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.build.errors import BuildError

__all__ = ["STEP_LABEL", "run_step"]

STEP_LABEL = "labkit.build.step"
_RUNTIME_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
_HEADER = struct.Struct(">BxxxL")  # stdcopy: stream, 3 pad bytes, big-endian length


async def run_step(eng: Any, image_id: str, argv: list[str], env: list[str], workdir: str,
                   user: str, host: dict[str, Any], out: Callable[[str], Awaitable[None]],
                   commit: Callable[[Path], Awaitable[Any]], *, rm: bool = True,
                   forcerm: bool = False) -> Any:
    """Run ``argv`` in a container of ``image_id``; on exit 0 call ``commit(upper)`` and
    return its result.  The container is removed after a good step when ``rm``, after a
    failed one when ``forcerm`` (Docker's flags), and always when the build is cancelled
    (a client that went away leaves no container behind).  Raises BuildError with Docker's message on a non-zero exit.
    """
    from labkit.engine.containers.createbody import parse_create
    body = {"Image": image_id, "Cmd": argv, "Entrypoint": [], "Env": env,
            "WorkingDir": workdir, "User": user, "AttachStdout": True, "AttachStderr": True,
            "Labels": {STEP_LABEL: "1"}, "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": {"NetworkMode": "none", **host}}
    spec = parse_create(body)
    rec = eng.containers.create(spec)
    ok = cancelled = False
    try:
        await out(f" ---> Running in {rec.id[:12]}\n")
        exited = eng.containers.wait(rec.id, "next-exit")  # (not-running: true at once)
        attach = asyncio.ensure_future(eng.containers.attach(rec.id, False, True, True))
        await asyncio.sleep(0)  # the attach is waiting for the start before the start
        await asyncio.sleep(0)
        await eng.containers.start(rec.id)
        session = await attach
        if session is not None:
            await _pump(session, out)
        info = await exited
        code = int(getattr(info, "exit_status", 0))
        if code != 0:
            raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: {code}",
                             code)
        upper = Path(rec.dir) / "upper"
        _drop_runtime_files(upper)
        result = await commit(upper)
        ok = True
        return result
    except BuildError:
        raise  # the step's own failure: the container stays unless forcerm (Docker's rm)
    except BaseException:
        cancelled = True  # interrupted (client gone, cancel): never leave the container
        raise
    finally:
        if (ok and rm) or forcerm or cancelled:
            with contextlib.suppress(errors.LabkitError):
                await asyncio.shield(eng.control.remove(rec.id, force=True))
            with contextlib.suppress(Exception):  # the client may be gone (a cancel)
                await out(f"Removing intermediate container {rec.id[:12]}\n")


async def _pump(session: Any, out: Callable[[str], Awaitable[None]]) -> None:
    """stdcopy frames -> build stream lines (stdout and stderr alike, as Docker)."""
    try:
        while True:
            try:
                head = await session.reader.readexactly(_HEADER.size)
            except asyncio.IncompleteReadError:
                return
            _, n = _HEADER.unpack(head)
            data = await session.reader.readexactly(n)
            await out(data.decode("utf-8", "replace"))
    finally:
        session.writer.close()


def _drop_runtime_files(upper: Path) -> None:
    """The runtime made these as mount points; they are not the step's content."""
    for rel in _RUNTIME_FILES:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            p = upper / rel
            if p.is_file() and not p.is_symlink():
                p.unlink()
    etc = upper / "etc"
    with contextlib.suppress(OSError):
        if etc.is_dir() and not etc.is_symlink() and not os.listdir(etc) and \
                not _opaque(etc):
            etc.rmdir()


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False
