"""Compose -> Engine API bodies, as the Docker CLI's `stack deploy` builds them
(docker/cli cli/compose/convert): every object is named ``<stack>_<name>`` and labelled
``com.docker.stack.namespace=<stack>``; services also carry ``com.docker.stack.image`` (the
image as written, before digest pinning); networks are referred to by name with the service's
name as an alias; a service with no networks joins ``<stack>_default``.

Pure functions: no I/O, so the request bodies can be checked against the recorded ones
(../shared/reference/docker-api.md, `docker stack deploy -c stack.yml voter`).
"""

from __future__ import annotations

from typing import Any

from labkit.engine.swarm.stack.compose import Compose

__all__ = [
    "IMAGE_LABEL",
    "NAMESPACE",
    "config_spec",
    "network_body",
    "networks_used",
    "scoped",
    "secret_spec",
    "service_spec",
    "volume_source",
]

NAMESPACE = "com.docker.stack.namespace"
IMAGE_LABEL = "com.docker.stack.image"


def scoped(stack: str, name: str) -> str:
    return f"{stack}_{name}"


def _labels(stack: str, labels: dict[str, Any] | None = None) -> dict[str, str]:
    return {**{k: str(v) for k, v in (labels or {}).items()}, NAMESPACE: stack}


def object_name(stack: str, name: str, d: dict[str, Any]) -> str:
    """A network/secret/config/volume's real name: external ones keep theirs (or their
    ``name``), others are ``<stack>_<name>`` unless ``name`` is set (compose 3.5+)."""
    if d.get("external"):
        return str(d.get("name") or name)
    return str(d.get("name") or scoped(stack, name))


def networks_used(c: Compose) -> dict[str, dict[str, Any]]:
    """The networks services use, "default" included when a service names none (Docker
    creates only these)."""
    used: dict[str, dict[str, Any]] = {}
    for svc in c.services.values():
        for net in svc.get("networks") or {"default": []}:
            used[net] = c.networks.get(net) or {"external": False}
    return used


def network_body(stack: str, name: str, d: dict[str, Any]) -> dict[str, Any]:
    """POST /networks/create for a stack network, the Docker CLI's body (CheckDuplicate
    false, IPAM and Options null unless given)."""
    ipam = None
    if d.get("ipam"):
        ipam = {"Driver": d["ipam"].get("driver", ""), "Options": None,
                "Config": list(d["ipam"].get("config", []))}
    return {"CheckDuplicate": False, "Driver": d.get("driver", "overlay"), "Scope": "",
            "EnableIPv6": False, "IPAM": ipam, "Internal": bool(d.get("internal")),
            "Attachable": bool(d.get("attachable")), "Ingress": False, "ConfigOnly": False,
            "ConfigFrom": None, "Options": dict(d["driver_opts"]) if d.get("driver_opts")
            else None, "Labels": _labels(stack, d.get("labels")),
            "Name": object_name(stack, name, d)}


