"""The declared minimum grpcio and protobuf are the versions the checked-in stubs demand.

The generated files refuse to load under older packages: supervisor_pb2.py calls
protobuf's runtime_version.ValidateProtobufRuntimeVersion(domain, major, minor, patch, ...)
(a runtime older than the gencode raises VersionError), and supervisor_pb2_grpc.py raises
RuntimeError when grpc.__version__ is below its GRPC_GENERATED_VERSION.  Both guards are
read from the files with ast and compared with pyproject.toml's lower bounds, so a
regenerated stub that needs more cannot ship under a stale declaration, and the
declaration never claims support the stubs refuse.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from labkit.engine.supervisor import api

TOP = Path(__file__).resolve().parents[2]
API = Path(api.__file__).parent


def _minimums() -> dict[str, str]:
    proj = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]
    reqs = list(proj["dependencies"]) + [r for v in proj["optional-dependencies"].values()
                                         for r in v]
    out = {}
    for r in reqs:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", r)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def protobuf_gencode_version() -> str:
    tree = ast.parse((API / "supervisor_pb2.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == \
                "ValidateProtobufRuntimeVersion":
            major, minor, patch, suffix = (ast.literal_eval(a) for a in node.args[1:5])
            return f"{major}.{minor}.{patch}{suffix}"
    raise AssertionError("supervisor_pb2.py has no ValidateProtobufRuntimeVersion guard")


def grpc_generated_version() -> str:
    tree = ast.parse((API / "supervisor_pb2_grpc.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") == "GRPC_GENERATED_VERSION" for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise AssertionError("supervisor_pb2_grpc.py has no GRPC_GENERATED_VERSION")


def test_protobuf_minimum_is_the_stubs_gencode() -> None:
    assert _minimums()["protobuf"] == protobuf_gencode_version()


def test_grpcio_minimum_is_the_stubs_generator() -> None:
    assert _minimums()["grpcio"] == grpc_generated_version()
    # the regeneration check writes the committed files only with a generator this new
    assert _minimums()["grpcio-tools"] == grpc_generated_version()


# Import the stubs in a fresh interpreter with the runtimes claiming version PB and GRPC.
LOAD = """
import sys, grpc
from google.protobuf import runtime_version as rv
rv.MAJOR, rv.MINOR, rv.PATCH = (int(x) for x in sys.argv[1].split("."))
rv.SUFFIX = ""
grpc.__version__ = sys.argv[2]
from labkit.engine.supervisor.api import supervisor_pb2_grpc
print(supervisor_pb2_grpc.TasksStub.__name__)
"""


def _load(pb: str, grpc: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LOAD, pb, grpc], capture_output=True,
                          text=True, timeout=60, check=False)


def _below(version: str) -> str:
    parts = [int(x) for x in version.split(".")]
    i = max(i for i, x in enumerate(parts) if x > 0)
    parts[i] -= 1
    return ".".join(map(str, parts))


def test_stubs_load_at_the_declared_minimum_and_not_below() -> None:
    mins = _minimums()
    ok = _load(mins["protobuf"], mins["grpcio"])
    assert ok.returncode == 0 and ok.stdout.strip() == "TasksStub", ok.stderr
    old_pb = _load(_below(mins["protobuf"]), mins["grpcio"])
    assert old_pb.returncode != 0 and "VersionError" in old_pb.stderr
    old_grpc = _load(mins["protobuf"], _below(mins["grpcio"]))
    assert old_grpc.returncode != 0 and f"grpcio>={mins['grpcio']}" in old_grpc.stderr
