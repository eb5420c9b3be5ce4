"""ServiceSpec checks (Engine API v1.41, moby api/types/swarm/service.go, task.go,
container.go; swarmkit manager/controlapi/service.go validateServiceSpec).

*Accepted means applied*: every key is known, and every field labkit's task executor
(SWARM13.md "Task containers") cannot apply is refused with an InvalidArgumentError that
names it (``TaskTemplate.ContainerSpec.Privileges``), unless it holds Go's zero value, which
the CLI sends for what it did not set.  ``check_service_spec`` returns the normalised spec
(Replicas filled, the deprecated top-level Networks moved into TaskTemplate); references to
networks, secrets and configs are resolved against the store by services.py.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from labkit import errors
from labkit.engine.swarm.control.common import (
    Obj,
    obj,
    strlist,
    strmap,
    text,
    uint,
    unknown,
)
from labkit.engine.swarm.control.mounts import check_file_ref, check_mount, check_targets

__all__ = ["check_constraint", "check_service_spec"]

# swarmkit controlapi isValidDNSName: stacks name services "stack_service"
_NAME = re.compile(r"[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*")
_SPEC = ("Name", "Labels", "TaskTemplate", "Mode", "UpdateConfig", "RollbackConfig",
         "Networks", "EndpointSpec")
_TASK = ("ContainerSpec", "Resources", "RestartPolicy", "Placement", "Networks", "LogDriver",
         "ForceUpdate", "Runtime")
_TASK_REFUSED = ("PluginSpec", "NetworkAttachmentSpec")
_CONTAINER = ("Image", "Labels", "Command", "Args", "Hostname", "Env", "Dir", "User", "Init",
              "TTY", "OpenStdin", "ReadOnly", "Mounts", "StopSignal", "StopGracePeriod",
              "Healthcheck", "Hosts", "DNSConfig", "Secrets", "Configs", "Sysctls",
              "Isolation")
_CONTAINER_REFUSED = ("Groups", "Privileges", "CapabilityAdd", "CapabilityDrop", "Ulimits")
_CONSTRAINT = re.compile(r"\s*([\w.\-]+)\s*(==|!=)\s*(\S(?:.*\S)?)\s*")
_CONSTRAINT_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os",
                    "node.platform.arch")
_MAX_PORT = 65535


def check_service_spec(body: Any) -> Obj:
    """The checked, normalised ServiceSpec; InvalidArgumentError naming the field otherwise."""
    d = dict(obj(body, "request body"))
    unknown(d, "", _SPEC)
    name = text(d, "Name", "")
    if not name:
        raise errors.InvalidArgumentError("Name", "service name must be given (Name)")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise errors.InvalidArgumentError(
            "Name", f"invalid name {name!r}: a service name must be valid as a DNS name "
                    "component (letters, digits, '-' and '_', at most 63)")
    d["Labels"] = strmap(d.get("Labels"), "Labels")
    task = d["TaskTemplate"] = _task(obj(d.get("TaskTemplate"), "TaskTemplate"))
    legacy = d.pop("Networks", None)
    if legacy:  # moby moves the deprecated ServiceSpec.Networks into the task template
        if task.get("Networks"):
            raise errors.InvalidArgumentError(
                "Networks", "Networks and TaskTemplate.Networks cannot both be set")
        task["Networks"] = _networks(legacy, "Networks")
    d["Mode"] = _mode(obj(d.get("Mode"), "Mode"))
    for key in ("UpdateConfig", "RollbackConfig"):
        if d.get(key) is not None:
            d[key] = _update_config(obj(d[key], key), key)
    if d.get("EndpointSpec") is not None:
        d["EndpointSpec"] = _endpoint(obj(d["EndpointSpec"], "EndpointSpec"))
    out: Obj = _prune(d)
    return out


def _prune(value: Any) -> Any:
    """Drop null fields at every depth, as Go's omitempty does on the way back: the
    executor and the CLI's round trip see absent, never null."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _task(t: Obj) -> Obj:
    w = "TaskTemplate"
    unknown(t, w, _TASK, _TASK_REFUSED)
    for key in _TASK_REFUSED:
        t.pop(key, None)
    if text(t, "Runtime", w) not in ("", "container"):
        raise errors.InvalidArgumentError(f"{w}.Runtime", f"{w}.Runtime {t['Runtime']!r} is not "
                                          "supported (labkit runs containers)")
    t["ContainerSpec"] = _container(obj(t.get("ContainerSpec"), f"{w}.ContainerSpec"))
    uint(t, "ForceUpdate", w)
    if t.get("Resources") is not None:
        t["Resources"] = _resources(obj(t["Resources"], f"{w}.Resources"))
    if t.get("RestartPolicy") is not None:
        t["RestartPolicy"] = _restart(obj(t["RestartPolicy"], f"{w}.RestartPolicy"))
    if t.get("Placement") is not None:
        t["Placement"] = _placement(obj(t["Placement"], f"{w}.Placement"))
    if t.get("Networks") is not None:
        t["Networks"] = _networks(t["Networks"], f"{w}.Networks")
    if t.get("LogDriver") is not None:
        t["LogDriver"] = _log_driver(obj(t["LogDriver"], f"{w}.LogDriver"))
    return t


