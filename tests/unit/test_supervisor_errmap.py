"""The error <-> gRPC status table, both ways (containerd's ToGRPC / ToNative)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from labkit import errors
from labkit.engine.runtime.process import ExecutableNotFoundError
from labkit.engine.supervisor.errmap import METADATA_KEY, code_for, to_grpc, to_native

C = grpc.StatusCode


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: Any, details: str, meta: Any = ()) -> None:
        self._c, self._d, self._m = code, details, meta

    def code(self) -> Any:
        return self._c

    def details(self) -> str:
        return self._d

    def trailing_metadata(self) -> Any:
        return self._m


@pytest.mark.parametrize(("exc", "code"), [
    (errors.NotFoundError("task", "x"), C.NOT_FOUND),
    (ExecutableNotFoundError("x"), C.NOT_FOUND),
    (errors.AlreadyExistsError("task", "x"), C.ALREADY_EXISTS),
    (errors.InvalidStateError("a", "b"), C.FAILED_PRECONDITION),
    (errors.ConflictError("c"), C.FAILED_PRECONDITION),
    (errors.InvalidArgumentError("w", "p"), C.INVALID_ARGUMENT),
    (errors.UnsupportedError("f", "r"), C.UNIMPLEMENTED),
    (errors.from_errno(1, "mount", "/x"), C.UNKNOWN),
    (RuntimeError("x"), C.UNKNOWN),
])
def test_table(exc: Exception, code: grpc.StatusCode) -> None:
    assert code_for(exc) == code
    c, msg, md = to_grpc(exc)
    assert c == code and msg == str(exc) and md[0][0] == METADATA_KEY


@pytest.mark.parametrize("exc", [errors.NotFoundError("task", "x"),
                                 errors.InvalidStateError("stopped", "paused"),
                                 ExecutableNotFoundError("nosuch")])
def test_roundtrip_through_metadata(exc: Exception) -> None:
    code, msg, md = to_grpc(exc)
    back = to_native(FakeRpcError(code, msg, md))
    assert type(back) is type(exc) and str(back) == str(exc)


@pytest.mark.parametrize(("code", "cls"), [
    (C.NOT_FOUND, errors.NotFoundError), (C.ALREADY_EXISTS, errors.AlreadyExistsError),
    (C.FAILED_PRECONDITION, errors.ConflictError),
    (C.INVALID_ARGUMENT, errors.InvalidArgumentError), (C.UNIMPLEMENTED, errors.UnsupportedError),
])
def test_fallback_by_code_without_metadata(code: grpc.StatusCode, cls: type) -> None:
    back = to_native(FakeRpcError(code, "what the peer said"))
    assert isinstance(back, cls) and str(back) == "what the peer said"


def test_unavailable_is_connection_refused_with_hint() -> None:
    back = to_native(FakeRpcError(C.UNAVAILABLE, "connect failed"), "/run/x.sock")
    assert isinstance(back, errors.SyscallError) and back.errno == 111
    assert "labkit-supervisor" in (back.hint or "")


def test_garbage_metadata_falls_back() -> None:
    back = to_native(FakeRpcError(C.NOT_FOUND, "gone", ((METADATA_KEY, "{not json"),)))
    assert isinstance(back, errors.NotFoundError)
