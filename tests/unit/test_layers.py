"""Imports only point down the room list of DESIGN.md: a room imports only rooms above it.

Every ``import`` and ``from ... import`` under labkit/ (at module level or inside a function:
a lazy import is still an arrow) is parsed with ast and checked against LAYERS.  Rooms not
named in DESIGN.md are placed here, each with the reason.  An arrow that must point up is an
EXCEPTION below, with the reason; there is no other way to pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import labkit

ROOT = Path(labkit.__file__).parent

# DESIGN.md "Rooms (folders) and arrows", top to bottom; one tuple per rank.
LAYERS: tuple[tuple[str, ...], ...] = (
    # errors.py; the two leaf helpers (units and atomic record files) import nothing else
    ("labkit.errors", "labkit._units", "labkit._record"),
    ("labkit._sys",),
    ("labkit.ns",),
    ("labkit.cgroups",),
    # Not in DESIGN's list: the host checks read _sys, cgroups and netns (ns) and are used by
    # cli and lab; the qemu VM is used by cli.  Both sit above the engine.
    ("labkit.doctor",),
    ("labkit.vm",),
    # The engine package itself and its paths (LABKIT_ROOT, LABKIT_RUN): shared by its rooms.
    ("labkit.engine",),
    ("labkit.engine.net",),
    ("labkit.engine.images",),
    # Not in DESIGN's list: the registry client (pull/push/login) stores into images and is
    # called by the daemon's handlers.
    ("labkit.engine.registry",),
    ("labkit.engine.volumes",),
    ("labkit.engine.logs",),
    ("labkit.engine.runtime",),
    ("labkit.engine.shim",),
    ("labkit.engine.supervisor",),
    # Not in DESIGN's list (which puts all networking in engine/net): the daemon's network
    # service (records, the API's verbs, a container's sandbox) over the net drivers; the
    # containers service calls it at create, start and exit.
    ("labkit.engine.networks",),
    ("labkit.engine.containers",),
    # Not in DESIGN's list (which puts the builder in images): the classic builder runs RUN
    # steps through the containers service and is served by the daemon, so it sits between.
    ("labkit.engine.build",),
    # DESIGN.md lists the swarm below the daemon, but the arrow runs the other way: the
    # daemon hosts a node (engine.swarm) and parses swarm bodies (swarm.spec); the swarm
    # never imports the daemon (moby's daemon/cluster imports swarmkit the same way)
    ("labkit.engine.swarm",),
    ("labkit.engine.daemon",),
    ("labkit.engine.client",),
    # Not in DESIGN's list (which puts stacks in the swarm room): deploying a compose file is
    # client-side work, as in the Docker CLI (`docker stack deploy` sends ordinary service,
    # network and secret requests); the daemon never imports it
    ("labkit.engine.swarm.stack",),
    ("labkit.cli",),
    ("labkit.probes",),
    ("labkit.measure",),
    ("labkit.lab",),
)

# (importing module prefix, imported module prefix): why the arrow may point up.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("labkit", "labkit.lab"):
        "the package facade, not a room: labkit.require() for notebooks (STYLE C13), "
        "imported on first use (PEP 562) so the runtime and the shim never load it",
    ("labkit.cli.bench", "labkit.measure"):
        "`labkit bench` is the command-line face of measure, which DESIGN lists below cli; "
        "imported inside the verb, so the Docker verbs never load it",
    ("labkit.doctor._live", "labkit.probes"):
        "the doctor's one live BPF row runs the probes room's selftest program instead of "
        "a second copy; imported inside that check, which runs only as root",
    ("labkit.cli.swarm_lab", "labkit.measure"):
        "`labkit swarm lab` is the command-line face of measure.swarmlab (the local swarm the "
        "notebooks, tests and benchmarks use); imported inside each verb",
    ("labkit.cli.lab", "labkit.lab"):
        "`labkit lab check` is the command-line face of the notebooks' exercises (lab, below "
        "cli in DESIGN); imported inside the verb, so no other command loads it",
}

# Test doubles live in tests/fakes/ (DESIGN: tests/ holds them); the package never imports them.
FORBIDDEN = ("fakes", "tests")


def _rank(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and \
                    (best is None or len(name) > best[1]):
                best = (i, len(name))
    return None if best is None else best[0]


def _module_of(path: Path) -> tuple[str, str]:
    """(module name, the package its relative imports start from)."""
    parts = ("labkit", *path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imports(path: Path) -> list[tuple[int, str]]:
    return _imports_in(path.read_text(), _module_of(path)[1])


def _imports_in(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for each module an import statement names (for ``from a import b``
    both a and a.b: b may be a submodule); relative imports start at ``package``."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, *([node.module] if node.module else [])])
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*"]
    return out


def _upward(importer: str, imported: str) -> bool:
    mine, theirs = _rank(importer), _rank(imported)
    if not imported.startswith("labkit") or theirs is None:
        return False
    return (mine is None or theirs > mine) and not _excepted(importer, imported)


def _excepted(importer: str, imported: str) -> bool:
    return any((importer == a or importer.startswith(a + ".")) and
               (imported == b or imported.startswith(b + "."))
               for a, b in EXCEPTIONS if a != "labkit" or importer == "labkit")


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        importer, _ = _module_of(path)
        for line, imported in _imports(path):
            where = f"{path.relative_to(ROOT.parent)}:{line}: {importer} -> {imported}"
            if imported.split(".")[0] in FORBIDDEN:
                bad.append(f"{where} (a test double or test module)")
                continue
            if _upward(importer, imported):
                bad.append(where)
    return bad


def test_every_module_has_a_room() -> None:
    rooms = [p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts
             and _rank(_module_of(p)[0]) is None and _module_of(p)[0] != "labkit"]
    assert rooms == [], "place these in LAYERS (with a reason if DESIGN.md does not list them)"


def test_imports_point_down_the_room_list() -> None:
    assert upward_imports() == []


def test_every_exception_is_still_needed() -> None:
    # an exception whose arrow is gone must go too, or it would excuse the next one silently
    used = set()
    for path in sorted(ROOT.rglob("*.py")):
        importer, _ = _module_of(path)
        for _line, imported in _imports(path):
            for a, b in EXCEPTIONS:
                if (importer == a or (a != "labkit" and importer.startswith(a + "."))) and \
                        (imported == b or imported.startswith(b + ".")):
                    used.add((a, b))
    assert set(EXCEPTIONS) == used


def test_the_check_sees_upward_and_relative_imports() -> None:
    # the walker itself: a lazy upward import inside a function is found, relative ones resolved
    src = "from . import errmap\ndef f():\n    from labkit.lab import plots\n"
    found = _imports_in(src, "labkit.engine.supervisor")
    assert (1, "labkit.engine.supervisor.errmap") in found and (3, "labkit.lab.plots") in found
    assert _upward("labkit.engine.supervisor.client", "labkit.lab.plots")
    assert _upward("labkit.engine.supervisor.client", "labkit.engine.containers.tasks")
    assert not _upward("labkit.engine.containers.tasks", "labkit.engine.supervisor.records")
    assert not _upward("labkit.cli.bench", "labkit.measure.bench_engine")  # a stated exception
    assert _upward("labkit.cli.container", "labkit.measure.bench_engine")