def _container(c: Obj) -> Obj:
    w = "TaskTemplate.ContainerSpec"
    unknown(c, w, _CONTAINER, _CONTAINER_REFUSED)
    for key in _CONTAINER_REFUSED:
        c.pop(key, None)
    image = text(c, "Image", w)
    if not image or any(ch.isspace() for ch in image):
        raise errors.InvalidArgumentError(f"{w}.Image", f"{w}.Image: an image reference is "
                                          "required")
    if text(c, "Isolation", w) not in ("", "default"):
        raise errors.InvalidArgumentError(f"{w}.Isolation", "isolation modes are Windows only")
    for key in ("Hostname", "Dir", "User", "StopSignal"):
        text(c, key, w)
    for key in ("Command", "Args", "Env", "Hosts"):
        strlist(c.get(key), f"{w}.{key}")
    for key in ("Labels", "Sysctls"):
        strmap(c.get(key), f"{w}.{key}")
    for key in ("Init", "TTY", "OpenStdin", "ReadOnly"):
        if c.get(key) is not None and not isinstance(c[key], bool):
            raise errors.InvalidArgumentError(f"{w}.{key}", f"{w}.{key} must be true or false")
    uint(c, "StopGracePeriod", w)
    for i, m in enumerate(_list(c.get("Mounts"), f"{w}.Mounts")):
        check_mount(obj(m, f"{w}.Mounts[{i}]"), f"{w}.Mounts[{i}]")
    if c.get("Healthcheck") is not None:
        h = obj(c["Healthcheck"], f"{w}.Healthcheck")
        unknown(h, f"{w}.Healthcheck", ("Test", "Interval", "Timeout", "Retries", "StartPeriod"))
        strlist(h.get("Test"), f"{w}.Healthcheck.Test")
        for key in ("Interval", "Timeout", "Retries", "StartPeriod"):
            uint(h, key, f"{w}.Healthcheck")
    if c.get("DNSConfig") is not None:
        dns = obj(c["DNSConfig"], f"{w}.DNSConfig")
        unknown(dns, f"{w}.DNSConfig", ("Nameservers", "Search", "Options"))
        for ns in strlist(dns.get("Nameservers"), f"{w}.DNSConfig.Nameservers"):
            _ip(ns, f"{w}.DNSConfig.Nameservers")
        strlist(dns.get("Search"), f"{w}.DNSConfig.Search")
        strlist(dns.get("Options"), f"{w}.DNSConfig.Options")
    for kind in ("Secrets", "Configs"):
        c[kind] = [check_file_ref(obj(r, f"{w}.{kind}[{i}]"), f"{w}.{kind}[{i}]", kind)
                   for i, r in enumerate(_list(c.get(kind), f"{w}.{kind}"))] or None
        if c[kind] is None:
            del c[kind]
    check_targets(c)
    return c


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.InvalidArgumentError(where, f"{where} must be a list")
    return value


