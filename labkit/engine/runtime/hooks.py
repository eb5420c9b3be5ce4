"""OCI hooks: validate config.json "hooks" and run one phase of them (config.md "POSIX-platform
Hooks", runtime.md "Lifecycle").

Where each phase runs (runtime.md steps; runc and crun agree):

* ``prestart`` (deprecated, still run) and ``createRuntime``: during `create`, after the
  namespaces and mounts exist but before pivot_root, by the runtime, in the runtime's
  namespaces (create.py, on init's "H" frame);
* ``createContainer``: right after them, by the container init, in the container's
  namespaces but before pivot_root, so the path resolves in the runtime's filesystem;
* ``startContainer``: during `start`, by the init inside the container just before execve;
  the path resolves in the container's root;
* ``poststart``: by `start` once the program runs, before `start` returns;
* ``poststop``: by `delete` once the container is destroyed.

A failing prestart/createRuntime/createContainer/startContainer hook fails its operation
and the container is destroyed (then poststop runs); poststart and poststop failures only
print a warning and the remaining hooks still run.

Each hook gets the container state (runtime.md "State") as JSON on its stdin, its ``env``
(the runtime's environment when the field is absent, as runc does), ``args`` as argv
(``args[0]`` is argv0; ``[path]`` when absent) and is killed with SIGKILL after ``timeout``
seconds.  Its stdout and stderr go to a memfd whose tail is quoted in the error; the
runtime's other descriptors are close-on-exec (PEP 446, init.py _cloexec_all).

Everything here may run in the container init after pivot_root, where no module can be
imported any more (init.py imports this module at its top): system calls and what is
already loaded only.
"""

from __future__ import annotations

import os
import select
import signal
import sys

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import fastjson

# In the order runtime.md runs them.
PHASES: tuple[str, ...] = ("prestart", "createRuntime", "createContainer", "startContainer",
                           "poststart", "poststop")
# Phases whose failure only warns (runtime.md "Lifecycle" steps 9 and 13).
WARN_ONLY = frozenset({"poststart", "poststop"})
# Every signal a process may catch (SIGKILL and SIGSTOP cannot be changed).
_SIGDEF = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
# How much of a failed hook's output the error quotes.
OUTPUT_TAIL = 2048


class HookError(errors.ConflictError):
    """A hook exited non-zero, could not be executed, or ran past its timeout."""


