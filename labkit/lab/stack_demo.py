"""Notebook 16's stack: a small voting app (a web front and a vote counter, both busybox
httpd with a CGI script) built with labkit's builder on the lab, deployed from a compose file
with `stack deploy` (labkit.engine.swarm.stack), voted on through the routing mesh.

The images: built on the first manager and pushed to the lab's registry when the lab has one
(``SwarmLab(registry=True)``: every node pulls them from there, as a real swarm would), else
built on every node under the same name (then the deploy does not pin digests: each node's
build has its own).
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.lab.services_demo import ServiceLab, require, task_row
from labkit.lab.swarm_demo import _until

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["BROKEN", "COMPOSE", "IMAGES", "StackLab", "build_context", "error_lines",
           "parse_votes", "replicas_in", "require"]

NAMESPACE = "com.docker.stack.namespace"  # the label stack deploy puts on what it makes

_CGI_HEAD = '#!/bin/sh\necho "Content-Type: text/plain"\necho ""\n'
# The counter: keeps the votes in a file of its container, answers the totals.
COUNTER_VOTE = _CGI_HEAD + r'''touch /tmp/votes
c="${QUERY_STRING#choice=}"
case "$c" in cats|dogs) echo "$c" >> /tmp/votes;; esac
echo "cats=$(grep -c '^cats$' /tmp/votes) dogs=$(grep -c '^dogs$' /tmp/votes)"
'''
# The front: passes the vote to the service named "counter" (the embedded DNS of the stack's
# backend network), says which front task served it.
FRONT_VOTE = _CGI_HEAD + r'''echo "front $(hostname): $(timeout 5 wget -q -O - "http://counter/cgi-bin/vote?$QUERY_STRING")"
'''
DOCKERFILE = """FROM busybox
COPY --chmod=755 vote /www/cgi-bin/vote
COPY index.html /www/index.html
EXPOSE 80
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
"""
IMAGES = {"lkvote/front:1": FRONT_VOTE, "lkvote/counter:1": COUNTER_VOTE}

COMPOSE = """version: "3.8"
services:
  front:
    image: FRONT
    ports:
      - "8080:80"
    networks: [frontend, backend]
    deploy:
      replicas: 2
  counter:
    image: COUNTER
    networks: [backend]
    deploy:
      replicas: 1
networks:
  frontend:
  backend:
"""
# Two mistakes: a key compose does not have (line 5) and a count that is not a number (line 8).
BROKEN = """version: "3.8"
services:
  front:
    image: lkvote/front:1
    portz:
      - "8081:80"
    deploy:
      replicas: two
"""


# -- pure helpers (unit-tested) ------------------------------------------------------------

def build_context(vote_script: str, title: str) -> bytes:
    """The build context tar: Dockerfile, the CGI script, an index page."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text, mode in (("Dockerfile", DOCKERFILE, 0o644),
                                 ("vote", vote_script, 0o755),
                                 ("index.html", f"<h1>{title}</h1>\n", 0o644)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_VOTES = re.compile(r"cats=(\d+) dogs=(\d+)")


def parse_votes(answer: str) -> dict[str, Any]:
    """One answer of the front: which front task served it and the totals it reported."""
    front = answer.split(":", 1)[0].removeprefix("front ").strip() if answer else ""
    m = _VOTES.search(answer)
    return {"front": front, "cats": int(m.group(1)) if m else None,
            "dogs": int(m.group(2)) if m else None}


def error_lines(message: str, filename: str) -> list[int]:
    """The line numbers a compose error names (``FILE:LINE: ...``)."""
    return [int(n) for n in re.findall(rf"{re.escape(filename)}:(\d+)", message)]


def replicas_in(compose_text: str, service: str) -> int | None:
    """``services.SERVICE.deploy.replicas`` of a compose text (None if absent)."""
    import yaml

    doc = yaml.safe_load(compose_text) or {}
    deploy = ((doc.get("services") or {}).get(service) or {}).get("deploy") or {}
    r = deploy.get("replicas")
    return r if isinstance(r, int) else None


# -- the lab -------------------------------------------------------------------------------

