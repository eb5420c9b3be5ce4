"""The container process's own attributes: rlimits, user, capabilities, no_new_privs, seccomp.

Runs in the container init after pivot_root, in runc's order (standard_init_linux.go and
finalizeNamespace): rlimits and oom_score_adj while still fully privileged; the bounding set
is dropped while CAP_SETPCAP is still effective; PR_SET_KEEPCAPS keeps the permitted set
across setuid; capset() then installs the configured sets; no_new_privs; seccomp last, so
that every call above is still allowed (or, when noNewPrivileges is false, before the user
switch while CAP_SYS_ADMIN is still there, as seccomp(2) demands without no_new_privs).
"""

from __future__ import annotations

import errno
import os
import resource  # imported here, not lazily: init runs after pivot_root, without our files

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import caps as capsmod
from labkit._sys import consts, syscalls

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecutableNotFoundError(errors.NotFoundError):
    """process.args[0] is not in the rootfs: exit status 127, Docker's wording."""

    exit_code = 127

    def __init__(self, name: str, reason: str = "executable file not found in $PATH",
                 hint: str | None = None) -> None:
        super().__init__("executable", name, hint)
        self.reason = reason
        self.args = (f'exec: "{name}": {reason}',)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.name, self.reason, self.hint))


class ExecutablePermissionError(ExecutableNotFoundError):
    """process.args[0] exists but cannot be executed: exit status 126 (Docker, POSIX sh)."""

    exit_code = 126


def set_rlimits(rlimits: list[dict[str, Any]]) -> None:
    """setrlimit(2) each process.rlimits entry, with an error that says what to do."""
    for rl in rlimits:
        typ, soft, hard = rl["type"], rl["soft"], rl["hard"]
        which = getattr(resource, typ)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            cur = resource.getrlimit(which)[1]
            # Python reports EPERM from setrlimit as ValueError("not allowed to raise ...").
            raise errors.from_errno(
                errno.EPERM, "setrlimit", f"{typ} soft={soft} hard={hard}",
                hint=(f"raising the hard limit above {cur} needs CAP_SYS_RESOURCE, which the "
                      f"runtime does not have here: use hard <= {cur}")) from None


def set_oom_score_adj(value: int) -> None:
    """proc(5) /proc/self/oom_score_adj; lowering it needs CAP_SYS_RESOURCE."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, "write oom_score_adj", str(value),
                                hint="lowering oom_score_adj needs CAP_SYS_RESOURCE") from None


def _cap_sets(p: dict[str, Any], available: int) -> dict[str, int]:
    c = p.get("capabilities") or {}
    return {k: capsmod.mask(c.get(k) or [], f"process.capabilities.{k}") & available
            for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}


def switch_user(p: dict[str, Any], in_userns: bool) -> None:
    """Drop the bounding set, setgroups/setresgid/setresuid, capset, ambient; then umask."""
    user = p.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    available = capsmod.bounding_set()
    sets = _cap_sets(p, available)
    capsmod.drop_bounding(sets["bounding"])
    # capabilities(7): without KEEPCAPS, leaving uid 0 clears the permitted set.
    syscalls.prctl(consts.PR_SET_KEEPCAPS, 1)
    groups = user.get("additionalGids") or []
    try:
        os.setgroups(groups)
    except OSError as err:
        # A user namespace whose setgroups is "deny" cannot call it at all; fine if empty.
        if groups or not in_userns:
            raise errors.from_errno(err.errno or errno.EPERM, "setgroups", str(groups)) from None
    for fn, name, ident in ((os.setresgid, "setresgid", gid), (os.setresuid, "setresuid", uid)):
        try:
            fn(ident, ident, ident)
        except OSError as err:
            raise errors.from_errno(
                err.errno or errno.EPERM, name, str(ident),
                hint="the id must be mapped in the container's user namespace"
                if in_userns else None) from None
    syscalls.prctl(consts.PR_SET_KEEPCAPS, 0)
    capsmod.apply(sets["effective"], sets["permitted"], sets["inheritable"], sets["ambient"])
    os.umask(user.get("umask", 0o022))


def lookup(args0: str, env: list[str], cwd: str) -> str:
    """The file execve(2) will run: args[0] itself when it has a "/", else a PATH search.

    PATH comes from process.env (as runc does), not from the runtime's own environment.
    Raises ExecutableNotFoundError (127) or ExecutablePermissionError (126).
    """
    if "/" in args0:
        path = args0 if args0.startswith("/") else os.path.join(cwd, args0)
        if not os.path.exists(path):
            raise ExecutableNotFoundError(args0, "no such file or directory")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise ExecutablePermissionError(args0, "permission denied")
        return path
    search = DEFAULT_PATH
    for kv in env:
        if kv.startswith("PATH="):
            search = kv[5:]
    denied = False
    for d in search.split(":"):
        cand = os.path.join(d or ".", args0)
        if os.path.isfile(cand):
            if os.access(cand, os.X_OK):
                return cand
            denied = True
    if denied:
        raise ExecutablePermissionError(args0, "permission denied")
    raise ExecutableNotFoundError(args0)


def no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): execve can no longer grant privileges (setuid bits, fcaps)."""
    syscalls.prctl(consts.PR_SET_NO_NEW_PRIVS, 1)
