"""The shim's control protocol codec: JSON lines, typed errors across the socket."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.runtime.process import ExecutableNotFoundError
from labkit.engine.shim.protocol import (
    check_reply,
    decode,
    encode,
    error_from_dict,
    error_to_dict,
    reply_error,
)


def test_encode_decode_roundtrip() -> None:
    line = encode({"op": "kill", "signal": 9, "exec_id": ""})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == {"op": "kill", "signal": 9, "exec_id": ""}


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]", b'"op"'])
def test_decode_refuses_non_objects(bad: bytes) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="shim request"):
        decode(bad)


@pytest.mark.parametrize("exc", [
    errors.NotFoundError("container", "lk-x", hint="h"),
    errors.AlreadyExistsError("exec", "e1"),
    errors.InvalidStateError("stopped", "running", "container"),
    errors.ConflictError("busy"),
    errors.InvalidArgumentError("process", "needs args"),
    errors.UnsupportedError("freezer", "no cgroup", "use the VM"),
    errors.from_errno(2, "open", "/x"),
    ExecutableNotFoundError("nosuch"),
])
def test_errors_cross_as_the_same_class_and_fields(exc: Exception) -> None:
    back = error_from_dict(error_to_dict(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.__reduce__() == exc.__reduce__()  # type: ignore[comparison-overlap]


def test_executable_not_found_keeps_exit_code_127() -> None:
    back = error_from_dict(error_to_dict(ExecutableNotFoundError("nosuch")))
    assert back.exit_code == 127
    assert "executable file not found" in str(back)


def test_foreign_exceptions_become_typed() -> None:
    d = error_to_dict(ValueError("boom"))
    assert d["type"] == "labkit.errors:ConflictError"
    assert isinstance(error_from_dict(d), errors.ConflictError)
    d = error_to_dict(PermissionError(1, "Operation not permitted"))
    assert isinstance(error_from_dict(d), errors.SyscallPermissionError)


def test_unknown_or_foreign_classes_are_not_imported() -> None:
    # only labkit.* LabkitError subclasses are rebuilt; anything else is a generic error
    for t in ("os:system", "subprocess:Popen", "labkit.errors:HINTS", "labkit.nosuch:X"):
        back = error_from_dict({"type": t, "args": ["echo hi"], "message": "m", "exit_code": 3})
        assert type(back) is errors.ConflictError and str(back) == "m"
        assert back.exit_code == 3


def test_wrong_args_fall_back_to_message() -> None:
    back = error_from_dict({"type": "labkit.errors:NotFoundError", "args": [1, 2, 3, 4, 5],
                            "message": "no such thing"})
    assert isinstance(back, errors.ConflictError) and str(back) == "no such thing"


def test_check_reply() -> None:
    assert check_reply({"ok": True, "pid": 3}) == {"ok": True, "pid": 3}
    with pytest.raises(errors.InvalidStateError):
        check_reply(reply_error(errors.InvalidStateError("a", "b")))
    with pytest.raises(errors.SyscallError):
        check_reply({"ok": False})