def validate(raw: Any) -> dict[str, list[dict[str, Any]]]:
    """Check config.json "hooks" field by field; returns it (empty dict when absent).

    Raises InvalidArgumentError naming the field ("hooks.poststop[1].path").
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise errors.InvalidArgumentError("hooks", "must be an object")
    for phase, entries in raw.items():
        if phase not in PHASES:
            raise errors.InvalidArgumentError(
                f"hooks.{phase}", "unknown hook phase", hint=f"one of {', '.join(PHASES)}")
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise errors.InvalidArgumentError(f"hooks.{phase}", "must be an array")
        for i, h in enumerate(entries):
            w = f"hooks.{phase}[{i}]"
            if not isinstance(h, dict):
                raise errors.InvalidArgumentError(w, "must be an object")
            path = h.get("path")
            if not isinstance(path, str) or not path:
                raise errors.InvalidArgumentError(f"{w}.path", "is required (a string)")
            if not path.startswith("/"):
                # config.md: "path MUST be absolute".
                raise errors.InvalidArgumentError(f"{w}.path", f"{path!r} must be an absolute path")
            for key in ("args", "env"):
                val = h.get(key)
                if val is None:
                    continue
                if not isinstance(val, list) or not all(isinstance(s, str) for s in val):
                    raise errors.InvalidArgumentError(f"{w}.{key}", "must be an array of strings")
                if any("\0" in s for s in val):
                    raise errors.InvalidArgumentError(f"{w}.{key}", "must not contain NUL bytes")
            t = h.get("timeout")
            if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t <= 0):
                # config.md: "If set, timeout MUST be greater than zero."
                raise errors.InvalidArgumentError(f"{w}.timeout", "must be an integer above zero")
    return raw


def has(hooks: dict[str, Any] | None, *phases: str) -> bool:
    """True when ``hooks`` lists at least one hook in any of ``phases``."""
    return bool(hooks) and any(hooks.get(p) for p in phases)  # type: ignore[union-attr]


def _env(hook: dict[str, Any]) -> dict[str, str]:
    env = hook.get("env")
    if env is None:
        return dict(os.environ)
    return dict(kv.split("=", 1) for kv in env if "=" in kv)


def _tail(fd: int) -> str:
    size = os.fstat(fd).st_size
    data = os.pread(fd, OUTPUT_TAIL, max(0, size - OUTPUT_TAIL))
    return data.decode("utf-8", "replace").strip()


def run_one(hook: dict[str, Any], what: str, state: bytes) -> None:
    """Run one hook with ``state`` (JSON) on its stdin; raise HookError when it fails."""
    path = hook["path"]
    args = list(hook.get("args") or []) or [path]
    env = _env(hook)
    timeout = hook.get("timeout")
    stdin = os.memfd_create("lk-hook-state", os.MFD_CLOEXEC)
    out = os.memfd_create("lk-hook-output", os.MFD_CLOEXEC)
    try:
        os.write(stdin, state)
        os.lseek(stdin, 0, os.SEEK_SET)
        # posix_spawn(3), not fork: the caller may be a threaded process (the supervisor
        # calls delete() in-process), where only async-signal-safe code may run between
        # fork and exec.  Signals back to SIG_DFL and unblocked: the runtime (Python)
        # ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve (signal(7)).
        pid = os.posix_spawn(path, args, env, setsigmask=(), setsigdef=_SIGDEF, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, out, 2)])
        _wait(pid, what, path, timeout, out)
    finally:
        os.close(stdin)
        os.close(out)


def _wait(pid: int, what: str, path: str, timeout: int | None, out: int) -> None:
    pidfd = os.pidfd_open(pid)
    try:
        # A pidfd is readable once the process exits (pidfd_open(2)).
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        # Our own unreaped child: the pid cannot have been recycled.
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise HookError(f"{what} ({path}) killed after its timeout of {timeout}s",
                        hint="raise the hook's timeout or make it finish sooner")
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        output = _tail(out)
        raise HookError(f"{what} ({path}) failed: {how}" + (f": {output}" if output else ""))


def run_phase(hooks: dict[str, Any] | None, phase: str, state: bytes) -> None:
    """Run every hook of ``phase`` in order.

    A failure raises HookError for the phases that fail their operation; for poststart and
    poststop it prints a warning on stderr and the next hook still runs.
    """
    for i, hook in enumerate((hooks or {}).get(phase) or []):
        what = f"hooks.{phase}[{i}]"
        try:
            run_one(hook, what, state)
        except HookError as exc:
            if phase not in WARN_ONLY:
                raise
            print(f"labkit-runtime: warning: {exc}", file=sys.stderr)
        except OSError as exc:  # posix_spawn (exec) or memfd refused: it could not run
            if phase not in WARN_ONLY:
                raise HookError(f"{what} ({hook['path']}) could not run: {exc}") from None
            print(f"labkit-runtime: warning: {what}: {exc}", file=sys.stderr)


def state_json(state: dict[str, Any], status: str | None = None) -> bytes:
    """The OCI state (runtime.md "State") as the bytes a hook reads; ``status`` overrides."""
    if status is not None:
        state = dict(state, status=status)
    return fastjson.dumps(state).encode()


def from_state_dir(sdir: str) -> dict[str, Any]:
    """The hooks of the config.json copy `create` left in a container's state directory."""
    from labkit.engine.runtime.state import CONFIG_COPY

    try:
        with open(os.path.join(sdir, CONFIG_COPY), "rb") as f:
            raw = fastjson.loads(f.read(), what=os.path.join(sdir, CONFIG_COPY))
    except FileNotFoundError:
        return {}
    hooks = raw.get("hooks") if isinstance(raw, dict) else None
    return hooks if isinstance(hooks, dict) else {}
