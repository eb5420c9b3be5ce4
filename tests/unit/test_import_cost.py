"""What `labkit-runtime run` imports: a structural check, not a timing one.

Every start of labkit-runtime is a fresh interpreter, so each stdlib module it imports is
paid for on every container start (measured with ``python -X importtime``): dataclasses
(with inspect, ast, dis, tokenize: ~4.7 ms), json (re, ~4 ms), pathlib (urllib.parse,
ipaddress: ~2.4 ms), typing (~1.5 ms), platform (~1 ms).  This test runs the modules of the
run verb, and the cgroup/config/state work of a start, in a child interpreter with
``-X importtime`` and fails, naming who imported it, when one of those comes back.

Still imported, on purpose or by others: enum (the signal module needs it), ctypes
(labkit._sys), and pickle with re (labkit.ns.apply imports pickle at module level: the
container init pickles its errors after pivot_root, where a late import cannot work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import cgroups as fake

from labkit.cgroups import Mode
from labkit.engine.runtime.spec import default_config

# Modules that must not be imported on the start path.
HEAVY = ("dataclasses", "inspect", "ast", "dis", "tokenize", "typing", "pathlib",
         "urllib.parse", "ipaddress", "platform", "json", "json.decoder", "asyncio",
         "subprocess", "argparse", "socket", "selectors", "threading", "hashlib", "shutil",
         "tempfile", "logging", "uuid", "datetime")

# The `run` verb's modules (labkit.engine.runtime.cli -> run -> create/start/delete, init and
# seccomp in the children, both cgroup backends), then what a start does with them.
SCRIPT = r"""
import os, sys
import labkit.engine.runtime.cli, labkit.engine.runtime.run
import labkit.engine.runtime.create, labkit.engine.runtime.start, labkit.engine.runtime.delete
import labkit.engine.runtime.init, labkit.engine.runtime.seccomp
from labkit.cgroups import Mode, Resources, open_cgroup
from labkit.engine.runtime import config, state
bundle, sdir, v1_root, v2_root = sys.argv[1:]
cfg = config.load(bundle, "lk-import-cost")
res = Resources.from_oci(cfg.linux.get("resources"))
cfg.namespaces.to_dict()
for mode, root in ((Mode.HYBRID, v1_root), (Mode.UNIFIED, v2_root)):
    cg = open_cgroup("lk-t/c1", root=root, mode=mode)
    cg.exists(); cg.create(); cg.set(res); cg.procs(); cg.stats(); cg.remove()
st = state.State(id=os.path.basename(sdir), bundle=bundle, status="created", dir=sdir)
st.save()
state.load(os.path.dirname(sdir), st.id).oci()
"""


def _importtime(stderr: str) -> list[tuple[int, str]]:
    """(depth, module) per ``import time:`` line, in the order Python prints them."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or line.endswith("imported package"):
            continue
        name = line.rsplit("|", 1)[1]
        rows.append(((len(name) - len(name.lstrip())) // 2, name.strip()))
    return rows


def _importer(rows: list[tuple[int, str]], i: int) -> str:
    # -X importtime prints a module after its children: the parent is the next line up a level.
    depth = rows[i][0]
    for d, name in rows[i + 1:]:
        if d < depth:
            return name
    return "the script"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    (b / "config.json").write_text(json.dumps(default_config(False)))
    return b


def test_start_path_imports_no_heavy_module(bundle: Path, tmp_path: Path) -> None:
    sdir = tmp_path / "state" / "lk-import-cost"
    sdir.mkdir(parents=True)
    # Fake cgroup trees made here: tests/fakes/cgroups.py (test scaffolding) uses pathlib.
    v1_root = fake.make_tree(tmp_path / "v1", Mode.HYBRID)
    v2_root = fake.make_tree(tmp_path / "v2", Mode.UNIFIED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SCRIPT, str(bundle), str(sdir), str(v1_root),
         str(v2_root)],
        capture_output=True, text=True, env=env, check=False)
    rows = _importtime(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert rows, "no -X importtime output"
    names = [name for _, name in rows]
    assert "labkit.cgroups.v1" in names and "labkit.engine.runtime.init" in names
    found = {name: _importer(rows, i) for i, (_, name) in enumerate(rows) if name in HEAVY}
    assert found == {}, "heavy modules on the start path (module <- imported by): " + ", ".join(
        f"{m} <- {who}" for m, who in sorted(found.items()))
