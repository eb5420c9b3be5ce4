"""``docker commit``: a container's upper dir becomes one more layer of its image.

The new config is the image's, with the container's run config (Cmd, Entrypoint, Env,
WorkingDir, User, Labels, ExposedPorts...) merged over it, then the request's ``changes``
(Dockerfile instructions: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE; others refused
by name, images/archive.parse_changes).  A running container is paused while its upper dir
is read (``pause``, default true, as Docker), so the layer is one consistent moment; with
pause=false the read still never follows a path the container swaps (images/diff.py).
The runtime's bind-mount points (/etc/hosts, /etc/hostname, /etc/resolv.conf) are left out,
as Docker's init layer keeps them out.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.build import layerstore as L
from labkit.engine.containers.lifecycle import State
from labkit.engine.images.archive import parse_changes
from labkit.engine.images.store import ImageStore

__all__ = ["commit_container"]

_RUN_KEYS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "ExposedPorts",
             "Volumes", "StopSignal", "Healthcheck", "Shell", "OnBuild")
_RUNTIME_FILES = frozenset({"etc/hosts", "etc/hostname", "etc/resolv.conf"})


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_SHAPES: dict[str, Callable[[Any], bool]] = {"Cmd": _strings, "Entrypoint": _strings, "Shell": _strings, "Env": _strings,
           "OnBuild": _strings, "WorkingDir": lambda v: isinstance(v, str),
           "User": lambda v: isinstance(v, str), "StopSignal": lambda v: isinstance(v, str),
           "Labels": lambda v: isinstance(v, dict) and all(
               isinstance(a, str) and isinstance(b, str) for a, b in v.items()),
           "ExposedPorts": lambda v: isinstance(v, dict), "Volumes": lambda v: isinstance(v, dict),
           "Healthcheck": lambda v: isinstance(v, dict)}


def _checked(key: str, value: Any) -> Any:
    """A request-body config field, refused unless it has the shape Docker gives it (the
    image config is later read by create and inspect, which must not meet a surprise)."""
    if not _SHAPES[key](value):
        raise errors.InvalidArgumentError(key, f"{value!r} does not have the shape of "
                                          f"Config.{key}")
    if key == "OnBuild":
        raise errors.UnsupportedError("Config.OnBuild", "ONBUILD triggers are not run by "
                                      "labkit's builder, so commit does not record them")
    return copy.deepcopy(value)


def _layer_of(store: ImageStore, upper: Path) -> str:
    """The container's changes as a layer; a container never started has no upper dir
    yet: its layer is empty (as Docker commits an empty diff)."""
    if upper.is_dir():
        return L.commit_layer(store, upper, _RUNTIME_FILES)[0]
    with store.staging() as tmp:
        empty = Path(tmp) / "empty"
        empty.mkdir(mode=0o755)
        return L.commit_layer(store, empty)[0]


async def commit_container(eng: Any, ref: str, tag: str | None, *, comment: str = "",
                           author: str = "", changes: Sequence[str] = (), pause: bool = True,
                           overrides: dict[str, Any] | None = None) -> str:
    """Commit the container ``ref``; returns the new image ID."""
    rec = eng.store.get(ref)
    image = eng.images.for_container(rec.image_id)  # also after rmi -f (held)
    run_cfg = copy.deepcopy(image.container_config)
    for k in _RUN_KEYS:
        if rec.config.get(k) is not None:
            run_cfg[k] = copy.deepcopy(rec.config[k])
    run_cfg.get("Labels", {}).pop("labkit.build.step", None)
    for k, v in (overrides or {}).items():
        if k in _RUN_KEYS and v:
            run_cfg[k] = _checked(k, v)
    parse_changes(changes, run_cfg)  # refuses what it does not apply, before any work
    paused = False
    if pause and rec.status is State.RUNNING:
        await eng.control.pause(rec.id)
        paused = True
    try:
        diff_id = await asyncio.to_thread(_layer_of, eng.images, Path(rec.dir) / "upper")
    finally:
        if paused:
            await eng.control.unpause(rec.id)
    config = copy.deepcopy(image.config)
    config.pop("labkit", None)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config.update({"created": now, "config": run_cfg, "container": rec.id})
    if comment:
        config["comment"] = comment
    if author:
        config["author"] = author
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
    entry = {"created": now, "created_by": " ".join([rec.path, *rec.args])}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    config.setdefault("history", []).append(entry)
    img = await asyncio.to_thread(eng.images.add_raw, L.config_bytes(config),
                                  [tag] if tag else [])
    return str(img.id)
