"""Regenerate the gRPC stubs from supervisor.proto: ``python -m labkit.engine.supervisor.api.regen``.

The stubs (supervisor_pb2.py, supervisor_pb2.pyi, supervisor_pb2_grpc.py) are committed, so
neither the daemon nor the supervisor needs grpcio-tools at run time.  protoc runs with the
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
PROTO = API.relative_to(REPO) / "supervisor.proto"
OUTPUTS = ("supervisor_pb2.py", "supervisor_pb2.pyi", "supervisor_pb2_grpc.py")
# Generated code is not ours to lint or type-check (the .pyi still gives mypy the types).
HEADER = b"# ruff: noqa\n# mypy: ignore-errors\n"


def generate(out: Path) -> list[Path]:
    """Run grpc_tools.protoc on supervisor.proto, writing the three stubs under ``out``."""
    from grpc_tools import protoc  # build-time only

    args = ["protoc", f"-I{REPO}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", str(PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    gen = out / PROTO.parent
    files = [gen / name for name in OUTPUTS]
    for f in files:
        f.write_bytes(HEADER + f.read_bytes())
    return files


def main(argv: list[str] | None = None) -> int:
    """Regenerate in place, or with --check compare against the committed stubs."""
    argv = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="lk-regen-") as tmp:
        files = generate(Path(tmp))
        if "--check" in argv:
            stale = [f.name for f in files if not (API / f.name).exists()
                     or not filecmp.cmp(f, API / f.name, shallow=False)]
            if stale:
                print(f"stale stubs: {', '.join(stale)}; run python -m "
                      "labkit.engine.supervisor.api.regen")
                return 1
            return 0
        for f in files:
            shutil.copyfile(f, API / f.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
