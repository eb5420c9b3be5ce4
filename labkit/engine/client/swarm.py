"""Swarm and node endpoints (Engine API "Swarm", "Node"), in docker-py's shape:
``client.swarm.init / join / leave / inspect / update / unlock / unlock_key`` and
``client.nodes.list / get / update / remove``.

Bodies are Docker's JSON as the Docker CLI sends it; the daemon checks them
(labkit.engine.swarm.spec), so nothing is validated twice here.  Standard library only.
"""

from __future__ import annotations

import builtins
from typing import Any

from labkit.engine.client.transport import Transport

__all__ = ["Nodes", "Swarm"]


class Swarm:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def init(self, advertise_addr: str = "", listen_addr: str = "0.0.0.0:2377",
             spec: dict[str, Any] | None = None, autolock: bool = False,
             availability: str = "") -> str:
        """POST /swarm/init; the new node's id.  ``spec``: a (partial) Swarm Spec, whatever
        is left out gets swarmkit's default."""
        spec = dict(spec or {})
        if autolock:
            spec["EncryptionConfig"] = {**spec.get("EncryptionConfig", {}),
                                        "AutoLockManagers": True}
        body = {"ListenAddr": listen_addr, "AdvertiseAddr": advertise_addr, "Spec": spec,
                "AutoLockManagers": autolock, "Availability": availability}
        return str(self.t.post("/swarm/init", body))

    def join(self, remote_addrs: builtins.list[str], join_token: str,
             listen_addr: str = "0.0.0.0:2377", advertise_addr: str = "",
             availability: str = "") -> None:
        """POST /swarm/join (the manager's address(es) and a worker or manager token)."""
        self.t.request("POST", "/swarm/join", body={
            "ListenAddr": listen_addr, "AdvertiseAddr": advertise_addr,
            "RemoteAddrs": remote_addrs, "JoinToken": join_token,
            "Availability": availability}).read()

    def leave(self, force: bool = False) -> None:
        self.t.request("POST", "/swarm/leave", {"force": force or None}).read()

    def inspect(self) -> dict[str, Any]:
        """GET /swarm: ID, Version.Index, Spec, JoinTokens, TLSInfo, ..."""
        return dict(self.t.get("/swarm"))

    def update(self, version: int, spec: dict[str, Any], rotate_worker_token: bool = False,
               rotate_manager_token: bool = False, rotate_unlock_key: bool = False) -> None:
        """POST /swarm/update: ``spec`` is the whole Spec (inspect()'s, changed) and
        ``version`` the Version.Index it was read at; a stale one is a ConflictError."""
        params = {"version": version, "rotateWorkerToken": rotate_worker_token,
                  "rotateManagerToken": rotate_manager_token,
                  "rotateManagerUnlockKey": rotate_unlock_key}
        self.t.request("POST", "/swarm/update", params, spec).read()

    def unlock_key(self) -> str:
        """GET /swarm/unlockkey ("" when autolock is off)."""
        return str(self.t.get("/swarm/unlockkey").get("UnlockKey") or "")

    def unlock(self, key: str) -> None:
        self.t.request("POST", "/swarm/unlock", body={"UnlockKey": key}).read()


class Nodes:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def list(self, filters: dict[str, builtins.list[str]] | None = None
             ) -> builtins.list[dict[str, Any]]:
        return builtins.list(self.t.get("/nodes", filters=filters or None) or [])

    def get(self, ref: str) -> dict[str, Any]:
        """GET /nodes/{ref}: by id, id prefix or hostname."""
        return dict(self.t.get(f"/nodes/{ref}"))

    def update(self, ref: str, version: int, spec: dict[str, Any]) -> None:
        """POST /nodes/{ref}/update: the whole NodeSpec (Role, Availability, Labels, Name)."""
        self.t.request("POST", f"/nodes/{ref}/update", {"version": version}, spec).read()

    def remove(self, ref: str, force: bool = False) -> None:
        self.t.request("DELETE", f"/nodes/{ref}", {"force": force or None}).read()
