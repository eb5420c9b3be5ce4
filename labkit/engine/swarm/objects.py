"""Docker-shaped cluster and node objects, built from what the store keeps.

The store keeps objects close to the Engine API's (Swarm, Node); what changes from moment
to moment (a node's liveness, a manager's reachability and leadership, Version.Index) is
filled in here when an object is read, never stored.  Keys that start with "_" are labkit's
own bookkeeping and never leave the daemon.
"""

from __future__ import annotations

import base64
import datetime as dt
import platform
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["DEFAULT_SPEC_NODE", "new_node", "now", "public", "render_secret", "render_service",
           "render_task", "tls_info"]

Obj = dict[str, Any]
DEFAULT_SPEC_NODE: Obj = {"Labels": {}, "Role": "worker", "Availability": "active"}


def now() -> str:
    """RFC 3339 with nanoseconds, as Go prints time.Time (the CLI parses it)."""
    t = dt.datetime.now(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def public(obj: Obj, version: int) -> Obj:
    """A copy without labkit's private keys, with Version.Index set."""
    out = {k: v for k, v in obj.items() if not k.startswith("_")}
    out["Version"] = {"Index": version}
    return out


def tls_info(roots_pem: bytes) -> Obj:
    """Engine API TLSInfo: the trust root, and the issuer's subject and public key (DER,
    base64) that `docker swarm ca` compares node by node during a rotation."""
    root = x509.load_pem_x509_certificates(roots_pem)[0]
    spki = root.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return {"TrustRoot": roots_pem.decode(),
            "CertIssuerSubject": base64.b64encode(root.subject.public_bytes()).decode(),
            "CertIssuerPublicKey": base64.b64encode(spki).decode()}


def new_node(node_id: str, role: str, addr: str, availability: str, hostname: str,
             engine_version: str, nano_cpus: int, memory: int, roots_pem: bytes,
             join_port: int) -> Obj:
    """The store's record of a node that just joined (or founded) the swarm."""
    t = now()
    node: Obj = {
        "ID": node_id, "CreatedAt": t, "UpdatedAt": t,
        "Spec": {"Labels": {}, "Role": role, "Availability": availability or "active"},
        "Description": {
            "Hostname": hostname,
            "Platform": {"Architecture": platform.machine(), "OS": "linux"},
            "Resources": {"NanoCPUs": nano_cpus, "MemoryBytes": memory},
            "Engine": {"EngineVersion": engine_version, "Plugins": []},
            "TLSInfo": tls_info(roots_pem),
        },
        "Status": {"State": "unknown", "Addr": addr},
    }
    if role == "manager":
        node["ManagerStatus"] = {"Addr": f"{_host(addr)}:{join_port}"}
    return node


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


# --- issue 13: services, tasks, secrets, configs (moby api/types/swarm service.go, task.go,
# secret.go, config.go).  Each renderer copies: the stored object stays as it is.
def render_service(svc: Obj, version: int) -> Obj:
    """GET /services item: ID, Version, CreatedAt, UpdatedAt, Spec, Endpoint, and
    PreviousSpec / UpdateStatus when set."""
    out = public(svc, version)
    out.setdefault("Endpoint", {"Spec": {}})
    return out


def render_task(task: Obj, version: int) -> Obj:
    """GET /tasks item (labkit's _SpecVersion, _ServiceName, _Attachment dropped)."""
    return public(task, version)


def render_secret(item: Obj, version: int) -> Obj:
    """A secret (its data never leaves the managers: kept as _Data) or a config (Spec.Data
    is shown, as Docker does)."""
    return public(item, version)


def task_network(net: Obj) -> Obj:
    """A swarm network as a task's NetworksAttachments carry it: moby's swarm.Network (ID,
    Spec with DriverConfiguration and IPAMOptions, DriverState), not the network-inspect
    shape the store keeps (Id, Driver, IPAM)."""
    ipam = net.get("IPAM") or {}
    configs = [{k: c[k] for k in ("Subnet", "Gateway") if c.get(k)}
               for c in ipam.get("Config") or []]
    ipam_opts = {"Driver": {"Name": ipam.get("Driver") or "default"}, "Configs": configs}
    opts = {k: v for k, v in (net.get("Options") or {}).items()}
    vni = opts.pop("com.docker.network.driver.overlay.vxlanid_list", None)
    created = net.get("Created") or now()
    return {
        "ID": net.get("Id") or net.get("ID") or "",
        "Version": {"Index": 0}, "CreatedAt": created, "UpdatedAt": created,
        "Spec": {"Name": net.get("Name", ""), "Labels": dict(net.get("Labels") or {}),
                 "DriverConfiguration": {"Name": net.get("Driver") or "overlay",
                                         "Options": opts or None},
                 "Scope": "swarm", "Internal": bool(net.get("Internal")),
                 "Attachable": bool(net.get("Attachable")), "Ingress": bool(net.get("Ingress")),
                 "IPAMOptions": ipam_opts},
        "DriverState": {"Name": net.get("Driver") or "overlay",
                        "Options": {"com.docker.network.driver.overlay.vxlanid_list": vni}
                        if vni else {}},
        "IPAMOptions": ipam_opts,
    }
