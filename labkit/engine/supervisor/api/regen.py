"""Regenerate labkit's gRPC stubs: ``python -m labkit.engine.supervisor.api.regen``.

Two contracts: the supervisor's (supervisor.proto, daemon <-> supervisor) and the swarm's
(labkit/engine/swarm/rpc/swarm.proto, node <-> manager).  The stubs (NAME_pb2.py,
NAME_pb2.pyi, NAME_pb2_grpc.py beside each .proto) are committed, so no labkit process
needs grpcio-tools at run time.  protoc runs with the
repository root as its include path, so the generated code imports the messages module by
its package path (``from labkit.engine.supervisor.api import supervisor_pb2``) rather than
as a top-level module.  ``--check`` regenerates into a temporary directory and exits 1 when
the committed files differ (a unit test runs it).  The stubs refuse protobuf and grpcio
older than the versions that generated them: after regenerating, raise the minimums in
pyproject.toml and environment.yml to match (tests/unit/test_stub_versions.py checks).
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

API = Path(__file__).resolve().parent
REPO = API.parents[3]
PROTOS = (API.relative_to(REPO) / "supervisor.proto",
          Path("labkit/engine/swarm/rpc/swarm.proto"))
# Generated code is not ours to lint or type-check (the .pyi still gives mypy the types).
HEADER = b"# ruff: noqa\n# mypy: ignore-errors\n"


def outputs(proto: Path) -> tuple[str, str, str]:
    """The three stub names protoc writes for ``proto``."""
    return f"{proto.stem}_pb2.py", f"{proto.stem}_pb2.pyi", f"{proto.stem}_pb2_grpc.py"


def generate(out: Path) -> list[tuple[Path, Path]]:
    """Run grpc_tools.protoc on every contract; (generated file, committed file) pairs."""
    from grpc_tools import protoc  # build-time only

    pairs = []
    for proto in PROTOS:
        args = ["protoc", f"-I{REPO}", f"--python_out={out}", f"--pyi_out={out}",
                f"--grpc_python_out={out}", str(proto)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        for name in outputs(proto):
            f = out / proto.parent / name
            f.write_bytes(HEADER + f.read_bytes())
            pairs.append((f, REPO / proto.parent / name))
    return pairs


def main(argv: list[str] | None = None) -> int:
    """Regenerate in place, or with --check compare against the committed stubs."""
    argv = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="lk-regen-") as tmp:
        pairs = generate(Path(tmp))
        if "--check" in argv:
            stale = [f.name for f, dst in pairs if not dst.exists()
                     or not filecmp.cmp(f, dst, shallow=False)]
            if stale:
                print(f"stale stubs: {', '.join(stale)}; run python -m "
                      "labkit.engine.supervisor.api.regen")
                return 1
            return 0
        for f, dst in pairs:
            shutil.copyfile(f, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