def _ip(value: str, where: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise errors.InvalidArgumentError(where, f"{where}: {value!r} is not an IP "
                                          "address") from None


def _resources(r: Obj) -> Obj:
    w = "TaskTemplate.Resources"
    unknown(r, w, ("Limits", "Reservations"))
    lim = obj(r.get("Limits"), f"{w}.Limits")
    unknown(lim, f"{w}.Limits", ("NanoCPUs", "MemoryBytes", "Pids"), ("GenericResources",))
    for key in ("NanoCPUs", "MemoryBytes", "Pids"):
        uint(lim, key, f"{w}.Limits")
    res = obj(r.get("Reservations"), f"{w}.Reservations")
    # the scheduler places by constraints and spread only: a reservation would be a promise
    # labkit does not keep
    unknown(res, f"{w}.Reservations", (), ("NanoCPUs", "MemoryBytes", "GenericResources"))
    return r


def _restart(r: Obj) -> Obj:
    w = "TaskTemplate.RestartPolicy"
    unknown(r, w, ("Condition", "Delay", "MaxAttempts", "Window"))
    cond = text(r, "Condition", w)
    if cond not in ("", "none", "on-failure", "any"):
        raise errors.InvalidArgumentError(f"{w}.Condition", f"invalid RestartCondition "
                                          f"{cond!r} (none, on-failure, any)")
    for key in ("Delay", "MaxAttempts", "Window"):
        uint(r, key, w)
    return r


def _placement(p: Obj) -> Obj:
    w = "TaskTemplate.Placement"
    unknown(p, w, ("Constraints", "Preferences", "MaxReplicas", "Platforms"))
    for c in strlist(p.get("Constraints"), f"{w}.Constraints"):
        check_constraint(c)
    for i, pref in enumerate(_list(p.get("Preferences"), f"{w}.Preferences")):
        pw = f"{w}.Preferences[{i}]"
        pref = obj(pref, pw)
        unknown(pref, pw, ("Spread",))
        spread = obj(pref.get("Spread"), f"{pw}.Spread")
        unknown(spread, f"{pw}.Spread", ("SpreadDescriptor",))
        desc = text(spread, "SpreadDescriptor", f"{pw}.Spread")
        if not re.fullmatch(r"(node|engine)\.labels\.[^\s=!]+", desc):
            raise errors.InvalidArgumentError(
                f"{pw}.Spread.SpreadDescriptor", f"invalid placement preference {desc!r}: "
                "spread over node.labels.X or engine.labels.X")
    uint(p, "MaxReplicas", w)
    for i, plat in enumerate(_list(p.get("Platforms"), f"{w}.Platforms")):
        pw = f"{w}.Platforms[{i}]"
        plat = obj(plat, pw)
        unknown(plat, pw, ("Architecture", "OS"))
        text(plat, "Architecture", pw)
        text(plat, "OS", pw)
    return p


def check_constraint(expr: str) -> tuple[str, str, str]:
    """``key==value`` / ``key!=value`` (swarmkit manager/constraint): the parts, or an
    InvalidArgumentError naming the expression."""
    where = "TaskTemplate.Placement.Constraints"
    m = _CONSTRAINT.fullmatch(expr)
    if m is None:
        raise errors.InvalidArgumentError(where, f"invalid constraint {expr!r}: it must be "
                                          "KEY==VALUE or KEY!=VALUE")
    key, op, value = m.groups()
    low = key.lower()
    if not (low in _CONSTRAINT_KEYS or re.fullmatch(r"(node|engine)\.labels\.\S+", key)):
        raise errors.InvalidArgumentError(
            where, f"invalid constraint {expr!r}: key {key!r} is not one of "
                   f"{', '.join(_CONSTRAINT_KEYS)}, node.labels.X, engine.labels.X")
    if low == "node.role" and value.lower() not in ("manager", "worker"):
        raise errors.InvalidArgumentError(where, f"invalid constraint {expr!r}: node.role is "
                                          "manager or worker")
    return key, op, value


def _networks(value: Any, w: str) -> list[Obj]:
    out = []
    for i, n in enumerate(_list(value, w)):
        nw = f"{w}[{i}]"
        n = dict(obj(n, nw))
        unknown(n, nw, ("Target", "Aliases"), ("DriverOpts",))
        n.pop("DriverOpts", None)
        if not text(n, "Target", nw):
            raise errors.InvalidArgumentError(f"{nw}.Target", f"{nw}.Target: a network name "
                                              "or id is required")
        strlist(n.get("Aliases"), f"{nw}.Aliases")
        out.append(n)
    return out


def _log_driver(ld: Obj) -> Obj:
    w = "TaskTemplate.LogDriver"
    unknown(ld, w, ("Name", "Options"))
    name = text(ld, "Name", w)
    opts = strmap(ld.get("Options"), f"{w}.Options")
    from labkit.engine.logs import drivers

    if name and name not in drivers.DRIVERS:
        raise errors.InvalidArgumentError(f"{w}.Name", f"no log driver named {name!r} in labkit "
                                          f"(it has {', '.join(drivers.DRIVERS)})")
    if name:
        drivers.check(name, opts)
    elif opts:
        raise errors.InvalidArgumentError(f"{w}.Name", "log driver options need a driver name")
    return ld


def _mode(m: Obj) -> Obj:
    unknown(m, "Mode", ("Replicated", "Global", "ReplicatedJob", "GlobalJob"))
    for job in ("ReplicatedJob", "GlobalJob"):
        if m.get(job) is not None:  # even {}: the key itself asks for a job service
            raise errors.InvalidArgumentError(
                f"Mode.{job}", f"Mode.{job} is not supported by labkit's swarm (no job "
                               "services: the orchestrator runs services until removed)")
    if "Replicated" in m and "Global" in m:
        raise errors.InvalidArgumentError("Mode", "a service is Replicated or Global, not both")
    if "Global" in m and m["Global"] is not None:
        unknown(obj(m["Global"], "Mode.Global"), "Mode.Global", ())
        return {"Global": {}}
    rep = obj(m.get("Replicated"), "Mode.Replicated")
    unknown(rep, "Mode.Replicated", ("Replicas",))
    n = uint(rep, "Replicas", "Mode.Replicated")
    # moby convert.ServiceSpecToGRPC: a replicated service without a count runs one task
    return {"Replicated": {"Replicas": 1 if n is None else n}}


def _update_config(u: Obj, w: str) -> Obj:
    unknown(u, w, ("Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio",
                   "Order"))
    for key in ("Parallelism", "Delay", "Monitor"):
        uint(u, key, w)
    actions = ("pause", "continue", "rollback") if w == "UpdateConfig" else ("pause",
                                                                              "continue")
    fa = text(u, "FailureAction", w)
    if fa and fa not in actions:
        raise errors.InvalidArgumentError(f"{w}.FailureAction", f"invalid FailureAction {fa!r} "
                                          f"({', '.join(actions)})")
    ratio = u.get("MaxFailureRatio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, int | float)
                              or not 0 <= ratio <= 1):
        raise errors.InvalidArgumentError(f"{w}.MaxFailureRatio", "MaxFailureRatio must be a "
                                          "number between 0 and 1")
    order = text(u, "Order", w)
    if order and order not in ("stop-first", "start-first"):
        raise errors.InvalidArgumentError(f"{w}.Order", f"invalid Order {order!r} "
                                          "(stop-first, start-first)")
    return u


def _endpoint(e: Obj) -> Obj:
    w = "EndpointSpec"
    unknown(e, w, ("Mode", "Ports"))
    mode = text(e, "Mode", w) or "vip"
    if mode not in ("vip", "dnsrr"):
        raise errors.InvalidArgumentError(f"{w}.Mode", f"invalid endpoint mode {mode!r} "
                                          "(vip, dnsrr)")
    ports, seen = [], set()
    for i, p in enumerate(_list(e.get("Ports"), f"{w}.Ports")):
        pw = f"{w}.Ports[{i}]"
        p = dict(obj(p, pw))
        unknown(p, pw, ("Name", "Protocol", "TargetPort", "PublishedPort", "PublishMode"))
        text(p, "Name", pw)
        proto = text(p, "Protocol", pw) or "tcp"
        if proto not in ("tcp", "udp"):
            raise errors.InvalidArgumentError(f"{pw}.Protocol", f"protocol {proto!r} is not "
                                              "supported (tcp, udp)")
        target = uint(p, "TargetPort", pw, _MAX_PORT)
        if not target:
            raise errors.InvalidArgumentError(f"{pw}.TargetPort", "TargetPort must be 1-65535")
        published = uint(p, "PublishedPort", pw, _MAX_PORT) or 0
        pmode = text(p, "PublishMode", pw) or "ingress"
        if pmode not in ("ingress", "host"):
            raise errors.InvalidArgumentError(f"{pw}.PublishMode", f"invalid PublishMode "
                                              f"{pmode!r} (ingress, host)")
        if pmode == "ingress" and mode == "dnsrr":  # swarmkit validateEndpointSpec's text
            raise errors.InvalidArgumentError(
                f"{w}.Ports", "port published with ingress mode can't be used with dnsrr mode")
        if published and (proto, published, pmode) in seen:
            raise errors.InvalidArgumentError(f"{w}.Ports",
                                              "duplicate published ports provided")
        seen.add((proto, published, pmode))
        p.update(Protocol=proto, TargetPort=target, PublishedPort=published,
                 PublishMode=pmode)
        ports.append(p)
    out: Obj = {"Mode": mode}
    if ports:
        out["Ports"] = ports
    return out
