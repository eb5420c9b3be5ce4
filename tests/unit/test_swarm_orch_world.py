"""A small swarm in a MemoryStore for the orchestrator's tests (World), and the tests of
the leader's plumbing: snapshot, ingress creation, conflicts, time stamps."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from fakes.swarm_store import MemoryStore

from labkit import errors
from labkit.engine.swarm import ca
from labkit.engine.swarm.orchestrator import Leader
from labkit.engine.swarm.orchestrator.model import parse_ts, ts
from labkit.engine.swarm.store import ATTACH, CLUSTER, NETWORKS, NODES, SERVICES, TASKS

Obj = dict[str, Any]
NS = 1_000_000_000


def network(name: str, subnet: str, *, ingress: bool = False, vni: int = 4097,
            options: Obj | None = None) -> Obj:
    """A swarm network as SWARM13.md stores it."""
    net_id = ca.new_id()
    gw = subnet.rsplit(".", 1)[0] + ".1"
    return {"Name": name, "Id": net_id, "Created": ts(0), "Scope": "swarm",
            "Driver": "overlay", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None,
                     "Config": [{"Subnet": subnet, "Gateway": gw}]},
            "Internal": False, "Attachable": False, "Ingress": ingress,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": None,
            "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(vni),
                        **(options or {})},
            "Labels": {}, "_VNI": vni}


class World:
    """Nodes, networks and services in a MemoryStore; agents simulated by run()."""

    def __init__(self, nodes: int = 3, *, ingress: bool = True) -> None:
        self.store = MemoryStore()
        self.t = 1_700_000_000.0
        self.made_ingress = 0
        self.leader = Leader(self.store, now=lambda: self.t,
                             make_ingress=self._make_ingress if ingress else self._no_ingress)
        self._do(self.store.create(CLUSTER, {"ID": "c1", "Spec": {"Name": "default",
                                                                  "Orchestration": {}}}))
        for i in range(1, nodes + 1):
            self.add_node(f"node{i}")

    # ------------------------------------------------------------------ setup
    def _do(self, coro: Any) -> Any:
        return asyncio.run(coro)

    async def _make_ingress(self, store: MemoryStore, body: Obj) -> Obj:
        assert body["Ingress"] is True and body["Name"] == "ingress"
        self.made_ingress += 1
        net = network("ingress", "10.0.0.0/24", ingress=True, vni=4096)
        await store.create(NETWORKS + net["Id"], net)
        return net

    async def _no_ingress(self, store: MemoryStore, body: Obj) -> None:
        raise errors.AlreadyExistsError("network", "ingress")

    def add_node(self, nid: str, *, role: str = "worker", labels: dict[str, str] | None = None,
                 availability: str = "active", alive: bool = True) -> None:
        node = {"ID": nid, "Spec": {"Labels": labels or {}, "Role": role,
                                    "Availability": availability},
                "Description": {"Hostname": f"host-{nid}",
                                "Platform": {"Architecture": "x86_64", "OS": "linux"},
                                "Engine": {"Labels": {}}},
                "Status": {"State": "unknown", "Addr": "192.0.2.1"}}
        self._do(self.store.put(NODES + nid, node))
        if alive:
            self.store.alive_nodes.add(nid)

    def edit_node(self, nid: str, **spec: Any) -> None:
        node, _ = self.store.data[NODES + nid]
        node = copy.deepcopy(node)
        node["Spec"].update(spec)
        self._do(self.store.put(NODES + nid, node))

    def add_network(self, name: str, subnet: str, **kw: Any) -> str:
        net = network(name, subnet, **kw)
        self._do(self.store.create(NETWORKS + net["Id"], net))
        return str(net["Id"])

    def add_service(self, name: str, *, replicas: int | None = 1, mode: str = "replicated",
                    template: Obj | None = None, **spec: Any) -> str:
        sid = ca.new_id()
        tmpl = {"ContainerSpec": {"Image": "busybox"}, "ForceUpdate": 0}
        tmpl.update(template or {})
        body: Obj = {"Name": name, "Labels": {}, "TaskTemplate": tmpl,
                     "Mode": {"Global": {}} if mode == "global"
                     else {"Replicated": {"Replicas": replicas}}}
        body.update(spec)
        svc = {"ID": sid, "CreatedAt": ts(self.t), "UpdatedAt": ts(self.t), "Spec": body,
               "Endpoint": {"Spec": body.get("EndpointSpec", {})}, "_SpecVersion": 1}
        self._do(self.store.create(SERVICES + sid, svc))
        return sid

    def service(self, sid: str) -> Obj:
        return copy.deepcopy(self.store.data[SERVICES + sid][0])

    def update_service(self, sid: str, change: Any, *, rollback: bool = False) -> None:
        """As the control API does: PreviousSpec = old spec, version + 1."""
        svc, version = self.store.data[SERVICES + sid]
        svc = copy.deepcopy(svc)
        if rollback:
            svc["Spec"], svc["PreviousSpec"] = svc["PreviousSpec"], svc["Spec"]
            svc["UpdateStatus"] = {"State": "rollback_started", "StartedAt": ts(self.t),
                                   "Message": "manually requested rollback"}
        else:
            svc["PreviousSpec"] = copy.deepcopy(svc["Spec"])
            change(svc["Spec"])
        svc["_SpecVersion"] += 1
        self._do(self.store.cas(SERVICES + sid, svc, version))

    # ------------------------------------------------------------------ running
    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self._do(self.leader.tick())

    def settle(self, limit: int = 20) -> None:
        """Tick until the leader has nothing more to write (bounded)."""
        for _ in range(limit):
            self.tick()
            if not self.leader.wrote:
                return
        raise AssertionError("the leader never settled")

    def tasks(self, sid: str | None = None, *, desired: str | None = None,
              state: str | None = None) -> list[Obj]:
        out = [copy.deepcopy(o) for k, (o, _) in sorted(self.store.data.items())
               if k.startswith(TASKS)]
        return [t for t in out if (sid is None or t["ServiceID"] == sid)
                and (desired is None or t["DesiredState"] == desired)
                and (state is None or t["Status"]["State"] == state)]

    def set_state(self, tid: str, state: str, exit_code: int | None = None) -> None:
        """An agent reports a task's state (at the world's time)."""
        task, version = self.store.data[TASKS + tid]
        task = copy.deepcopy(task)
        task["Status"] = {"Timestamp": ts(self.t), "State": state, "Message": state}
        if exit_code is not None:
            task["Status"]["ContainerStatus"] = {"ExitCode": exit_code}
        self._do(self.store.cas(TASKS + tid, task, version))

    def run(self) -> None:
        """Every live agent: assigned tasks meant to run start, the others stop."""
        for t in self.tasks():
            if not t["NodeID"] or t["NodeID"] not in self.store.alive_nodes:
                continue
            st = t["Status"]["State"]
            if t["DesiredState"] == "running" and st == "assigned":
                self.set_state(t["ID"], "running")
            elif t["DesiredState"] != "running" and st not in (
                    "complete", "shutdown", "failed", "rejected", "orphaned"):
                self.set_state(t["ID"], "shutdown")

    def converge(self, rounds: int = 10) -> None:
        for _ in range(rounds):
            self.settle()
            self.run()
        self.settle()

    def running(self, sid: str) -> list[Obj]:
        return [t for t in self.tasks(sid, desired="running") if t["Status"]["State"] == "running"]

    def attach(self) -> dict[str, str]:
        return {k.removeprefix(ATTACH): o["Addr"] for k, (o, _) in self.store.data.items()
                if k.startswith(ATTACH)}


# ---------------------------------------------------------------------- plumbing tests
def test_time_stamps_round_trip() -> None:
    assert abs(parse_ts(ts(1_700_000_000.25)) - 1_700_000_000.25) < 1e-6
    assert parse_ts("junk") == 0.0
    assert parse_ts(None) == 0.0


def test_ingress_network_is_made_once_when_missing() -> None:
    w = World()
    w.tick()
    assert w.made_ingress == 1
    w.settle()
    assert w.made_ingress == 1
    nets = [o for k, (o, _) in w.store.data.items() if k.startswith(NETWORKS)]
    assert [n["Name"] for n in nets] == ["ingress"]


def test_no_cluster_no_work() -> None:
    store = MemoryStore()
    leader = Leader(store, now=lambda: 0.0)
    asyncio.run(leader.tick())
    assert store.data == {} and leader.wrote == 0


def test_a_conflict_ends_the_tick_and_the_next_one_recovers() -> None:
    w = World()
    w.settle()
    net = w.add_network("back", "10.0.1.0/24")
    sid = w.add_service("web", replicas=2, template={"Networks": [{"Target": net}]})
    real_cas = w.store.cas
    calls = {"n": 0}

    async def racing_cas(key: str, obj: Obj, version: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise errors.ConflictError("update out of sequence")
        await real_cas(key, obj, version)

    w.store.cas = racing_cas  # type: ignore[method-assign]
    w.tick()                      # the service's VIP write conflicts: nothing follows
    assert calls["n"] == 1 and w.tasks(sid) == []
    w.settle()
    assert len(w.tasks(sid, state="assigned")) == 2
    assert w.service(sid)["Endpoint"]["VirtualIPs"][0]["NetworkID"] == net


def test_the_loop_acts_only_while_leading_and_wakes_early() -> None:
    w = World(nodes=1)
    sid = w.add_service("web", replicas=1)
    leading = {"now": False, "asked": 0}

    async def leads() -> bool:
        leading["asked"] += 1
        return leading["now"]

    async def main() -> None:
        loop = asyncio.create_task(w.leader.run(leads, period=30.0))
        while leading["asked"] < 1:
            await asyncio.sleep(0)
        assert w.tasks(sid) == []          # not the leader: nothing written
        leading["now"] = True
        w.leader.wake()                    # without this, 30 s until the next look
        for _ in range(1000):
            if w.tasks(sid, state="assigned"):
                break
            await asyncio.sleep(0.001)
        loop.cancel()
        try:
            await loop
        except asyncio.CancelledError:
            pass

    asyncio.run(asyncio.wait_for(main(), 10))
    assert len(w.tasks(sid, state="assigned")) == 1


def test_a_failing_ingress_maker_does_not_stop_the_orchestrator() -> None:
    w = World(nodes=1)

    async def broken(store: MemoryStore, body: Obj) -> None:
        raise errors.InvalidArgumentError("ingress", "subnet overlaps")

    w.leader.make_ingress = broken
    sid = w.add_service("web")
    w.settle()
    assert len(w.tasks(sid, state="assigned")) == 1


class _Etcd:
    """Just enough of EtcdClient for ClusterStore: a dict with mod revisions."""

    def __init__(self) -> None:
        self.kv: dict[bytes, tuple[bytes, int]] = {}
        self.rev = 1

    def _kv(self, key: bytes) -> Any:
        from labkit.engine.swarm.etcd.client import KV

        value, mod = self.kv[key]
        return KV(key, value, mod, mod, 1, 0)

    async def get(self, key: str) -> Any:
        return self._kv(key.encode()) if key.encode() in self.kv else None

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self.rev += 1
        self.kv[key.encode()] = (value, self.rev)
        return self.rev

    async def put_if(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> bool:
        have = self.kv.get(key.encode())
        if (have[1] if have else 0) != mod_revision:
            return False
        await self.put(key, value)
        return True

    async def range_prefix(self, prefix: str) -> list[Any]:
        return [self._kv(k) for k in sorted(self.kv) if k.startswith(prefix.encode())]

    async def delete(self, key: str) -> bool:
        return self.kv.pop(key.encode(), None) is not None


def test_the_leader_runs_over_the_real_sealed_store() -> None:
    """Every object the leader writes survives ClusterStore's JSON and sealing."""
    from labkit.engine.swarm.seal import DataKey
    from labkit.engine.swarm.store import ALIVE, ClusterStore

    async def main() -> list[Obj]:
        etcd = _Etcd()
        store = ClusterStore(etcd, DataKey.new())  # type: ignore[arg-type]
        await store.create(CLUSTER, {"ID": "c", "Spec": {"_KeyRotationS": 1}})
        for nid in ("n1", "n2"):
            await store.put(NODES + nid, {"ID": nid, "Spec": {"Role": "worker",
                                                              "Availability": "active"}})
            await etcd.put(ALIVE + nid, b"1")
        ing = network("ingress", "10.0.0.0/24", ingress=True, vni=4096)
        sec = network("sec", "10.0.7.0/24", options={"encrypted": ""})
        for net in (ing, sec):
            await store.create(NETWORKS + net["Id"], net)
        await store.create(SERVICES + "s1", {
            "ID": "s1", "_SpecVersion": 1, "Endpoint": {},
            "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 3}},
                     "TaskTemplate": {"ContainerSpec": {"Image": "busybox"},
                                      "Networks": [{"Target": sec["Id"]}]},
                     "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]}}})
        leader = Leader(store, now=lambda: 1e9)
        for _ in range(3):
            await leader.tick()
        assert len(await store.list(ATTACH)) == 2
        cluster, _ = await store.must_get(CLUSTER, "swarm")
        assert len(cluster["_NetworkKeys"]) == 1
        return [t for t, _ in await store.list(TASKS)]

    tasks = asyncio.run(main())
    assert sorted(t["Status"]["State"] for t in tasks) == ["assigned"] * 3
    assert all(len(t["NetworksAttachments"]) == 2 for t in tasks)
