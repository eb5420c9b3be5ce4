"""Standalone containers on swarm networks, the node's side (swarm/attach.py, SwarmNode's
attach_network / detach_network, the agent's collection of orphaned attachments) with
stand-ins for the engine and the manager connection: which networks are claimed, what the
endpoint settings become, Docker's refusal text, nothing left behind on failure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
import pytest

from labkit import errors
from labkit.engine.networks.store import NetworkNotFoundError
from labkit.engine.swarm import attach
from labkit.engine.swarm.agent import agent as agent_mod
from labkit.engine.swarm.node import Attachment, SwarmNode
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.state import NodeFiles

INFO = {"ID": "n" * 25, "Name": "atnet", "VNI": 4097, "Subnet": "10.31.7.0/24",
        "Gateway": "10.31.7.1", "Encrypted": False, "MTU": None, "Attachable": True}


class FakeNets:
    def __init__(self, local: dict[str, str], fail_ensure: bool = False) -> None:
        self.local = local          # name -> scope
        self.fail_ensure = fail_ensure
        self.ensured: list[tuple[Any, ...]] = []

    def network(self, ref: str) -> Any:
        if ref not in self.local:
            raise NetworkNotFoundError(ref)
        return SimpleNamespace(name=ref, scope=self.local[ref])

    def ensure_swarm(self, info: dict[str, Any], addr: str, port: int) -> None:
        if self.fail_ensure:
            raise errors.ConflictError("VNI taken")
        self.ensured.append((info["ID"], addr, port))


class FakeNode:
    """SwarmNode's attach side, for attach.py."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.agent = object()
        self.refuse = refuse
        self.taken: list[str] = []
        self.given_back: list[str] = []

    def local_state(self) -> str:
        return "active"

    async def attach_network(self, ref: str, cid: str, aliases: list[str],
                             address: str) -> Attachment:
        if ref in self.refuse:
            raise errors.ForbiddenError(f"network {ref} not manually attachable")
        aid = f"att-{ref}"
        self.taken.append(aid)
        return Attachment(aid, {**INFO, "Name": ref}, address + "/24" if address
                          else "10.31.7.9/24")

    async def detach_network(self, aid: str) -> None:
        self.given_back.append(aid)


def _engine(node: Any, local: dict[str, str]) -> Any:
    return SimpleNamespace(swarm=node, networks=FakeNets(local))


def _spec(mode: str, endpoints: dict[str, Any]) -> Any:
    return SimpleNamespace(host_config={"NetworkMode": mode}, endpoints=endpoints)


def test_only_networks_that_are_not_local_are_claimed() -> None:
    node = FakeNode()
    eng = _engine(node, {"bridge": "local", "mine": "local", "svcnet": "swarm"})
    spec = _spec("atnet", {"atnet": {"Aliases": ["a1"]}, "mine": {}, "svcnet": {}})
    taken = asyncio.run(attach.for_create(eng, spec))
    assert taken == ["att-atnet", "att-svcnet"]  # a materialized swarm network too
    ep = spec.endpoints["atnet"]
    assert ep["IPAMConfig"] == {"IPv4Address": "10.31.7.9"} and ep["Aliases"] == ["a1"]
    assert ep[attach.KEY] == "att-atnet"
    assert spec.endpoints["mine"] == {}
    assert attach.held(spec.endpoints) == ["att-atnet", "att-svcnet"]
    # a requested --ip goes to the manager and comes back
    got = asyncio.run(attach.claim(eng, "other", {"IPAMConfig": {"IPv4Address": "10.31.7.50"}}))
    assert got is not None and got[1]["IPAMConfig"]["IPv4Address"] == "10.31.7.50"


def test_a_refused_network_gives_back_what_the_create_took() -> None:
    node = FakeNode(refuse={"closed"})
    eng = _engine(node, {})
    spec = _spec("atnet", {"closed": {}})
    with pytest.raises(errors.ForbiddenError, match="not manually attachable"):
        asyncio.run(attach.for_create(eng, spec))
    assert node.taken == ["att-atnet"] and node.given_back == ["att-atnet"]


def test_outside_a_swarm_nothing_is_claimed() -> None:
    for node in (None, SimpleNamespace(local_state=lambda: "inactive", agent=None)):
        eng = _engine(node, {})
        spec = _spec("atnet", {})
        assert asyncio.run(attach.for_create(eng, spec)) == []
        assert spec.endpoints == {}  # prepare() then says "network atnet not found"
        asyncio.run(attach.release(eng, ["x"]))  # nothing to ask: no error


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                details=details)


