"""`labkit-runtime list`: every container under the state root, as a table or JSON."""

from __future__ import annotations

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit.engine.runtime import state as statemod


def list_containers(root: str) -> list[dict[str, Any]]:
    """The OCI state of each container (status recomputed), sorted by id."""
    out = []
    for cid in statemod.list_ids(root):
        try:
            st = statemod.load(root, cid)
        except Exception:  # noqa: BLE001, S112 - a container deleted while we list is simply gone
            continue
        st.refresh()
        out.append(st.oci())
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """runc list's columns: ID PID STATUS BUNDLE CREATED OWNER."""
    head = ("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")
    lines = [head] + [(r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"])
                      for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)
