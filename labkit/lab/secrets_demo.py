"""Notebook 15's secrets: where a swarm secret exists in clear, and where it never does.

A secret is stored sealed in the managers' store and sent only to the nodes that run a task
of a service that uses it; there the node writes it into a tmpfs of the task's own (memory,
never disk) and bind-mounts the file read-only at /run/secrets/NAME in the container.  The
notebook looks at all of that from the outside: the container's mountinfo, every node's
tmpfs mounts, and a byte search for the secret's value through every file of every node's
directories (the etcd data included).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.lab.services_demo import ServiceLab, refused, require
from labkit.lab.swarm_demo import _until

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["MAX_SECRET", "SecretsLab", "parse_mountinfo", "require"]

MAX_SECRET = 500 * 1024  # swarmkit's MaxSecretSize (api/validation/secrets.go): 500 KiB
_SCAN_MAX = 64 << 20     # files larger than this are not searched (none in a lab node)


def parse_mountinfo(text: str, under: str = "/run/secrets") -> list[dict[str, str]]:
    """The mounts at or below ``under`` in a /proc/PID/mountinfo text (proc(5): fields up to
    the " - " separator, then fs type, source, super options)."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 6 or len(r) < 2:
            continue
        point = f[4]
        if point == under or point.startswith(under.rstrip("/") + "/"):
            out.append({"mount point": point, "fstype": r[0], "options": f[5],
                        "super options": r[2] if len(r) > 2 else ""})
    return out


def find_bytes(base: str | Path, needle: bytes) -> list[str]:
    """Regular files under ``base`` (not following symlinks, not crossing into /proc-like
    trees) whose content contains ``needle``."""
    if len(needle) < 8:
        raise errors.InvalidArgumentError("needle", "at least 8 bytes, or it is found by chance")
    hits = []
    for root, _dirs, files in os.walk(base):
        for name in files:
            p = Path(root, name)
            try:
                if not p.is_file() or p.is_symlink() or p.stat().st_size > _SCAN_MAX:
                    continue
                if needle in p.read_bytes():
                    hits.append(str(p.relative_to(base)))
            except OSError:
                continue  # a socket, a file gone meanwhile
    return sorted(hits)


def _replicas(service: Mapping[str, Any]) -> int:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    return int((mode.get("Replicated") or {}).get("Replicas", 1))


