"""Deploy, list and remove stacks through labkit's client (the Docker CLI's `stack` verbs).

``deploy`` first builds a complete :class:`Plan` with read-only requests: the node is a
manager, every secret/config file exists and fits (500 KiB), external networks, secrets and
configs exist, no object to create already exists outside the stack, image digests are
resolved.  Only then does it create networks, secrets, configs and services, in that order
(services refer to the others).  If the daemon still refuses something halfway (a race, a
subnet clash), what this run created is removed again, so a failed deploy leaves nothing
half-deployed; services that existed before are updated with the version they were read at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.client import Client
from labkit.engine.swarm.stack import convert
from labkit.engine.swarm.stack.compose import Compose

__all__ = ["MAX_SECRET_SIZE", "Plan", "deploy", "list_stacks", "plan", "remove",
           "stack_services", "stack_tasks"]

MAX_SECRET_SIZE = 500 * 1024  # swarmkit validateSecretSpec: data < 500 KiB
Say = Callable[[str], None]


@dataclass
class Plan:
    """Everything deploy will send, computed before the first write."""

    stack: str
    networks: list[dict[str, Any]] = field(default_factory=list)        # bodies to create
    secrets: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    configs: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    services: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = field(
        default_factory=list)   # (compose name, spec without secret IDs yet, existing service)
    images: dict[str, str] = field(default_factory=dict)               # written -> pinned
    external: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "Secret": {}, "Config": {}})                                   # name -> ID
    warnings: list[str] = field(default_factory=list)
    prune: list[dict[str, Any]] = field(default_factory=list)          # services to remove


def _ns_filter(stack: str) -> dict[str, list[str]]:
    return {"label": [f"{convert.NAMESPACE}={stack}"]}


def _check_stack_name(stack: str) -> None:
    from labkit.engine.swarm.stack.compose import SERVICE_NAME

    # the namespace starts every service's name, which must be a DNS name (swarmkit
    # isValidDNSName, as the daemon checks it)
    if len(stack) > 40 or not SERVICE_NAME.fullmatch(stack):
        raise errors.InvalidArgumentError("stack name", f"invalid stack name {stack!r}: "
                                          "letters and digits, with '-' or '_' between them, "
                                          "at most 40 characters")


def _read_file(c: Compose, what: str, name: str, d: dict[str, Any]) -> bytes:
    path = Path(d["file"]).expanduser()
    path = path if path.is_absolute() else c.base / path
    where = c.where(f"{d['_path']}.file")
    try:
        size = path.stat().st_size
        if size > MAX_SECRET_SIZE:
            raise errors.InvalidArgumentError(what, f"{where}: {path}: {what} data must be "
                                              "larger than 0 and less than 500KB")
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_SIZE + 1)
    except FileNotFoundError:
        raise errors.NotFoundError(what + " file", f"{path} ({where})") from None
    except IsADirectoryError:
        raise errors.InvalidArgumentError(what, f"{where}: {path} is a directory") from None
    except PermissionError as e:
        raise errors.InvalidArgumentError(what, f"{where}: cannot read {path}: {e}") from None
    if not data or len(data) > MAX_SECRET_SIZE:
        raise errors.InvalidArgumentError(what, f"{where}: {path}: {what} data must be "
                                          "larger than 0 and less than 500KB")
    return data


def _pin(client: Client, image: str) -> tuple[str, str | None]:
    """The image pinned to its digest (``alpine:latest@sha256:...``) as the CLI does, or the
    image itself with the CLI's warning when the daemon cannot say."""
    if "@" in image:
        return image, None
    last = image.rsplit("/", 1)[-1]
    tagged = image if ":" in last else f"{image}:latest"
    try:
        desc = client.services.distribution(tagged)
        digest = str((desc.get("Descriptor") or {}).get("digest") or "")
    except errors.LabkitError:
        digest = ""
    if not digest:
        # the Docker CLI still sends the normalised reference ("alpine" -> "alpine:latest")
        return tagged, (f"image {tagged} could not be accessed on a registry to record its "
                       f"digest. Each node will access {tagged} independently, possibly "
                       "leading to different nodes running different versions of the image.")
    return f"{tagged}@{digest}", None


