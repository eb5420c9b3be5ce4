"""``POST /build`` query parameters, checked: each one is applied or refused by name.

Applied: t, dockerfile, buildargs, nocache, rm, forcerm, q, labels, target, networkmode
(default and none: RUN has no network until labkit has networks), platform (the host's),
and the resource limits of the RUN containers (memory, memswap, cpushares, cpusetcpus,
cpusetmems, cpuperiod, cpuquota).  Refused by name: everything BuildKit or the remote
context needs (remote, session, outputs, cachefrom, squash, pull=1 ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit.engine.images.archive import host_arch
from labkit.engine.images.store import normalize_ref

__all__ = ["BuildOptions", "parse_options"]

_TRUE = ("1", "true", "True")
_LIMITS = {"memory": "Memory", "memswap": "MemorySwap", "cpushares": "CpuShares",
           "cpusetcpus": "CpusetCpus", "cpusetmems": "CpusetMems", "cpuperiod": "CpuPeriod",
           "cpuquota": "CpuQuota"}
_REFUSED = ("remote", "session", "outputs", "cachefrom", "squash", "extrahosts", "shmsize",
            "ulimits", "cgroupparent", "isolation", "securityopt", "upgrade")
# what the CLI always sends with its zero value: accepted only with that value
_ZERO = {"cgroupparent": "", "shmsize": "0", "isolation": "", "extrahosts": "",
         "squash": "", "cachefrom": "[]", "ulimits": "null", "session": "", "remote": "",
         "securityopt": "", "outputs": "", "upgrade": ""}


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    buildargs: dict[str, str] = field(default_factory=dict)
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    quiet: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    host: dict[str, Any] = field(default_factory=dict)  # HostConfig limits for RUN


def _json_map(name: str, raw: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        v = json.loads(raw)
    except ValueError:
        raise errors.InvalidArgumentError(name, f"{raw!r} is not JSON") from None
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise errors.InvalidArgumentError(name, "must be a JSON object of strings")
    # buildargs may carry null: "--build-arg FOO" with FOO unset in the CLI's env
    return {k: ("" if x is None else str(x)) for k, x in v.items()}


_KNOWN = frozenset({"t", "dockerfile", "buildargs", "nocache", "rm", "forcerm", "q", "labels",
                    "target", "pull", "platform", "networkmode", "version"}) | set(_LIMITS) | \
    set(_REFUSED)


def parse_options(query: Mapping[str, str], multi: list[tuple[str, str]]) -> BuildOptions:
    """The query of ``POST /build`` (``multi``: every key/value, for repeated ``t``).
    A parameter this builder does not know is refused by name, never ignored."""
    o = BuildOptions()
    for key, value in multi:
        if key not in _KNOWN:
            raise errors.UnsupportedError(f"build option {key}", f"{key}={value!r} is not "
                                          "known to labkit's classic builder",
                                          hint=f"drop {key}")
        if key == "version" and value not in ("", "1"):
            raise errors.UnsupportedError("build option version", f"builder version {value!r} "
                                          "(BuildKit): labkit has the classic builder only",
                                          hint="DOCKER_BUILDKIT=0")
        if key == "t":
            if value:
                o.tags.append(normalize_ref(value))
        elif key in _REFUSED and value not in (_ZERO.get(key), "", "0", "false"):
            raise errors.UnsupportedError(f"build option {key}", f"{key}={value!r} is not "
                                          "offered by labkit's classic builder",
                                          hint=f"drop {key}")
    o.dockerfile = query.get("dockerfile") or "Dockerfile"
    o.buildargs = _json_map("buildargs", query.get("buildargs", ""))
    o.labels = _json_map("labels", query.get("labels", ""))
    o.nocache = query.get("nocache", "") in _TRUE
    o.rm = query.get("rm", "1") in _TRUE
    o.forcerm = query.get("forcerm", "") in _TRUE
    o.quiet = query.get("q", "") in _TRUE
    o.target = query.get("target", "")
    if query.get("pull", "") not in ("", "0", "false", "False"):
        raise errors.UnsupportedError(
            "build option pull", "pull=1 would fetch the FROM image from a registry; the "
            "builder uses images already in the store", hint="docker pull first, then build")
    plat = query.get("platform", "")
    if plat and plat not in (f"linux/{host_arch()}", "linux"):
        raise errors.UnsupportedError("build option platform", f"{plat!r}: only the host's "
                                      f"platform linux/{host_arch()} is built")
    net = query.get("networkmode", "") or "default"
    if net not in ("default", "none"):
        raise errors.UnsupportedError("build option networkmode", f"{net!r}: RUN steps have "
                                      "no network (labkit has no networks yet)",
                                      hint="use --network none or the default")
    for key, host_key in _LIMITS.items():
        raw = query.get(key, "")
        if raw in ("", "0") and key not in ("cpusetcpus", "cpusetmems"):
            continue
        if not raw:
            continue
        if key in ("cpusetcpus", "cpusetmems"):
            o.host[host_key] = raw
        else:
            try:
                o.host[host_key] = int(raw)
            except ValueError:
                raise errors.InvalidArgumentError(key, f"{raw!r} is not an integer") from None
    return o
