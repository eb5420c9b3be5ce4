"""The one table between labkit errors and gRPC status codes (containerd's errgrpc).

Server side, to_grpc(exc) gives the status code, the message and trailing metadata that
carries the exact class and its constructor arguments ("lk-error": protocol.error_to_dict);
client side, to_native(rpc_error) rebuilds that class, or, for a peer that sent no
metadata, the class the status code stands for.  So the daemon catches the same
NotFoundError the shim raised, three processes away.
"""

from __future__ import annotations

import errno
import json
from typing import Any

import grpc

from labkit import errors
from labkit.engine.shim.protocol import error_from_dict, error_to_dict

METADATA_KEY = "lk-error"

# Most specific first: the first class the error is an instance of decides the code.
STATUS: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.InvalidStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UnsupportedError, grpc.StatusCode.UNIMPLEMENTED),
)

# code -> class, for errors that arrive without metadata (ToNative's fallback).
NATIVE: dict[grpc.StatusCode, type[errors.LabkitError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.ConflictError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgumentError,
    grpc.StatusCode.UNIMPLEMENTED: errors.UnsupportedError,
}


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for ``exc`` (UNKNOWN for anything not in STATUS)."""
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def to_grpc(exc: BaseException) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """(code, details, trailing metadata) for a server to abort with."""
    return code_for(exc), str(exc), ((METADATA_KEY, json.dumps(error_to_dict(exc))),)


def _bare(cls: type[errors.LabkitError], message: str) -> errors.LabkitError:
    # Build the class without its constructor's fields: only the code and text arrived.
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.hint = None
    return exc


def to_native(err: grpc.RpcError, target: str = "supervisor") -> Exception:
    """The labkit error behind ``err`` (a grpc.RpcError from a call)."""
    code: Any = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    meta = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in meta or ():
        if key == METADATA_KEY:
            try:
                return error_from_dict(json.loads(value))
            except ValueError:
                break
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.from_errno(errno.ECONNREFUSED, "connect", target,
                                 hint="is labkit-supervisor running? (python -m labkit.engine.supervisor)")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.from_errno(errno.ETIMEDOUT, "call", target)
    cls = NATIVE.get(code)
    if cls is not None:
        return _bare(cls, details or str(code))
    return _bare(errors.LabkitError, f"{code}: {details}")
