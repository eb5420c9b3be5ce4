"""/containers/{id}/archive (docker cp: HEAD, GET, PUT) and /containers/{id}/export.

The tar work is blocking file I/O: it runs in a worker thread writing into a pipe, and the
handler copies the pipe to the client, so a large copy never stalls the event loop.  A
client that goes away closes the pipe; the writer then stops on EPIPE.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

from aiohttp import web

from labkit import errors
from labkit._sys.inroot import open_in_root
from labkit.engine.containers import archive as ar
from labkit.engine.containers.fsview import RootView, emit, open_root
from labkit.engine.daemon.params import cid, engine, flag, reply

PATH_STAT = "X-Docker-Container-Path-Stat"
log = logging.getLogger("labkit.daemon")


class _Aborted(Exception):
    """A streamed tar failed after its 200 went out; the connection was closed."""


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise errors.InvalidArgumentError("Path", "Path cannot be empty")
    return path


def _not_found(err: ar.PathNotFoundError) -> web.Response:
    return reply({"message": err.message, "type": "NotFoundError", "errno": None}, 404)


async def _stream(request: web.Request, resp: web.StreamResponse,
                  produce: Callable[[IO[bytes]], None]) -> None:
    """Run ``produce(out)`` in a thread; send what it writes to ``resp`` as it comes."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe()

    def run() -> None:
        with os.fdopen(w, "wb", buffering=1 << 16) as out:
            produce(out)

    fut = loop.run_in_executor(None, run)
    try:
        with os.fdopen(r, "rb", buffering=0) as src:
            while chunk := await loop.run_in_executor(None, src.read, 1 << 16):
                await resp.write(chunk)
    finally:
        try:
            await fut
        except (BrokenPipeError, ConnectionError):
            pass  # the client went away
        except Exception as err:  # the status line is gone: cut the stream
            log.warning("%s %s: the tar stream failed: %s", request.method, request.path, err)
            if request.transport is not None:
                request.transport.close()  # the client sees a truncated body, not a success
            raise _Aborted() from err


async def head_archive(request: web.Request) -> web.Response:
    eng, ref, path = engine(request), cid(request), _path(request)
    rec = eng.store.get(ref)
    try:
        async with open_root(eng, rec) as root:
            with ar.resolve_resource(root.fd, path, ref) as res:
                st = ar.path_stat(root.fd, root.path, res)
    except ar.PathNotFoundError as err:
        return _not_found(err)
    return web.Response(status=200, headers={PATH_STAT: ar.stat_header(st)})


async def get_archive(request: web.Request) -> web.StreamResponse:
    eng, ref, path = engine(request), cid(request), _path(request)
    rec = eng.store.get(ref)
    try:
        async with open_root(eng, rec) as root:
            with ar.resolve_resource(root.fd, path, ref) as res:
                st = ar.path_stat(root.fd, root.path, res)
                resp = web.StreamResponse(headers={
                    PATH_STAT: ar.stat_header(st), "Content-Type": "application/x-tar"})
                await resp.prepare(request)
                emit(eng, "archive-path", rec)
                await _stream(request, resp, lambda out: ar.write_resource(res, out))
    except ar.PathNotFoundError as err:
        return _not_found(err)
    except (_Aborted, ConnectionError):  # cut short, or the client went away
        return resp
    await resp.write_eof()
    return resp


def _lookup(root: RootView) -> Callable[[str], str | None]:
    def lookup(path: str) -> str | None:
        try:
            fd = open_in_root(root.fd, path, os.O_RDONLY)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read(1 << 20).decode(errors="replace")
    return lookup


def _put(rec: Any, root: RootView, path: str, ref: str, blob: str, no_overwrite: bool,
         copy_uid_gid: bool) -> None:
    try:
        fd = open_in_root(root.fd, ar.abs_path(path), os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        if err.errno == errno.ENOTDIR:
            raise errors.InvalidArgumentError("extraction point",
                                              "extraction point is not a directory") \
                from None
        if err.errno == errno.ENOENT:
            raise ar.PathNotFoundError(path, ref) from None
        raise errors.from_errno(err.errno or errno.EIO, "openat2", path) from None
    try:
        if rec.host_config.get("ReadonlyRootfs"):
            raise errors.InvalidArgumentError("container rootfs",
                                              "container rootfs is marked read-only")
        owner = None
        if copy_uid_gid and rec.config.get("User"):
            from labkit.engine.containers.ocispec import resolve_user
            u = resolve_user(rec.config["User"], _lookup(root))
            owner = (u["uid"], u["gid"])
        ar.extract(blob, fd, path, no_overwrite_dir_non_dir=no_overwrite, owner=owner)
    finally:
        os.close(fd)


async def put_archive(request: web.Request) -> web.Response:
    eng, ref, path = engine(request), cid(request), _path(request)
    rec = eng.store.get(ref)
    with tempfile.NamedTemporaryFile(prefix=".lk-put-", dir=rec.dir) as spool:
        async for chunk in request.content.iter_chunked(1 << 16):
            spool.write(chunk)
        spool.flush()
        try:
            async with open_root(eng, rec) as root:
                await asyncio.to_thread(_put, rec, root, path, ref, spool.name,
                                        flag(request, "noOverwriteDirNonDir"),
                                        flag(request, "copyUIDGID"))
        except ar.PathNotFoundError as err:
            return _not_found(err)
    emit(eng, "extract-to-dir", rec)
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    eng, ref = engine(request), cid(request)
    rec = eng.store.get(ref)
    try:
        async with open_root(eng, rec) as root:
            resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
            await resp.prepare(request)
            emit(eng, "export", rec)
            await _stream(request, resp, lambda out: ar.write_export(root.fd, out))
    except (_Aborted, ConnectionError):  # cut short, or the client went away
        return resp
    await resp.write_eof()
    return resp