class StackLab(ServiceLab):
    """1 manager + 2 workers, with the lab's registry when measure.swarmlab has one."""

    def __init__(self, name: str = "nb16", subnet: str = "10.219.0.0/24") -> None:
        import inspect

        from labkit.measure.swarmlab import SwarmLab

        registry = "registry" in inspect.signature(SwarmLab).parameters
        super().__init__(name, subnet, managers=1, workers=2, registry=registry)
        self.refs: dict[str, str] = {}   # image name -> the reference the compose file uses
        self.compose_dir = Path(self.lab.nodes[0].base) / "stack"
        self.last_compose = ""

    def left_over(self) -> dict[str, list[str]]:
        """SwarmDemo's list, plus the lab registry's process and directory."""
        import psutil

        out = super().left_over()
        proc = dict(getattr(self.lab, "registry_proc", {}) or {})
        pid, base = int(proc.get("pid", 0) or 0), str(proc.get("base", ""))
        alive = False
        if pid:
            try:
                alive = psutil.Process(pid).create_time() == proc.get("ctime")
            except psutil.Error:
                alive = False
        out["registry"] = ([f"pid {pid}"] if alive else []) + \
            ([base] if base and Path(base).exists() else [])
        return out

    @property
    def registry(self) -> str:
        return str(getattr(self.lab, "registry", "") or "")

    def build_images(self, say: Callable[[str], None] = print) -> pd.DataFrame:
        """Build both images with labkit's builder (POST /build); push them to the lab's
        registry from m1, or build them on every node.  A row per build: node, image,
        seconds, image id."""
        import pandas as pd

        nodes = self.lab.nodes[:1] if self.registry else self.lab.nodes
        rows = []
        for n in nodes:
            c = n.client(timeout=300)
            for name, script in IMAGES.items():
                ref = f"{self.registry}/{name}" if self.registry else name
                t0 = time.monotonic()
                last: Mapping[str, Any] = {}
                for msg in c.images.build(build_context(script, name), tag=ref):
                    if "error" in msg:
                        raise errors.LabkitError(f"building {ref} on {n.name}: {msg['error']}")
                    last = msg if "aux" in msg else last
                if self.registry:
                    c.images.push(ref)
                took = time.monotonic() - t0
                say(f"{n.name}: {ref} built{' and pushed' if self.registry else ''} "
                    f"in {took:.1f} s")
                self.refs[name] = ref
                rows.append({"node": n.name, "image": ref, "seconds": round(took, 2),
                             "id": str((last.get("aux") or {}).get("ID", ""))[:19]})
        return pd.DataFrame(rows)

    def compose_text(self) -> str:
        """The notebook's compose file, with the image references of this lab."""
        return (COMPOSE.replace("FRONT", self.refs.get("lkvote/front:1", "lkvote/front:1"))
                .replace("COUNTER", self.refs.get("lkvote/counter:1", "lkvote/counter:1")))

    def deploy(self, text: str, stack: str = "voter", filename: str = "stack.yml"
               ) -> list[str]:
        """`docker stack deploy -c FILE STACK` with ``text`` written to FILE: the compose
        reader names every problem with its line before anything is made.  Returns what
        the deploy said (its progress and warnings)."""
        from labkit.engine.swarm.stack import compose, deploy

        self.compose_dir.mkdir(parents=True, exist_ok=True)
        path = self.compose_dir / filename
        path.write_text(text)
        said: list[str] = []
        c = compose.load(path)
        deploy.deploy(self.manager.client(), c, stack, say=said.append,
                      warn=lambda w: said.append(f"warning: {w}"),
                      resolve_image=bool(self.registry))
        self.last_compose = text
        return said

    def deploy_error(self, text: str, filename: str = "broken.yml") -> str:
        """The error a deploy of ``text`` ends with ('' if it went through)."""
        try:
            self.deploy(text, filename=filename)
        except errors.LabkitError as err:
            return str(err)
        return ""

    def stacks(self) -> pd.DataFrame:
        """`docker stack ls`."""
        import pandas as pd

        from labkit.engine.swarm.stack import deploy

        rows = [{"name": n, "services": k} for n, k in deploy.list_stacks(self.manager.client())]
        return pd.DataFrame(rows, columns=["name", "services"])

    def stack_services(self, stack: str = "voter") -> pd.DataFrame:
        """`docker stack services STACK`: name, mode, running/desired replicas, image, ports."""
        import pandas as pd

        rows = []
        for s in self.manager.api("GET", "/services", status=True,
                                  filters={"label": [f"{NAMESPACE}={stack}"]}):
            spec, st = s["Spec"], s.get("ServiceStatus") or {}
            ports = (s.get("Endpoint") or {}).get("Ports") or []
            rows.append({"name": spec["Name"], "mode": next(iter(spec.get("Mode") or {}), ""),
                         "replicas": f"{st.get('RunningTasks', '?')}/"
                                     f"{st.get('DesiredTasks', '?')}",
                         "image": spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0],
                         "ports": ", ".join(f"*:{p.get('PublishedPort')}->"
                                            f"{p.get('TargetPort')}/{p.get('Protocol')}"
                                            for p in ports)})
        return pd.DataFrame(rows, columns=["name", "mode", "replicas", "image", "ports"])

    def stack_ps(self, stack: str = "voter") -> pd.DataFrame:
        """`docker stack ps STACK`."""
        import pandas as pd

        rows = []
        for s in self.manager.api("GET", "/services",
                                  filters={"label": [f"{NAMESPACE}={stack}"]}):
            rows += [task_row(t, self.hostnames(), s["Spec"]["Name"])
                     for t in self.tasks(s["ID"]) if t.get("DesiredState") == "running"]
        return pd.DataFrame(rows)

    def stack_networks(self, stack: str = "voter") -> pd.DataFrame:
        import pandas as pd

        nets = self.manager.api("GET", "/networks",
                                filters={"label": [f"{NAMESPACE}={stack}"]})
        return pd.DataFrame([{"name": n["Name"], "driver": n["Driver"], "scope": n["Scope"],
                              "subnet": (n.get("IPAM") or {}).get("Config", [{}])[0]
                              .get("Subnet", "")} for n in nets])

    def converge(self, stack: str = "voter", timeout: float = 120.0) -> pd.DataFrame:
        """Wait until every service of the stack runs as many tasks as it wants, and every
        front task reaches the counter by its name (a node learns of a task on another
        node from its next assignment snapshot, a moment after the managers)."""
        def done() -> bool:
            svcs = self.manager.api("GET", "/services", status=True,
                                    filters={"label": [f"{NAMESPACE}={stack}"]})
            return bool(svcs) and all(
                (s.get("ServiceStatus") or {}).get("RunningTasks")
                == (s.get("ServiceStatus") or {}).get("DesiredTasks") for s in svcs)

        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise errors.UnavailableError(
                    f"stack {stack} did not converge in {timeout:.0f} s: "
                    + self.stack_ps(stack).to_string())
            time.sleep(0.3)
        front = f"{stack}_front"
        fronts = self.tasks(front, running=True)
        for t in fronts:
            _until(lambda t=t: "lkvote/counter" in self.exec(  # type: ignore[misc]
                t, ["timeout", "3", "wget", "-q", "-O", "-", "http://counter/"]).out,
                   max(5.0, deadline - time.monotonic()), f"{front} reaching the counter")
        # and w1's routing mesh knows every front (its ingress backends come with its next
        # snapshot too); /cgi-bin/vote without a choice counts nothing
        names = {self.container(t)[:12] for t in fronts}
        _until(lambda: names <= {parse_votes(a)["front"] for a in self.from_outside(
            "w1", 8080, 2 * len(names), "/cgi-bin/vote")},
               max(5.0, deadline - time.monotonic()), "w1's mesh reaching every front")
        return self.stack_services(stack)

    def vote(self, choices: list[str], via: str = "w1") -> pd.DataFrame:
        """One request per choice to node ``via``'s published port 8080 (the routing
        mesh), from the underlay; a row per answer: which front served it, the totals."""
        import pandas as pd

        rows = []
        for ch in choices:
            ans = self.from_outside(via, 8080, 1, f"/cgi-bin/vote?choice={ch}")[0]
            rows.append({"vote": ch, "answer": ans, **parse_votes(ans)})
        return pd.DataFrame(rows)

    def remove(self, stack: str = "voter") -> list[str]:
        """`docker stack rm STACK`: services first, then networks (retried while the
        services' tasks still use them)."""
        from labkit.engine.swarm.stack import deploy

        said: list[str] = []
        deploy.remove(self.manager.client(), stack, say=said.append)
        return said

    def leftovers(self, stack: str = "voter") -> dict[str, int]:
        """What of the stack the managers still list: services, networks (after rm: 0)."""
        flt = {"label": [f"{NAMESPACE}={stack}"]}
        deadline = time.monotonic() + 30
        while True:
            try:
                got = {"services": len(self.manager.api("GET", "/services", filters=flt)),
                       "networks": len(self.manager.api("GET", "/networks", filters=flt))}
            except errors.NotFoundError:
                # a network the node is dropping right then: GET /networks can answer 404
                # for it (a race in the daemon's listing); the next look is consistent
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
                continue
            if not any(got.values()) or time.monotonic() > deadline:
                return got
            time.sleep(0.3)
