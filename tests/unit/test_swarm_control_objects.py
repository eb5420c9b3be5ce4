"""The control API's secrets, configs and swarm networks over MemoryStore: sizes, names,
labels-only updates, removal refused while in use, subnets and VNIs reserved, overlaps
refused naming both networks."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fakes.swarm_store import MemoryStore

from labkit import errors
from labkit.engine.swarm.control import Control, create_network
from labkit.engine.swarm.store import CLUSTER, NAMES, SECRETS, SUBNETS, VNIS


def run(test: Callable[[Control, MemoryStore], Awaitable[None]]) -> None:
    store = MemoryStore()
    asyncio.run(test(Control(store), store))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def user(name: str, secret: str) -> dict[str, Any]:
    return {"Name": name, "TaskTemplate": {"ContainerSpec": {
        "Image": "alpine", "Secrets": [{"SecretName": secret, "File": {
            "Name": secret, "UID": "0", "GID": "0", "Mode": 0o444}}]}}}


def test_secret_lifecycle() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        sid = await ctl.create_secret("secret", {"Name": "sec1", "Labels": {},
                                                 "Data": b64(b"s3cr3t-value\n")})
        got = await ctl.secret("secret", "sec1")
        assert got["ID"] == sid and got["Spec"] == {"Name": "sec1", "Labels": {}}
        assert "Data" not in str(got) and "_Data" in store.data[SECRETS + sid][0]
        with pytest.raises(errors.ConflictError, match="secret sec1 already exists"):
            await ctl.create_secret("secret", {"Name": "sec1", "Data": b64(b"x")})
        assert [s["ID"] for s in await ctl.secrets("secret", {"names": ["sec1"]})] == [sid]
        assert await ctl.secrets("secret", {"names": ["sec"]}) == []
        assert len(await ctl.secrets("secret", {"name": ["sec"]})) == 1
        await ctl.update_secret("secret", sid, got["Version"]["Index"],
                                {"Name": "sec1", "Labels": {"a": "b"}})
        assert (await ctl.secret("secret", sid))["Spec"]["Labels"] == {"a": "b"}
        await ctl.update_secret("secret", sid, (await ctl.secret("secret", sid))["Version"][
            "Index"], {"Name": "sec1", "Labels": {"a": "b"}, "Data": b64(b"s3cr3t-value\n")})
        with pytest.raises(errors.InvalidArgumentError, match="only updates to Labels"):
            await ctl.update_secret("secret", sid, 0, {"Name": "sec1", "Data": b64(b"n")})
        await ctl.create_service(user("svc", "sec1"))
        svc = await ctl.service("svc")
        ref = svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]
        assert ref["SecretID"] == sid and ref["SecretName"] == "sec1"
        with pytest.raises(errors.InvalidArgumentError) as exc:
            await ctl.remove_secret("secret", "sec1")
        assert exc.value.problem == ("rpc error: code = InvalidArgument desc = secret 'sec1' is "
                                     "in use by the following service: svc")
        await ctl.remove_service("svc")
        await ctl.remove_secret("secret", "sec1")
        assert store.keys(SECRETS) == [] and NAMES + "secrets/sec1" not in store.data
    run(t)


@pytest.mark.parametrize("size", [0, 500 * 1024 + 1])
def test_secret_size_limits(size: int) -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        with pytest.raises(errors.InvalidArgumentError,
                           match="secret data must be larger than 0 and less than 500KB"):
            await ctl.create_secret("secret", {"Name": "big", "Data": b64(b"x" * size)})
        assert store.keys() == []
    run(t)


def test_secret_refs_must_exist_and_configs_show_data() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        with pytest.raises(errors.InvalidArgumentError, match="secret nope not found"):
            await ctl.create_service(user("svc", "nope"))
        assert store.keys() == []
        cid = await ctl.create_secret("config", {"Name": "cfg", "Data": b64(b"k=v")})
        assert (await ctl.secret("config", cid))["Spec"]["Data"] == b64(b"k=v")
        with pytest.raises(errors.InvalidArgumentError, match="Data"):
            await ctl.create_secret("config", {"Name": "c2", "Data": "not base64!"})
    run(t)


def test_networks_subnets_vnis_and_overlap() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        await store.create(CLUSTER, {"DefaultAddrPool": ["10.10.0.0/16"], "SubnetSize": 24})
        ing = await create_network(store, {"Name": "ingress"}, ingress=True)
        assert ing["IPAM"]["Config"] == [{"Subnet": "10.10.0.0/24", "Gateway": "10.10.0.1"}]
        assert ing["_VNI"] == 4096 and ing["Ingress"] is True
        a = await ctl.create_network({"Name": "a", "Driver": "overlay", "Attachable": True,
                                      "Options": {"encrypted": ""}, "Labels": {"x": "1"},
                                      "IPAM": {"Driver": "default", "Options": {},
                                               "Config": []}, "CheckDuplicate": True})
        assert a["IPAM"]["Config"][0]["Subnet"] == "10.10.1.0/24" and "_VNI" not in a
        assert a["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4097"
        assert a["Scope"] == "swarm" and a["Attachable"] is True
        with pytest.raises(errors.ConflictError, match="routing-mesh"):
            await ctl.create_network({"Name": "ingress", "Driver": "overlay"})
        with pytest.raises(errors.ConflictError, match="network with name a already exists"):
            await ctl.create_network({"Name": "a", "Driver": "overlay"})
        with pytest.raises(errors.ConflictError) as exc:
            await ctl.create_network({"Name": "b", "Driver": "overlay", "IPAM": {
                "Config": [{"Subnet": "10.10.0.0/16"}]}})
        # both named: the new one and (the first found of) ingress / a
        assert "subnet 10.10.0.0/16 of network b overlaps with subnet 10.10." in str(exc.value)
        assert str(exc.value).endswith(("of network ingress", "of network a"))
        assert NAMES + "networks/b" not in store.data
        b = await ctl.create_network({"Name": "b", "Driver": "overlay", "IPAM": {
            "Config": [{"Subnet": "192.168.7.0/24", "Gateway": "192.168.7.254"}]}})
        assert b["IPAM"]["Config"][0]["Gateway"] == "192.168.7.254"
        assert b["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4098"
        assert [n["Name"] for n in await ctl.networks({"label": ["x=1"]})] == ["a"]
        await ctl.remove_network("a")
        assert SUBNETS + "10.10.1.0_24" not in store.data and VNIS + "4097" not in store.data
        # a's VNI is not handed out again at once (nodes may still hold its VXLAN device)
        c = await ctl.create_network({"Name": "c", "Driver": "overlay"})
        assert c["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4099"
        await ctl.remove_network("c")
        await ctl.create_service({"Name": "web", "TaskTemplate": {"ContainerSpec": {
            "Image": "nginx"}}, "EndpointSpec": {"Ports": [{"TargetPort": 80}]}})
        with pytest.raises(errors.ConflictError, match="ingress network cannot be removed"):
            await ctl.remove_network("ingress")
    run(t)


@pytest.mark.parametrize(("body", "text"), [
    ({"Name": "x", "Driver": "overlay", "Options": {"com.docker.network.bridge.name": "y"}},
     "com.docker.network.bridge.name"),
    ({"Name": "x", "Driver": "overlay", "Ingress": True}, "ingress"),
    ({"Name": "x/y", "Driver": "overlay"}, "invalid network name"),
    ({"Name": "x", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24",
                                                             "IPRange": "10.0.0.0/25"}]}},
     "IPRange"),
    ({"Name": "x", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "fd00::/64"}]}},
     "IPv4"),
    ({"Name": "x", "Driver": "overlay", "Options": {"com.docker.network.driver.mtu": "9"}},
     "MTU"),
])
def test_network_refusals(body: dict[str, Any], text: str) -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        with pytest.raises(errors.InvalidArgumentError, match=text):
            await ctl.create_network(body)
        assert store.keys() == []
    run(t)


def test_lookups_say_what_moby_says() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        for call in (ctl.service("nope"), ctl.secret("secret", "nope"),
                     ctl.secret("config", "nope"), ctl.task("nope"), ctl.network("nope")):
            with pytest.raises(errors.NotFoundError) as exc:
                await call
            assert exc.value.message.endswith(" nope not found")  # type: ignore[attr-defined]
        with pytest.raises(errors.NotFoundError):
            await ctl.service("../x")
    run(t)


def test_network_held_by_running_tasks_of_live_services_only() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        from labkit.engine.swarm.store import TASKS

        net = await ctl.create_network({"Name": "n", "Driver": "overlay"})
        sid = (await ctl.create_service({"Name": "s", "TaskTemplate": {
            "ContainerSpec": {"Image": "a"}, "Networks": [{"Target": "n"}]}}))["ID"]
        await store.create(TASKS + "t1", {"ID": "t1", "ServiceID": sid, "DesiredState": "running",
                                          "Status": {"State": "running"},
                                          "NetworksAttachments": [{"Network": {
                                              "Id": net["Id"]}}]})
        await store.create(TASKS + "t2", {"ID": "t2", "ServiceID": "", "DesiredState": "running",
                                          "Status": {"State": "running"},
                                          "_Attachment": {"ContainerID": "c"},
                                          "NetworksAttachments": [{"Network": {
                                              "Id": net["Id"]}}]})
        await ctl.remove_service("s")  # `stack rm`: services, then the networks at once
        with pytest.raises(errors.ConflictError, match="is in use by task t2"):
            await ctl.remove_network("n")  # a standalone container's attachment holds it
        await store.delete(TASKS + "t2")
        await ctl.remove_network("n")
    run(t)


def test_overlapping_creates_that_race_do_not_both_succeed() -> None:
    class Racing(MemoryStore):
        """Another manager writes 10.30.0.0/24 right after this one checked the subnets."""

        raced = False

        async def create(self, key: str, obj: dict[str, Any]) -> None:
            await super().create(key, obj)
            if key.startswith(SUBNETS) and not self.raced:
                self.raced = True
                self.data["/lk/swarm/networks/zzz"] = ({
                    "Id": "zzz", "Name": "other", "IPAM": {"Config": [
                        {"Subnet": "10.30.0.0/24"}]}}, self.revision)

    store = Racing()

    async def t() -> None:
        ctl = Control(store)
        with pytest.raises(errors.ConflictError, match="overlaps with subnet 10.30.0.0/24"):
            await ctl.create_network({"Name": "mine", "Driver": "overlay", "IPAM": {
                "Config": [{"Subnet": "10.30.0.0/16"}]}})
        # nothing of "mine" is left (the VNI cursor is the allocator's, not the network's)
        assert [k for k in sorted(store.data) if k != VNIS + "last"] == [
            "/lk/swarm/networks/zzz"]
    asyncio.run(t())
