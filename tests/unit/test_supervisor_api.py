"""The committed gRPC stubs match supervisor.proto and import with the installed protobuf."""

from __future__ import annotations

import pytest


def test_stubs_import_and_carry_every_rpc() -> None:
    from labkit.engine.supervisor.api import supervisor_pb2 as pb
    from labkit.engine.supervisor.api import supervisor_pb2_grpc as pb_grpc

    rpcs = set(pb.DESCRIPTOR.services_by_name["Tasks"].methods_by_name)
    assert rpcs == {"Create", "Start", "Kill", "Delete", "Wait", "State", "List", "Exec",
                    "ResizePty", "CloseStdin", "Pause", "Resume", "Pids", "Stats", "Update",
                    "Events"}
    assert all(hasattr(pb_grpc.TasksServicer, r) for r in rpcs)
    assert pb.Stats(oom_kills=2).oom_kills == 2


def test_regenerating_gives_identical_files() -> None:
    pytest.importorskip("grpc_tools")
    from labkit.engine.supervisor.api import regen

    assert regen.main(["--check"]) == 0
