"""Docker's JSON shapes for containers: inspect, list rows and list filters (pure functions)."""

from __future__ import annotations

import re
import time
from typing import Any

from labkit import errors
from labkit._units import human_duration
from labkit.engine.containers.healthcheck import health_suffix
from labkit.engine.containers.lifecycle import LIVE, State
from labkit.engine.containers.record import ZERO_TIME, ContainerRecord, rfc3339
from labkit.engine.networks.netviews import container_list_settings, container_settings

__all__ = [
    "docker_state",
    "filter_list",
    "human_status",
    "inspect",
    "label_match",
    "parse_filters",
    "parse_until",
    "summary",
]


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """``filters`` query: {"k":{"v":true}} (map of sets) or {"k":["v"]} (older clients)."""
    import json
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise errors.InvalidArgumentError("filters", f"invalid filter: {err}") from None
    except RecursionError:  # a query nested thousands deep: a 400, not the parser's 500
        raise errors.InvalidArgumentError("filters", "invalid filter: nested too deep") from None
    if not isinstance(data, dict):
        raise errors.InvalidArgumentError("filters", "must be a JSON object")
    out: dict[str, list[str]] = {}
    for k, v in data.items():
        out[k] = [x for x, on in v.items() if on] if isinstance(v, dict) else list(v or [])
    return out


def parse_until(v: str | None) -> float | None:
    """Docker time filters: unix seconds, RFC 3339, or a duration like 10m / 1h30m ago."""
    if not v:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    m = re.fullmatch(r"((\d+)h)?((\d+)m)?((\d+)s)?", v)
    if m and any(m.groups()):
        secs = int(m.group(2) or 0) * 3600 + int(m.group(4) or 0) * 60 + int(m.group(6) or 0)
        return time.time() - secs
    from labkit.engine.logs.reader import parse_time
    return parse_time(v) / 1e9


def label_match(labels: dict[str, str], want: list[str], unwanted: list[str] = ()) -> bool:  # type: ignore[assignment]
    def has(spec: str) -> bool:
        k, eq, v = spec.partition("=")
        return k in labels and (not eq or labels[k] == v)
    return all(has(s) for s in want) and not any(has(s) for s in unwanted)


def docker_state(rec: ContainerRecord) -> str:
    """State.Status as Docker shows it: an exited container that never ran is "created"
    (its start failed: moby keeps it created, with the exit code of the failure)."""
    if rec.status is State.EXITED and not rec.has_been_started:
        return str(State.CREATED)
    return str(rec.status)


def human_status(rec: ContainerRecord, now: float | None = None) -> str:
    """`docker ps`'s STATUS column (moby container.State.String)."""
    now = now or time.time()
    if rec.status is State.RUNNING:
        return f"Up {human_duration(now - rec.started_at)}{health_suffix(rec.health)}"
    if rec.status is State.PAUSED:
        return f"Up {human_duration(now - rec.started_at)} (Paused)"
    if rec.status is State.RESTARTING:
        return f"Restarting ({rec.exit_code}) {human_duration(now - rec.finished_at)} ago"
    if rec.status is State.REMOVING:
        return "Removal In Progress"
    if rec.status is State.DEAD:
        return "Dead"
    if rec.status is State.EXITED and rec.has_been_started:
        return f"Exited ({rec.exit_code}) {human_duration(now - rec.finished_at)} ago"
    return "Created"


def _command(rec: ContainerRecord) -> str:
    return " ".join([rec.path, *rec.args])


def _mounts(rec: ContainerRecord) -> list[dict[str, Any]]:
    from labkit.engine.volumes.spec import public
    return [public(m) for m in rec.mounts]


