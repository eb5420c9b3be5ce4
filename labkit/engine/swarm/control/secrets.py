"""Secrets and configs (moby daemon/cluster/secrets.go, configs.go; swarmkit controlapi
secret.go, config.go): create, list, inspect, update (labels only), remove.

One module for both: they differ in the size limit, the name of the kind, and whether the
data is ever shown (a config's is, in Spec.Data; a secret's never leaves the managers: the
store keeps it as ``_Data`` and the dispatcher hands it only to nodes running a task that
references it).  A secret or config referenced by a service cannot be removed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Any

from labkit import errors
from labkit.engine.swarm import ca, objects
from labkit.engine.swarm.control.common import (
    Obj,
    Store,
    check_filters,
    find,
    labels_match,
    name_key,
    obj,
    strmap,
    text,
    unknown,
)
from labkit.engine.swarm.store import CONFIGS, SECRETS, SERVICES

__all__ = ["FILTERS", "KINDS", "create", "get", "inspect", "list_", "remove", "update"]

FILTERS = ("id", "label", "name", "names")
# swarmkit api/validation: MaxSecretSize 500 KiB, MaxConfigSize 1000 KiB
KINDS: dict[str, tuple[str, int]] = {"secret": (SECRETS, 500 * 1024),
                                     "config": (CONFIGS, 1000 * 1024)}
_NAME = re.compile(r"[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?")


def _decode(kind: str, data: Any) -> bytes:
    if not isinstance(data, str):
        raise errors.InvalidArgumentError("Data", f"{kind} Data must be base64 text")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidArgumentError("Data", f"{kind} Data is not valid base64") from None
    limit = KINDS[kind][1]
    if not 0 < len(raw) <= limit:  # swarmkit validateSecretSpec's words
        raise errors.InvalidArgumentError(
            kind, f"rpc error: code = InvalidArgument desc = {kind} data must be larger than "
                  f"0 and less than {limit // 1024}KB")
    return raw


async def create(store: Store, kind: str, body: Any) -> str:
    """POST /secrets/create, /configs/create: the new id."""
    prefix = KINDS[kind][0]
    d = obj(body, "request body")
    refused = ("Driver", "Templating")
    unknown(d, "", ("Name", "Labels", "Data"), refused)
    name = text(d, "Name", "")
    if not name or len(name) > 64 or not _NAME.fullmatch(name):
        raise errors.InvalidArgumentError(
            "Name", f"rpc error: code = InvalidArgument desc = invalid name, only 64 "
                    f"[a-zA-Z0-9-_.] characters allowed, and the start and end character must "
                    f"be [a-zA-Z0-9] (Name {name!r})")
    data = base64.b64encode(_decode(kind, d.get("Data"))).decode()
    labels = strmap(d.get("Labels"), "Labels")
    new_id, t = ca.new_id(), objects.now()
    try:
        await store.create(name_key(kind + "s", name), {"ID": new_id})
    except errors.AlreadyExistsError:
        raise errors.ConflictError(f"rpc error: code = AlreadyExists desc = {kind} {name} "
                                   "already exists") from None
    spec: Obj = {"Name": name, "Labels": labels}
    item: Obj = {"ID": new_id, "CreatedAt": t, "UpdatedAt": t, "Spec": spec}
    if kind == "secret":
        item["_Data"] = data
    else:
        spec["Data"] = data
    try:
        await store.create(prefix + new_id, item)
    except BaseException:
        await store.delete(name_key(kind + "s", name))
        raise
    return new_id


async def get(store: Store, kind: str, ref: str) -> tuple[Obj, int]:
    return await find(store, KINDS[kind][0], ref, kind, lambda o: str(o["Spec"]["Name"]))


async def inspect(store: Store, kind: str, ref: str) -> Obj:
    item, version = await get(store, kind, ref)
    return objects.render_secret(item, version)


async def list_(store: Store, kind: str, filters: dict[str, list[str]]) -> list[Obj]:
    """``names`` exact, ``name`` and ``id`` prefixes, ``label`` key or key=value (moby
    daemon/cluster/filters.go newListSecretsFilters)."""
    check_filters(filters, FILTERS)
    out = []
    for item, version in await store.list(KINDS[kind][0]):
        name, labels = item["Spec"]["Name"], item["Spec"].get("Labels") or {}
        if filters.get("names") and name not in filters["names"]:
            continue
        if filters.get("name") and not any(name.startswith(v) for v in filters["name"]):
            continue
        if filters.get("id") and not any(item["ID"].startswith(v) for v in filters["id"]):
            continue
        if filters.get("label") and not labels_match(labels, filters["label"]):
            continue
        out.append(objects.render_secret(item, version))
    return out


async def update(store: Store, kind: str, ref: str, version: int, body: Any) -> None:
    """POST /{kind}s/{id}/update: only the labels may change (swarmkit UpdateSecret)."""
    item, current = await get(store, kind, ref)
    d = obj(body, "request body")
    unknown(d, "", ("Name", "Labels", "Data", "Driver", "Templating"))
    # swarmkit UpdateSecret: the same data may come back (`stack deploy` sends the whole
    # spec again), different data may not
    if d.get("Data") is not None:
        stored = item["_Data"] if kind == "secret" else item["Spec"]["Data"]
        same_data = hmac.compare_digest(_decode(kind, d["Data"]), base64.b64decode(stored))
    else:
        same_data = True
    if (text(d, "Name", "") not in ("", item["Spec"]["Name"]) or not same_data
            or d.get("Driver") or d.get("Templating")):
        raise errors.InvalidArgumentError(
            kind, "rpc error: code = InvalidArgument desc = only updates to Labels are allowed")
    if version != current:
        raise errors.ConflictError("update out of sequence")
    item["Spec"]["Labels"] = strmap(d.get("Labels"), "Labels")
    item["UpdatedAt"] = objects.now()
    await store.cas(KINDS[kind][0] + item["ID"], item, current)


async def users(store: Store, kind: str, item_id: str) -> list[str]:
    """Names of the (not deleted) services whose tasks reference the item."""
    key, field = ("Secrets", "SecretID") if kind == "secret" else ("Configs", "ConfigID")
    out = []
    for s, _ in await store.list(SERVICES):
        refs = s["Spec"]["TaskTemplate"]["ContainerSpec"].get(key) or []
        if not s.get("_Deleted") and any(r.get(field) == item_id for r in refs):
            out.append(s["Spec"]["Name"])
    return sorted(out)


async def remove(store: Store, kind: str, ref: str) -> None:
    """DELETE /{kind}s/{id}: refused while a service uses it, naming the services."""
    item, _ = await get(store, kind, ref)
    names = await users(store, kind, item["ID"])
    if names:  # swarmkit removeSecret's words
        plural = "service" if len(names) == 1 else "services"
        raise errors.InvalidArgumentError(
            kind, f"rpc error: code = InvalidArgument desc = {kind} '{item['Spec']['Name']}' "
                  f"is in use by the following {plural}: {', '.join(names)}")
    await store.delete(KINDS[kind][0] + item["ID"])
    await store.delete(name_key(kind + "s", item["Spec"]["Name"]))