class FakeAgent:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[str, Any]] = []
        self.executor = SimpleNamespace(snap={"data_port": 4790}, refresh=self._refresh)

    async def _refresh(self) -> None:
        return None

    async def call(self, fn: str, req: Any, timeout: float = 5.0) -> Any:
        self.calls.append((fn, req))
        if fn == "AttachNetwork" and isinstance(self.answer, BaseException):
            raise self.answer
        if fn == "AttachNetwork":
            return self.answer
        return pb.DetachResponse()


def _node(tmp_path: Path, answer: Any, fail_ensure: bool = False) -> SwarmNode:
    node = SwarmNode(NodeFiles(tmp_path / "root", tmp_path / "run"))
    node.mode = "active"
    node.state = SimpleNamespace(addr="10.219.0.3")  # type: ignore[assignment]
    node.agent = FakeAgent(answer)
    node.engine = SimpleNamespace(networks=FakeNets({}, fail_ensure))
    return node


def test_swarm_node_attach_materializes_the_network(tmp_path: Path) -> None:
    resp = pb.AttachResponse(attachment_id="t1", network=json.dumps(INFO).encode(),
                             address="10.31.7.5/24")
    node = _node(tmp_path, resp)
    att = asyncio.run(node.attach_network("atnet", "c" * 64, ["x"], ""))
    assert att == Attachment("t1", INFO, "10.31.7.5/24")
    assert node.engine.networks.ensured == [(INFO["ID"], "10.219.0.3", 4790)]
    [(fn, req)] = node.agent.calls
    assert fn == "AttachNetwork" and req.network == "atnet" and list(req.aliases) == ["x"]


def test_swarm_node_attach_errors_in_dockers_words(tmp_path: Path) -> None:
    node = _node(tmp_path, _rpc_error(grpc.StatusCode.PERMISSION_DENIED,
                                      "network closed not manually attachable"))
    with pytest.raises(errors.ForbiddenError) as err:
        asyncio.run(node.attach_network("closed", "", [], ""))
    assert str(err.value.message) == (
        "Could not attach to network closed: rpc error: code = PermissionDenied desc = "
        "network closed not manually attachable")
    node = _node(tmp_path, _rpc_error(grpc.StatusCode.NOT_FOUND, "network nosuch"))
    with pytest.raises(NetworkNotFoundError) as nf:
        asyncio.run(node.attach_network("nosuch", "", [], ""))
    assert nf.value.message == "network nosuch not found"
    node.mode = "inactive"
    with pytest.raises(NetworkNotFoundError):
        asyncio.run(node.attach_network("nosuch", "", [], ""))


def test_swarm_node_attach_gives_back_when_the_network_cannot_be_made(tmp_path: Path) -> None:
    resp = pb.AttachResponse(attachment_id="t2", network=json.dumps(INFO).encode(),
                             address="10.31.7.6/24")
    node = _node(tmp_path, resp, fail_ensure=True)
    with pytest.raises(errors.ConflictError):
        asyncio.run(node.attach_network("atnet", "", [], ""))
    assert [fn for fn, _ in node.agent.calls] == ["AttachNetwork", "DetachNetwork"]
    assert node.agent.calls[1][1].attachment_id == "t2"


def test_the_agent_gives_back_attachments_no_container_holds(monkeypatch: Any) -> None:
    monkeypatch.setattr(agent_mod, "ORPHAN_GRACE_S", 0.0)
    held = SimpleNamespace(networks={"atnet": {attach.KEY: "kept"}})
    engine = SimpleNamespace(store=SimpleNamespace(all=lambda: [held]))
    state = SimpleNamespace(node_id="w" * 25, addr="10.219.0.3")
    ag = agent_mod.Agent(state, lambda: None, engine)  # type: ignore[arg-type]
    ag._applied = {"tasks": [{"ID": "kept", "_Attachment": {}},
                             {"ID": "orphan", "_Attachment": {}}, {"ID": "svc-task"}]}
    sent: list[str] = []

    async def call(fn: str, req: Any, timeout: float = 5.0) -> Any:
        sent.append(req.attachment_id)
        return pb.DetachResponse()
    monkeypatch.setattr(ag, "_call", call)
    asyncio.run(ag._collect_attachments())
    assert sent == ["orphan"]
