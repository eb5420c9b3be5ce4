"""The shim's control protocol: JSON lines over a unix stream socket (shims_dir()/<id>/ctl.sock).

One request per line, one reply per line, in order::

    -> {"op": "start", "exec_id": ""}
    <- {"ok": true, "pid": 4242}
    <- {"ok": false, "error": {"type": "labkit.errors:InvalidStateError",
                               "args": ["running", "running", "container", null],
                               "message": "invalid container state transition ..."}}

Ops (fields beyond "op"): create; start {exec_id}; kill {exec_id, signal, all}; state;
wait {exec_id} (the reply comes when the process exits); exec {exec_id, process, terminal,
stdin}; resize {exec_id, width, height}; close_stdin {exec_id}; pids; stats; pause; resume;
delete {exec_id, force}; shutdown; subscribe (the connection then carries one event per
line, {"topic": "/tasks/exit", ...}, until it closes).

Errors travel as the arguments of the exception's ``__reduce__`` (every labkit error has
one, STYLE C4), so the other side rebuilds the same class with the same fields; only
classes under ``labkit.`` that derive from LabkitError are rebuilt (containerd's
errgrpc ToGRPC/ToNative idea).  The gRPC layer reuses error_to_dict/error_from_dict.
"""

from __future__ import annotations

import errno as _errno
import json
from typing import Any

from labkit import errors

MAX_LINE = 1 << 20  # a request line longer than this is refused (a runaway client)


def encode(msg: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line; InvalidArgumentError unless it is a JSON object."""
    try:
        msg = json.loads(line)
    except ValueError as err:
        raise errors.InvalidArgumentError("shim request", f"not JSON: {err}") from None
    if not isinstance(msg, dict):
        raise errors.InvalidArgumentError("shim request", "not a JSON object")
    return msg


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    """An exception as {"type": "module:Class", "args": [...], "message": str}."""
    if not isinstance(exc, errors.LabkitError):
        if isinstance(exc, OSError) and exc.errno:
            exc = errors.from_errno(exc.errno, exc.strerror or "os", exc.filename)
        else:
            exc = errors.ConflictError(f"{type(exc).__name__}: {exc}")
    cls = type(exc)
    try:
        args = list(exc.__reduce__()[1])
        json.dumps(args)
    except (TypeError, ValueError, IndexError):
        args = []
    return {"type": f"{cls.__module__}:{cls.__qualname__}", "args": args, "message": str(exc),
            "exit_code": getattr(exc, "exit_code", None)}


def error_from_dict(d: dict[str, Any]) -> errors.LabkitError:
    """Rebuild what error_to_dict encoded; a generic ConflictError when the class is unknown."""
    import importlib

    mod, _, name = str(d.get("type", "")).partition(":")
    message = str(d.get("message", "error"))
    cls: Any = None
    if mod.startswith("labkit.") or mod == "labkit":
        try:
            cls = getattr(importlib.import_module(mod), name, None)
        except ImportError:
            cls = None
    if isinstance(cls, type) and issubclass(cls, errors.LabkitError):
        try:
            return cls(*d.get("args") or [])
        except TypeError:
            pass
    exc = errors.ConflictError(message)
    if d.get("exit_code") is not None:
        exc.exit_code = d["exit_code"]  # type: ignore[attr-defined]
    return exc


def reply_error(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": error_to_dict(exc)}


def check_reply(msg: dict[str, Any]) -> dict[str, Any]:
    """Return ``msg`` when ok, else raise the error it carries."""
    if msg.get("ok"):
        return msg
    err = msg.get("error")
    if not isinstance(err, dict):
        raise errors.from_errno(_errno.EPROTO, "shim reply", str(msg)[:200])
    raise error_from_dict(err)
