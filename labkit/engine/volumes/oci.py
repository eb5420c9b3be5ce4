"""Resolved mount points -> OCI runtime-spec ``mounts`` entries (config.json)."""

from __future__ import annotations

from typing import Any

__all__ = ["to_oci"]


def to_oci(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bind mounts for volumes and host paths (rbind unless NonRecursive, the propagation,
    ro when asked) and tmpfs mounts (moby's noexec,nosuid,nodev first, then size/mode)."""
    out = []
    for p in points:
        ro = [] if p["RW"] else ["ro"]
        if p["Type"] == "tmpfs":
            out.append({"destination": p["Destination"], "type": "tmpfs", "source": "tmpfs",
                        "options": ["noexec", "nosuid", "nodev", *p.get("Options", []), *ro]})
            continue
        rec = "rbind" if p.get("Recursive", True) else "bind"
        prop = p.get("Propagation") or "rprivate"
        out.append({"destination": p["Destination"], "type": "bind", "source": p["Source"],
                    "options": [rec, prop, *ro]})
    return out