def secret_spec(stack: str, name: str, d: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The SecretSpec (data base64) for a file secret."""
    import base64

    return {"Name": object_name(stack, name, d), "Labels": _labels(stack, d.get("labels")),
            "Data": base64.b64encode(data).decode()}


config_spec = secret_spec


def volume_source(stack: str, c: Compose, source: str) -> str:
    return object_name(stack, source, c.volumes.get(source, {}))


def _mounts(stack: str, c: Compose, svc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in svc.get("volumes", []):
        mount = {k: v for k, v in m.items() if not k.startswith("_")}
        if not mount.get("Source"):
            mount.pop("Source", None)   # anonymous volumes and tmpfs have none
        if m["Type"] == "volume" and m["Source"]:
            vol = c.volumes.get(m["Source"], {})
            mount["Source"] = volume_source(stack, c, m["Source"])
            if not vol.get("external"):
                opts = dict(mount.get("VolumeOptions") or {})
                opts["Labels"] = _labels(stack, vol.get("labels"))
                if vol.get("driver") or vol.get("driver_opts"):
                    opts["DriverConfig"] = {"Name": vol.get("driver", "local"),
                                            "Options": dict(vol.get("driver_opts") or {})}
                mount["VolumeOptions"] = opts
        if not mount.get("ReadOnly"):
            mount.pop("ReadOnly", None)
        out.append(mount)
    return out


def _file_refs(stack: str, c: Compose, refs: list[dict[str, Any]], table: dict[str, Any],
               ids: dict[str, str], what: str) -> list[dict[str, Any]]:
    """Secret/config references: File {Name, UID, GID, Mode} + the object's ID and name."""
    out = []
    for r in refs:
        name = object_name(stack, r["source"], table[r["source"]])
        out.append({"File": {"Name": r["target"], "UID": r["uid"], "GID": r["gid"],
                             "Mode": r["mode"]},
                    f"{what}ID": ids.get(name, ""), f"{what}Name": name})
    return out


def _update_config(u: dict[str, Any] | None) -> dict[str, Any] | None:
    if not u:
        return None
    out: dict[str, Any] = {"Parallelism": u.get("parallelism", 1), "MaxFailureRatio": 0}
    for key, api in (("delay", "Delay"), ("monitor", "Monitor"),
                     ("max_failure_ratio", "MaxFailureRatio"),
                     ("failure_action", "FailureAction"), ("order", "Order")):
        if key in u:
            out[api] = u[key]
    return out


def service_spec(stack: str, name: str, c: Compose, image: str | None = None,
                 secret_ids: dict[str, str] | None = None,
                 config_ids: dict[str, str] | None = None,
                 environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ServiceSpec for ``services.<name>``.  ``image``: the pinned reference
    (``nginx:latest@sha256:...``) when the digest was found, else the compose one;
    ``secret_ids``/``config_ids``: real name -> ID (the CLI looks them up after creating);
    ``environ``: where ``environment: [KEY]`` without a value reads KEY (compose spec)."""
    import os

    svc = c.services[name]
    env_src = os.environ if environ is None else environ
    written = str(svc["image"])
    cs: dict[str, Any] = {"Image": image or written,
                          "Labels": _labels(stack, svc.get("labels"))}
    if "entrypoint" in svc:
        cs["Command"] = svc["entrypoint"]
    if "command" in svc:
        cs["Args"] = svc["command"]
    env = []
    for k, v in sorted((svc.get("environment") or {}).items()):
        if v is None:
            if k in env_src:
                env.append(f"{k}={env_src[k]}")
        else:
            env.append(f"{k}={v}")
    if env:
        cs["Env"] = env
    for key, api in (("hostname", "Hostname"), ("user", "User"), ("working_dir", "Dir"),
                     ("stop_signal", "StopSignal"), ("stop_grace_period", "StopGracePeriod"),
                     ("tty", "TTY"), ("stdin_open", "OpenStdin"), ("read_only", "ReadOnly"),
                     ("init", "Init")):
        if key in svc:
            cs[api] = svc[key]
    if "healthcheck" in svc:
        cs["Healthcheck"] = svc["healthcheck"]
    if svc.get("extra_hosts"):
        cs["Hosts"] = svc["extra_hosts"]
    if svc.get("sysctls"):
        cs["Sysctls"] = svc["sysctls"]
    dns = {api: svc[key] for key, api in (("dns", "Nameservers"), ("dns_search", "Search"),
                                          ("dns_opt", "Options")) if svc.get(key)}
    if dns:
        cs["DNSConfig"] = dns
    mounts = _mounts(stack, c, svc)
    if mounts:
        cs["Mounts"] = mounts
    if svc.get("secrets"):
        cs["Secrets"] = _file_refs(stack, c, svc["secrets"], c.secrets, secret_ids or {},
                                   "Secret")
    if svc.get("configs"):
        cs["Configs"] = _file_refs(stack, c, svc["configs"], c.configs, config_ids or {},
                                   "Config")
    deploy = svc.get("deploy", {})
    task: dict[str, Any] = {"ContainerSpec": cs}
    if svc.get("logging"):
        task["LogDriver"] = {"Name": svc["logging"].get("driver", "json-file"),
                             "Options": svc["logging"].get("options") or {}}
    res = deploy.get("resources", {})
    if res:
        task["Resources"] = {}
        for key, api in (("limits", "Limits"), ("reservations", "Reservations")):
            r = res.get(key, {})
            vals = {a: r[k] for k, a in (("cpus", "NanoCPUs"), ("memory", "MemoryBytes"),
                                          ("pids", "Pids")) if k in r}
            if vals:
                task["Resources"][api] = vals
    rp = deploy.get("restart_policy")
    if rp:
        task["RestartPolicy"] = {a: rp[k] for k, a in (
            ("condition", "Condition"), ("delay", "Delay"), ("max_attempts", "MaxAttempts"),
            ("window", "Window")) if k in rp}
    pl = deploy.get("placement", {})
    if pl:
        placement: dict[str, Any] = {}
        if pl.get("constraints"):
            placement["Constraints"] = pl["constraints"]
        if pl.get("preferences"):
            placement["Preferences"] = [{"Spread": {"SpreadDescriptor": s}}
                                        for s in pl["preferences"]]
        if pl.get("max_replicas_per_node"):
            placement["MaxReplicas"] = pl["max_replicas_per_node"]
        task["Placement"] = placement
    nets = svc.get("networks") or {"default": []}
    task["Networks"] = [
        # docker/cli convertServiceNetworks: the network's aliases, then the service's name
        {"Target": object_name(stack, n, c.networks.get(n) or {}),
         "Aliases": [*[a for a in aliases if a != name], name]}
        for n, aliases in sorted(nets.items())]
    spec: dict[str, Any] = {"Name": scoped(stack, name),
                            "Labels": {**_labels(stack, deploy.get("labels")),
                                       IMAGE_LABEL: written},
                            "TaskTemplate": task}
    if deploy.get("mode") == "global":
        spec["Mode"] = {"Global": {}}
    elif "replicas" in deploy:
        spec["Mode"] = {"Replicated": {"Replicas": deploy["replicas"]}}
    else:
        spec["Mode"] = {"Replicated": {"Replicas": 1}}
    for key, api in (("update_config", "UpdateConfig"), ("rollback_config", "RollbackConfig")):
        u = _update_config(deploy.get(key))
        if u:
            spec[api] = u
    endpoint: dict[str, Any] = {}
    if deploy.get("endpoint_mode"):
        endpoint["Mode"] = deploy["endpoint_mode"]
    if svc.get("ports"):
        # docker/cli convertEndpointSpec sorts the ports by published port
        endpoint["Ports"] = sorted(svc["ports"], key=lambda p: p["PublishedPort"])
    if endpoint:
        spec["EndpointSpec"] = endpoint
    return spec
