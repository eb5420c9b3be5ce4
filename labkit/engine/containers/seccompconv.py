"""A Docker seccomp profile (`--security-opt seccomp=profile.json`) -> OCI linux.seccomp.

The Docker CLI reads the file and sends its *contents* in SecurityOpt ("seccomp=<json>").
Docker's format is OCI's plus a few keys the daemon resolves for the container at hand
(moby profiles/seccomp setupSeccomp): ``archMap`` (the native architecture and its
sub-architectures), a rule's deprecated single ``name``, and ``includes``/``excludes``
filters on capabilities (of the bounding set), architectures (Go's names, "amd64") and
kernel version (``minKernel``).  What is left is plain config-linux.md "Seccomp", which
labkit-runtime compiles (labkit.engine.runtime.seccomp).
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any

from labkit import errors

__all__ = ["parse_profile", "to_oci"]

# uname machine -> (libseccomp architecture, Go GOARCH)
_ARCH = {"x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
         "i686": ("SCMP_ARCH_X86", "386"), "armv7l": ("SCMP_ARCH_ARM", "arm"),
         "s390x": ("SCMP_ARCH_S390X", "s390x"), "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
         "riscv64": ("SCMP_ARCH_RISCV64", "riscv64")}


def _bad(problem: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError("SecurityOpt seccomp", problem)


def parse_profile(text: str) -> dict[str, Any]:
    """The profile as an object; 400 ("Decoding seccomp profile failed") when it is not one."""
    try:
        prof = json.loads(text)
    except ValueError as err:
        raise _bad(f"Decoding seccomp profile failed: {err}") from None
    except RecursionError:  # a hostile profile nested past the interpreter's stack
        raise _bad("Decoding seccomp profile failed: nested too deeply") from None
    if not isinstance(prof, dict):
        raise _bad("Decoding seccomp profile failed: not a JSON object")
    if not isinstance(prof.get("defaultAction"), str) or not prof["defaultAction"]:
        raise _bad("the seccomp profile has no defaultAction")
    if prof.get("architectures") and prof.get("archMap"):
        raise _bad("both 'architectures' and 'archMap' are specified in the seccomp profile, "
                   "use either 'architectures' or 'archMap'")
    for i, call in enumerate(prof.get("syscalls") or []):
        if not isinstance(call, dict):
            raise _bad(f"syscalls[{i}] must be an object")
        if call.get("name") and call.get("names"):
            raise _bad("syscall names and name cannot both be specified")
        for key in ("includes", "excludes"):
            if not isinstance(call.get(key) or {}, dict):
                raise _bad(f"syscalls[{i}].{key} must be an object")
    return prof


def _kernel_at_least(want: str, have: str) -> bool:
    def nums(v: str) -> tuple[int, ...]:
        out = []
        for part in v.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in part if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return nums(have) >= nums(want)


def _matches(flt: dict[str, Any], caps: list[str], goarch: str, kernel: str,
             include: bool) -> bool:
    """Whether an includes (all must hold) / excludes (any holds) filter matches."""
    checks = []
    if flt.get("arches"):
        checks.append(goarch in flt["arches"])
    if flt.get("caps"):
        have = [c in caps for c in flt["caps"]]
        checks.append(all(have) if include else any(have))
    if flt.get("minKernel"):
        checks.append(_kernel_at_least(str(flt["minKernel"]), kernel))
    return all(checks) if include else any(checks)


def to_oci(prof: dict[str, Any], caps: list[str], machine: str | None = None,
           kernel: str | None = None) -> dict[str, Any]:
    """Resolve ``prof`` for a container whose bounding set is ``caps``."""
    machine = machine or platform.machine()
    kernel = kernel or os.uname().release
    scmp, goarch = _ARCH.get(machine, (f"SCMP_ARCH_{machine.upper()}", machine))
    out: dict[str, Any] = {"defaultAction": prof["defaultAction"]}
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if prof.get(key) is not None:
            out[key] = prof[key]
    arches = list(prof.get("architectures") or [])
    for ent in prof.get("archMap") or []:
        if isinstance(ent, dict) and ent.get("architecture") == scmp:
            arches = [scmp, *(ent.get("subArchitectures") or [])]
    if arches:
        out["architectures"] = arches
    rules = []
    for call in prof.get("syscalls") or []:
        exc, inc = call.get("excludes") or {}, call.get("includes") or {}
        if exc and _matches(exc, caps, goarch, kernel, include=False):
            continue
        if inc and not _matches(inc, caps, goarch, kernel, include=True):
            continue
        rule: dict[str, Any] = {"names": call.get("names") or [call.get("name")],
                                "action": call.get("action")}
        for key in ("errnoRet", "args"):
            if call.get(key) is not None:
                rule[key] = call[key]
        rules.append(rule)
    out["syscalls"] = rules
    return out
