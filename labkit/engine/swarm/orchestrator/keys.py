"""The encrypted overlay's keys: made and rotated by the leader, kept in the cluster object.

Docker's documented behaviour ("Encrypt traffic on an overlay network"): the managers
generate the IPsec keys, hand them to the nodes that need them, and rotate them every
12 hours.  Here: "_NetworkKeys" = [primary, previous, ...], each 20 random bytes (16 of
AES-GCM key, 4 of salt, RFC 4106) with a Lamport tag that only grows; a new primary every
"_KeyRotationS" seconds (cluster Spec, default 43200), at most three keys kept so a node
that has not heard of the new key yet is still understood.

A rotation is staged, so no packet is ever sent with a key its receiver lacks: the new key
first joins the list as an accepted (not primary) key, every node installs its inbound
states from the next snapshot, and only STAGE_S later is it moved to the front, where nodes
start sending with it.  (A key that became primary at once would be dropped by every peer
whose snapshot had not arrived yet.)
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

from labkit.engine.swarm.orchestrator.model import Plan

__all__ = ["DEFAULT_ROTATION_S", "KEY_BYTES", "MAX_KEYS", "rotate"]

Obj = dict[str, Any]
DEFAULT_ROTATION_S = 43200
KEY_BYTES = 20
MAX_KEYS = 3
STAGE_S = 5.0  # >> the dispatcher's push delay (~0.2 s) plus a node's kernel update


def encrypted(networks: dict[str, Obj]) -> bool:
    return any("encrypted" in (n.get("Options") or {}) for n in networks.values())


def rotation_s(cluster: Obj) -> float:
    got = (cluster.get("Spec") or {}).get("_KeyRotationS") or cluster.get("_KeyRotationS")
    return float(got) if got else float(DEFAULT_ROTATION_S)


def rotate(plan: Plan, rand: Callable[[int], bytes] = secrets.token_bytes) -> bool:
    """Make the first key, or a new primary when the current one is due; True if so.
    Nothing happens while no network is encrypted (keys already made are kept)."""
    if not encrypted(plan.networks):
        return False
    keys: list[Obj] = list(plan.cluster.get("_NetworkKeys") or [])
    made = float(plan.cluster.get("_NetworkKeyAt") or 0)
    staged = plan.cluster.get("_NetworkKeyStaged")
    if staged is not None:  # promote the staged key once every node has had time to take it
        if plan.now - float(staged) < STAGE_S:
            return False
        newest = max(keys, key=lambda k: int(k.get("Tag", 0)))
        rest = [k for k in keys if k is not newest]
        plan.cluster["_NetworkKeys"] = [newest, *rest][:MAX_KEYS]
        plan.cluster.pop("_NetworkKeyStaged")
        plan.cluster["_NetworkKeyAt"] = plan.now
        return True
    if keys and plan.now - made < rotation_s(plan.cluster):
        return False
    tag = max((int(k.get("Tag", 0)) for k in keys), default=0) + 1
    fresh = {"Key": base64.b64encode(rand(KEY_BYTES)).decode(), "Tag": tag}
    if not keys:  # the first key: nobody sends with anything else yet
        plan.cluster["_NetworkKeys"] = [fresh]
        plan.cluster["_NetworkKeyAt"] = plan.now
        return True
    plan.cluster["_NetworkKeys"] = [*keys, fresh]  # accepted, not yet primary
    plan.cluster["_NetworkKeyStaged"] = plan.now
    return True
