"""labkit/engine/containers is services, not mixins: no import circle between its modules,
and no class there is assembled from several bases."""

from __future__ import annotations

import ast
from pathlib import Path

import labkit

PKG = "labkit.engine.containers"
ROOT = Path(labkit.__file__).parent / "engine" / "containers"


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith(PKG):
                sub = node.module[len(PKG):].lstrip(".")
                deps |= {sub} if sub else {a.name for a in node.names}
        graph[path.stem] = deps & {p.stem for p in ROOT.glob("*.py")}
    return graph


def test_no_import_circle() -> None:
    graph = _imports()
    done: set[str] = set()

    def visit(mod: str, path: list[str]) -> None:
        assert mod not in path, " -> ".join([*path, mod])
        if mod in done:
            return
        for dep in sorted(graph[mod]):
            visit(dep, [*path, mod])
        done.add(mod)
    for mod in sorted(graph):
        if mod != "__init__":
            visit(mod, [])
    assert "lifecycle" in graph["record"] and "service" in graph["control"]  # the scan works


def test_no_mixins() -> None:
    for path in ROOT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert len(node.bases) <= 1, f"{path.name}: class {node.name}{node.bases}"
                assert "Mixin" not in node.name, f"{path.name}: {node.name}"
