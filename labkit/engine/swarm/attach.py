"""Standalone containers on attachable swarm networks, from any node of the swarm.

`docker run --network NET` / `docker network connect NET CTR` where NET is not a local
network but a swarm one: as moby's daemon does (container_operations.go
findAndAttachNetwork), the node asks a manager for an attachment (AttachNetwork: an
attachment task for this node; the leader allocates the address), materializes the network
(SwarmNode.attach_network), and the endpoint is then made like any other with that IPv4
address.  The attachment task's id is kept in the endpoint's settings on the container
record (key ``_SwarmAttachment``, on disk, so a daemon restart keeps it); the record's
removal, by any path (rm, prune, ``run --rm``), and disconnect give it back (DetachNetwork),
and the agent gives back any attachment of this node that no container holds any more (a
give-back that failed, a crash between AttachNetwork and the record).
A node outside a swarm keeps the local service's "network NAME not found".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from labkit import errors

__all__ = ["KEY", "claim", "container_removed", "for_create", "held", "release"]

log = logging.getLogger("labkit.swarm")
KEY = "_SwarmAttachment"
_LOCAL_MODES = ("", "default", "bridge", "host", "none")


def _node(eng: Any) -> Any | None:
    """The swarm membership when this node is active in a swarm with its agent up."""
    node = getattr(eng, "swarm", None)
    if node is None or node.local_state() != "active" or getattr(node, "agent", None) is None:
        return None
    return node


def _is_swarm_ref(eng: Any, ref: str) -> bool:
    """True when ``ref`` is no local network: unknown here, or a materialized swarm one
    (its addresses are the leader's to give, never the local IPAM's)."""
    if ref in _LOCAL_MODES or ref.startswith("container:"):
        return False
    try:
        rec = eng.networks.network(ref)
    except errors.NotFoundError:
        return True
    return bool(rec.scope == "swarm")


def held(networks: dict[str, dict[str, Any]] | None) -> list[str]:
    """The attachment ids a container record's endpoint settings hold."""
    return [str(c[KEY]) for c in (networks or {}).values() if c.get(KEY)]


async def claim(eng: Any, ref: str, cfg: dict[str, Any], container_id: str = ""
                ) -> tuple[str, dict[str, Any]] | None:
    """An attachment for one requested network: (the network's name, the endpoint
    settings with the allocated address and the attachment id), or None when ``ref`` is a
    local network or this node is in no swarm (the local path then answers as before)."""
    if cfg.get(KEY) or not _is_swarm_ref(eng, ref):
        return None
    node = _node(eng)
    if node is None:
        return None
    ipam = dict(cfg.get("IPAMConfig") or {})
    aliases = [str(a) for a in cfg.get("Aliases") or []]
    att = await node.attach_network(ref, container_id, aliases,
                                    str(ipam.get("IPv4Address") or ""))
    out = dict(cfg)
    ipam["IPv4Address"] = att.address.split("/", 1)[0]
    out["IPAMConfig"] = ipam
    out[KEY] = att.id
    return str(att.network.get("Name") or ref), out


async def release(eng: Any, ids: Iterable[str]) -> None:
    """Give attachments back; a failure is logged (the agent collects what is left)."""
    node = _node(eng)
    for aid in ids:
        if node is None:
            log.info("swarm attachment %s kept: this node is in no swarm now", aid)
            continue
        try:
            await node.detach_network(aid)
        except errors.LabkitError as err:
            log.warning("swarm attachment %s not given back: %s", aid, err)


async def container_removed(eng: Any, rec: Any) -> None:
    """The engine's removed hook (Containers.removed_hooks): a container record is gone,
    so the attachments it held go back now, whichever path removed it."""
    await release(eng, held(rec.networks))


async def for_create(eng: Any, spec: Any) -> list[str]:
    """Claim the swarm networks a create request names (HostConfig.NetworkMode and
    NetworkingConfig.EndpointsConfig), rewriting ``spec.endpoints`` in place; the ids
    taken, for the caller to give back when the create fails."""
    mode = str(spec.host_config.get("NetworkMode") or "")
    refs = list(dict.fromkeys([mode, *spec.endpoints]))
    taken: list[str] = []
    try:
        for ref in refs:
            got = await claim(eng, ref, dict(spec.endpoints.get(ref) or {}))
            if got is not None:
                spec.endpoints[ref] = got[1]
                taken.append(got[1][KEY])
    except BaseException:
        await release(eng, taken)
        raise
    return taken