class SecretsLab(ServiceLab):
    """1 manager + 2 workers; the service that uses the secret runs on w1 only."""

    def __init__(self, name: str = "nb15", subnet: str = "10.218.0.0/24") -> None:
        super().__init__(name, subnet, managers=1, workers=2)
        self.values: dict[str, bytes] = {}  # what this notebook created, for the scans

    # secrets
    def create_secret(self, name: str, data: bytes) -> str:
        """`docker secret create NAME -`: the data goes base64 in the body, once."""
        got = self.manager.api("POST", "/secrets/create", {
            "Name": name, "Data": base64.b64encode(data).decode()})
        self.values[name] = data
        return str(got["ID"])

    def secrets(self) -> pd.DataFrame:
        """`docker secret ls` (GET /secrets): what a manager tells about each secret."""
        import pandas as pd

        rows = [{"id": s["ID"][:12], "name": s["Spec"]["Name"], "created": s["CreatedAt"],
                 "fields": ", ".join(sorted(s)), "has Data": "Data" in s["Spec"]}
                for s in self.manager.api("GET", "/secrets")]
        return pd.DataFrame(rows, columns=["id", "name", "created", "fields", "has Data"])

    def secret_id(self, name: str) -> str:
        for s in self.manager.api("GET", "/secrets", filters={"name": [name]}):
            if s["Spec"]["Name"] == name:
                return str(s["ID"])
        raise errors.NotFoundError("secret", name)

    def remove_secret(self, name: str) -> None:
        """`docker secret rm NAME`."""
        self.manager.api("DELETE", f"/secrets/{self.secret_id(name)}")

    def refusals(self, in_use: str) -> pd.DataFrame:
        """What the managers refuse: removing ``in_use`` (a service uses it), a secret of
        500 KiB + 1 byte, an empty one.  Each row: the attempt and the error it ended with."""
        import pandas as pd

        big = os.urandom(MAX_SECRET + 1)
        rows = [{"attempt": f"secret rm {in_use} (in use)",
                 "refused with": refused(lambda: self.remove_secret(in_use))},
                {"attempt": f"secret create big ({len(big)} bytes)",
                 "refused with": refused(lambda: self.create_secret("lk-big", big))},
                {"attempt": "secret create empty (0 bytes)",
                 "refused with": refused(lambda: self.create_secret("lk-empty", b""))}]
        return pd.DataFrame(rows)

    def reference(self, name: str, target: str | None = None) -> dict[str, Any]:
        """A service's SecretReference: the file /run/secrets/TARGET, root's, mode 0444."""
        return {"SecretID": self.secret_id(name), "SecretName": name,
                "File": {"Name": target or name, "UID": "0", "GID": "0", "Mode": 0o444}}

    def swap_secret(self, service: str, old: str, new: str, target: str,
                    timeout: float = 60.0) -> None:
        """`docker service update --secret-rm OLD --secret-add source=NEW,target=TARGET`,
        then wait (as the CLI does) until the update has replaced every task: a task's
        secrets are fixed when it starts, so the new value needs new tasks."""
        ref = self.reference(new, target)

        def change(spec: dict[str, Any]) -> None:
            cs = spec["TaskTemplate"]["ContainerSpec"]
            cs["Secrets"] = [s for s in cs.get("Secrets") or []
                             if s.get("SecretName") != old] + [ref]

        self.update_service(service, change)
        want = _replicas(self.service(service))

        def updated() -> bool:
            running = self.tasks(service, running=True)
            return len(running) == want and all(
                any(s.get("SecretName") == new for s in
                    ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Secrets") or [])
                for t in running)

        _until(updated, timeout, f"every task of {service} running with {new}")

    def service_secrets(self, service: str) -> list[dict[str, Any]]:
        spec = self.service(service)["Spec"]["TaskTemplate"]["ContainerSpec"]
        return list(spec.get("Secrets") or [])

    # inside the task
    def read_secret(self, task: Mapping[str, Any], target: str) -> bytes:
        """/run/secrets/TARGET as the task's container reads it."""
        r = self.exec(task, ["cat", f"/run/secrets/{target}"])
        if r.code != 0:
            raise errors.NotFoundError(f"/run/secrets/{target} in task", str(task["ID"])[:12],
                                       hint=r.err.strip() or None)
        return r.out.encode()

    def mounts(self, task: Mapping[str, Any]) -> pd.DataFrame:
        """The container's own mounts under /run/secrets (its /proc/self/mountinfo)."""
        import pandas as pd

        r = self.exec(task, ["cat", "/proc/self/mountinfo"])
        return pd.DataFrame(parse_mountinfo(r.out),
                            columns=["mount point", "fstype", "options", "super options"])

    # on the nodes
    def where(self, name: str) -> pd.DataFrame:
        """Per node: its tmpfs mounts for tasks' secrets, and every file of the node's dirs
        (its LABKIT_ROOT with the etcd data, its LABKIT_RUN with those tmpfs) that holds the
        secret's value in clear."""
        import pandas as pd

        value = self.values[name]
        rows = []
        with open("/proc/self/mounts") as f:
            mounts = [ln.split() for ln in f]
        for n in self.lab.nodes:
            tasks_dir = f"{n.base}/run/swarm"
            tmpfs = [m[1][len(n.base):] for m in mounts
                     if m[2] == "tmpfs" and m[1].startswith(tasks_dir + "/")]
            rows.append({"node": n.name, "tmpfs for task secrets": len(tmpfs),
                         "files holding the value": find_bytes(n.base, value),
                         "tmpfs mounts": tmpfs})
        return pd.DataFrame(rows).set_index("node")

    def wait_gone(self, name: str, timeout: float = 30.0) -> pd.DataFrame:
        """Wait until no node holds ``name``'s value in a file or a task tmpfs; the last
        look (what is left, if the time ran out)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.where(name)
            clear = (now["tmpfs for task secrets"].sum() == 0
                     and now["files holding the value"].map(len).sum() == 0)
            if clear or time.monotonic() > deadline:
                return now
            time.sleep(0.5)