def summary(rec: ContainerRecord, sizes: tuple[int, int] | None = None) -> dict[str, Any]:
    """One GET /containers/json row; ``sizes`` (rw, rootfs) when the client asked size=1."""
    net = rec.host_config.get("NetworkMode") or "default"
    extra = {"SizeRw": sizes[0], "SizeRootFs": sizes[1]} if sizes is not None else {}
    settings, ports = container_list_settings(rec)
    return {**extra,
        "Id": rec.id, "Names": [f"/{rec.name}"], "Image": rec.image, "ImageID": rec.image_id,
        "Command": _command(rec), "Created": int(rec.created),
        "Labels": rec.config.get("Labels") or {},
        "State": docker_state(rec),
        "Status": human_status(rec), "HostConfig": {"NetworkMode": net},
        "NetworkSettings": settings, "Ports": ports, "Mounts": _mounts(rec),
    }


def inspect(rec: ContainerRecord) -> dict[str, Any]:
    """GET /containers/{id}/json in Docker's shape."""
    status = docker_state(rec)
    return {
        "Id": rec.id, "Created": rfc3339(rec.created), "Path": rec.path, "Args": rec.args,
        "State": {
            "Status": status, "Running": rec.status in (State.RUNNING, State.PAUSED),
            "Paused": rec.status is State.PAUSED, "Restarting": rec.status is State.RESTARTING,
            "OOMKilled": rec.oom_killed, "Dead": rec.status is State.DEAD, "Pid": rec.pid,
            "ExitCode": rec.exit_code, "Error": rec.error,
            "StartedAt": rfc3339(rec.started_at) if rec.started_at else ZERO_TIME,
            "FinishedAt": rfc3339(rec.finished_at) if rec.finished_at else ZERO_TIME,
            **({"Health": rec.health} if rec.health else {}),
        },
        "Image": rec.image_id, "ResolvConfPath": f"{rec.dir}/resolv.conf",
        "HostnamePath": f"{rec.dir}/hostname", "HostsPath": f"{rec.dir}/hosts",
        "LogPath": str(rec.log_path), "Name": f"/{rec.name}", "RestartCount": rec.restart_count,
        "Driver": "overlay2", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": None, "HostConfig": rec.host_config,
        "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": f"{rec.dir}/upper",
                                                     "WorkDir": f"{rec.dir}/work",
                                                     "MergedDir": f"{rec.bundle}/rootfs"}},
        "Mounts": _mounts(rec), "Config": rec.config,
        "NetworkSettings": container_settings(rec),
    }


def filter_list(recs: list[ContainerRecord], all_: bool, limit: int,
                filters: dict[str, list[str]]) -> list[ContainerRecord]:
    """GET /containers/json: all, limit, filters id/name/label/status/exited/ancestor/before/since."""
    ids = {r.id: r for r in recs}

    def resolve(ref: str) -> ContainerRecord:
        for r in recs:
            if r.id.startswith(ref) or r.name == ref.lstrip("/"):
                return r
        raise errors.NotFoundError("container", ref)
    before = resolve(filters["before"][0]).created if filters.get("before") else None
    since = resolve(filters["since"][0]).created if filters.get("since") else None
    out = []
    for r in recs:  # newest first
        state = docker_state(r)
        if not all_ and r.status not in LIVE and not (
                filters.get("status") or filters.get("exited")):
            continue
        if filters.get("id") and not any(r.id.startswith(v) for v in filters["id"]):
            continue
        if filters.get("name") and not any(re.search(v.lstrip("/"), r.name)
                                           for v in filters["name"]):
            continue
        if filters.get("status") and state not in filters["status"]:
            continue
        if filters.get("exited") and not (r.status is State.EXITED and r.has_been_started
                                          and str(r.exit_code) in filters["exited"]):
            continue
        if filters.get("ancestor") and not any(
                a in (r.image, r.image_id) or r.image_id.startswith("sha256:" + a)
                or f"{a}:latest" == r.image for a in filters["ancestor"]):
            continue
        if filters.get("health") and (r.health or {}).get("Status", "none") not in filters[
                "health"]:
            continue
        if not label_match(r.config.get("Labels") or {}, filters.get("label", [])):
            continue
        if before is not None and r.created >= before:
            continue
        if since is not None and r.created <= since:
            continue
        out.append(r)
    del ids
    return out[:limit] if limit > 0 else out