def plan(client: Client, c: Compose, stack: str, resolve_image: bool = True,
         prune: bool = False) -> Plan:
    """Check everything the deploy needs, with read-only requests only."""
    _check_stack_name(stack)
    info = client.system.info().get("Swarm") or {}
    if not info.get("ControlAvailable"):
        from labkit.engine.swarm.spec import MSG_NOT_MANAGER

        raise errors.UnavailableError(MSG_NOT_MANAGER)
    p = Plan(stack)
    problems: list[str] = []

    def absent(kind: str, name: str, get: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        """The object named ``name`` if it exists in this stack; {} if it does not exist;
        a problem if it exists outside the stack (deploy would clash with it)."""
        try:
            obj = get(name)
        except errors.NotFoundError:
            return {}
        labels = obj.get("Labels") if "Labels" in obj else (obj.get("Spec") or {}).get(
            "Labels")
        if (labels or {}).get(convert.NAMESPACE) != stack:
            problems.append(f"{kind} {name} already exists and is not part of stack {stack}")
        return obj

    # networks
    for name, d in sorted(convert.networks_used(c).items()):
        real = convert.object_name(stack, name, d)
        if d.get("external"):
            try:
                net = client.networks.inspect(real)
            except errors.NotFoundError:
                problems.append(f"network {real!r} is declared as external, but could not be "
                                "found. You need to create a swarm-scoped network before the "
                                "stack is deployed")
                continue
            if net.get("Scope") != "swarm":
                problems.append(f"network {real!r} is declared as external, but it is not in "
                                "the right scope: \"" + str(net.get("Scope")) + "\" instead "
                                "of \"swarm\"")
            continue
        if not absent("network", real, client.networks.inspect):
            p.networks.append(convert.network_body(stack, name, d))
    # secrets and configs: files read now, so a missing one stops the deploy here
    for what, table, api, out in (("secret", c.secrets, client.secrets, p.secrets),
                                  ("config", c.configs, client.configs, p.configs)):
        used = {r["source"] for s in c.services.values() for r in s.get(what + "s", [])}
        for name in sorted(used):
            d = table[name]
            real = convert.object_name(stack, name, d)
            if d.get("external"):
                try:
                    p.external[what.capitalize()][real] = str(api.inspect(real)["ID"])
                except errors.NotFoundError:
                    problems.append(f"{what} not found: {real} (declared external at "
                                    f"{c.where(d['_path'])})")
                continue
            try:
                data = _read_file(c, what, name, d)
            except errors.LabkitError as e:
                problems.append(str(e))
                continue
            existing = absent(what, real, api.inspect) or None
            out.append((convert.secret_spec(stack, name, d, data), existing))
    # services
    existing_svcs = {s["Spec"]["Name"]: s for s in client.services.list(_ns_filter(stack))}
    for name in c.services:
        real = convert.scoped(stack, name)
        existing = existing_svcs.get(real)
        if existing is None:
            absent("service", real, client.services.inspect)
        image = str(c.services[name]["image"])
        if resolve_image and image not in p.images:
            p.images[image], warning = _pin(client, image)
            if warning:
                p.warnings.append(warning)
        p.services.append((name, convert.service_spec(stack, name, c, p.images.get(image)),
                           existing))
    if prune:
        keep = {convert.scoped(stack, n) for n in c.services}
        p.prune = [s for n, s in sorted(existing_svcs.items()) if n not in keep]
    if problems:
        raise errors.InvalidArgumentError("stack deploy", "\n".join(problems),
                                          hint="nothing was created")
    return p


def deploy(client: Client, c: Compose, stack: str, say: Say = print,
           warn: Say | None = None, resolve_image: bool = True,
           prune: bool = False) -> list[str]:
    """Deploy (or update) ``stack``; the IDs of its services."""
    warn = warn or say
    for w in c.warnings:
        warn(w)
    p = plan(client, c, stack, resolve_image=resolve_image, prune=prune)
    for w in p.warnings:
        warn(w)
    created: list[tuple[str, str]] = []   # (kind, id), undone in reverse on failure
    try:
        for body in p.networks:
            say(f"Creating network {body['Name']}")
            res = client.transport.post("/networks/create", body)
            created.append(("network", str(res["Id"])))
        ids = {kind: dict(found) for kind, found in p.external.items()}
        for kind, api, items in (("Secret", client.secrets, p.secrets),
                                 ("Config", client.configs, p.configs)):
            for spec, existing in items:
                if existing:
                    # swarmkit allows only label changes on update (the data is immutable)
                    say(f"Updating {kind.lower()} {spec['Name']}")
                    api.update(existing["ID"], existing["Version"]["Index"],
                               {"Name": spec["Name"], "Labels": spec["Labels"]})
                    ids[kind][spec["Name"]] = existing["ID"]
                    continue
                say(f"Creating {kind.lower()} {spec['Name']}")
                import base64

                oid = api.create(spec["Name"], base64.b64decode(spec["Data"]), spec["Labels"])
                created.append((kind.lower(), oid))
                ids[kind][spec["Name"]] = oid
        out = []
        for name, _, existing in p.services:
            spec = convert.service_spec(stack, name, c, p.images.get(
                str(c.services[name]["image"])), ids["Secret"], ids["Config"])
            if existing:
                say(f"Updating service {spec['Name']} (id: {existing['ID']})")
                cur = client.services.inspect(existing["ID"])
                res = client.services.update(existing["ID"], cur["Version"]["Index"], spec)
                out.append(str(existing["ID"]))
            else:
                say(f"Creating service {spec['Name']}")
                res = client.services.create(spec)
                created.append(("service", str(res["ID"])))
                out.append(str(res["ID"]))
            for w in res.get("Warnings") or []:
                warn(str(w))
        for svc in p.prune:
            say(f"Removing service {svc['Spec']['Name']}")
            client.services.remove(svc["ID"])
        return out
    except errors.LabkitError as err:
        _undo(client, created, warn)
        err.hint = (err.hint + "; " if err.hint else "") + \
            "the objects this deploy created were removed again"
        raise


def _undo(client: Client, created: list[tuple[str, str]], warn: Say) -> None:
    for kind, oid in reversed(created):
        try:
            if kind == "service":
                client.services.remove(oid)
            elif kind == "network":
                _retry(lambda oid=oid: client.networks.remove(oid))  # type: ignore[misc]
            elif kind == "secret":
                _retry(lambda oid=oid: client.secrets.remove(oid))  # type: ignore[misc]
            else:
                _retry(lambda oid=oid: client.configs.remove(oid))  # type: ignore[misc]
        except errors.LabkitError as e:
            warn(f"could not remove {kind} {oid}: {e}")


def _retry(fn: Callable[[], None], timeout: float = 20.0) -> None:
    """Removing a service is asynchronous (the orchestrator shuts its tasks down first), so a
    network or secret it used may stay "in use" for a moment: retry conflicts, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fn()
            return
        except (errors.ConflictError, errors.InvalidArgumentError, errors.ForbiddenError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def remove(client: Client, stack: str, say: Say = print, warn: Say | None = None,
           timeout: float = 20.0) -> bool:
    """Remove the stack's services, then its networks, secrets and configs (Docker's order).
    False when some object could not be removed (each one is still tried)."""
    warn = warn or say
    flt = _ns_filter(stack)
    services = client.services.list(flt)
    networks = client.networks.list(flt)
    secrets = client.secrets.list(flt)
    configs = client.configs.list(flt)
    if not (services or networks or secrets or configs):
        say(f"Nothing found in stack: {stack}")
        return True
    ok = True
    for svc in sorted(services, key=lambda s: s["Spec"]["Name"]):
        say(f"Removing service {svc['Spec']['Name']}")
        try:
            client.services.remove(svc["ID"])
        except errors.LabkitError as e:
            warn(f"Failed to remove service {svc['ID']}: {e}")
            ok = False
    for kind, items, rm in (("network", networks, client.networks.remove),
                            ("secret", secrets, client.secrets.remove),
                            ("config", configs, client.configs.remove)):
        for obj in sorted(items, key=lambda o: str(o.get("Name") or o["Spec"]["Name"])):
            name = str(obj.get("Name") or obj["Spec"]["Name"])
            oid = str(obj.get("Id") or obj.get("ID"))
            say(f"Removing {kind} {name}")
            try:
                _retry(lambda rm=rm, oid=oid: rm(oid), timeout)  # type: ignore[misc]
            except errors.LabkitError as e:
                warn(f"Failed to remove {kind} {oid}: {e}")
                ok = False
    return ok


def list_stacks(client: Client) -> list[tuple[str, int]]:
    """(stack name, number of services), sorted by name (docker stack ls)."""
    counts: dict[str, int] = {}
    for s in client.services.list({"label": [convert.NAMESPACE]}):
        ns = ((s.get("Spec") or {}).get("Labels") or {}).get(convert.NAMESPACE)
        if ns:
            counts[ns] = counts.get(ns, 0) + 1
    return sorted(counts.items())


def stack_services(client: Client, stack: str, status: bool = True) -> list[dict[str, Any]]:
    return client.services.list(_ns_filter(stack), status=status)


def stack_tasks(client: Client, stack: str) -> list[dict[str, Any]]:
    """The tasks of the stack's services (asked per service, so tasks need not carry the
    namespace label themselves)."""
    tasks: list[dict[str, Any]] = []
    for svc in client.services.list(_ns_filter(stack)):
        tasks += client.tasks.list({"service": [svc["ID"]]})
    return tasks
