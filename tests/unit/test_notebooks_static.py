"""Static checks of notebooks/*.ipynb against STYLE C13 and C15, without running them.

C13: notebooks only call library code: no def/class/ctypes in cells, a cell is <= ~5 lines
(6 allowed), a Goal cell first, a "check your work" cell of asserts last.  C15: a notebook
that measures states the workload, the tool and the overhead.  Also: the kernelspec is
labkit's, and a committed notebook carries no error output.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
MAX_LINES = 6
# A "Your turn" cell (tag "exercise") holds the learner's own code: it may define functions,
# and a worked answer may take a few more lines.
EXERCISE_MAX_LINES = 12
KERNELSPEC = {"name": "labkit", "display_name": "labkit (Python 3)", "language": "python"}
# Code that plots or samples is a measurement (C15).
MEASURES = ("plots.", "plot_", "Sampler", "time_spawns", "time_writes", "time_calls")


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _python(code: str) -> str:
    # IPython lines (%magic, !shell) are not Python; blank them so ast can parse the rest.
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in code.splitlines())


def problems(nb: dict[str, Any]) -> list[str]:
    """Every way ``nb`` (a parsed .ipynb) breaks the notebook rules; [] when it keeps them."""
    out: list[str] = []
    spec = nb.get("metadata", {}).get("kernelspec", {})
    if {k: spec.get(k) for k in KERNELSPEC} != KERNELSPEC:
        out.append(f"kernelspec is {spec!r}, want {KERNELSPEC!r}")
    cells = nb.get("cells", [])
    if not cells:
        return [*out, "no cells"]
    first = cells[0]
    if first.get("cell_type") != "markdown" or "goal" not in _source(first).lower():
        out.append("the first cell must be a markdown Goal cell")
    last = cells[-1]
    if last.get("cell_type") != "code" or not any(
            isinstance(n, ast.Assert) for n in ast.walk(ast.parse(_python(_source(last))))):
        out.append("the last cell must be a code cell of asserts (check your work)")
    run = 0
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            run = 0
            continue
        run += 1
        if run > 2:
            out.append(f"cell {i}: more than two code cells in a row without an explanation")
        code = _source(cell)
        exercise = "exercise" in cell.get("metadata", {}).get("tags", [])
        most = EXERCISE_MAX_LINES if exercise else MAX_LINES
        lines = [ln for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if len(lines) > most:
            out.append(f"cell {i}: {len(lines)} lines (at most {most}; move logic to labkit)")
        try:
            tree = ast.parse(_python(code))
        except SyntaxError as err:
            out.append(f"cell {i}: does not parse: {err}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if exercise and not isinstance(node, ast.ClassDef):
                    continue
                out.append(f"cell {i}: defines {node.name!r} (C13: put it in labkit)")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m.split(".")[0] == "ctypes" for m in mods):
                    out.append(f"cell {i}: imports ctypes (only labkit/_sys may)")
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(f"cell {i}: committed with an error output ({o.get('ename')})")
    code_all = "\n".join(_source(c) for c in cells if c.get("cell_type") == "code")
    prose = "\n".join(_source(c) for c in cells if c.get("cell_type") == "markdown").lower()
    if any(m in code_all for m in MEASURES):
        for word in ("workload", "tool", "overhead"):
            if word not in prose:
                out.append(f"measures, but never states the {word} (C15)")
    return out


PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_first_three_notebooks_exist() -> None:
    names = {p.name for p in PATHS}
    assert {"01_namespaces.ipynb", "02_cgroups.ipynb", "03_union_filesystem.ipynb"} <= names


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebook_follows_the_rules(path: Path) -> None:
    assert problems(json.loads(path.read_text())) == []


# The checker itself: each rule catches what it should on a small notebook built here.
def _nb(*cells: tuple[str, str], spec: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"kernelspec": KERNELSPEC if spec is None else spec},
            "cells": [{"cell_type": k, "source": s, "outputs": []} if k == "code"
                      else {"cell_type": k, "source": s} for k, s in cells]}


GOOD = [("markdown", "# T\n**Goal.** see"), ("code", "x = 1"), ("markdown", "check"),
        ("code", "assert x == 1")]


def test_checker_accepts_a_good_notebook() -> None:
    assert problems(_nb(*GOOD)) == []


@pytest.mark.parametrize(("cells", "spec", "expect"), [
    ([("code", "x = 1"), *GOOD[1:]], None, "Goal cell"),
    (GOOD[:-1], None, "cell of asserts"),
    ([*GOOD[:1], ("code", "def f():\n    return 1"), *GOOD[2:]], None, "defines 'f'"),
    ([*GOOD[:1], ("code", "class A: pass"), *GOOD[2:]], None, "defines 'A'"),
    ([*GOOD[:1], ("code", "import ctypes.util"), *GOOD[2:]], None, "imports ctypes"),
    ([*GOOD[:1], ("code", "\n".join(f"a{i} = {i}" for i in range(7))), *GOOD[2:]], None, "7 lines"),
    ([*GOOD[:1], ("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3"), *GOOD[2:]], None,
     "in a row"),
    ([*GOOD[:1], ("code", "plots.plot_timings(rows)"), *GOOD[2:]], None, "workload"),
    (GOOD, {"name": "python3", "display_name": "Python 3", "language": "python"}, "kernelspec"),
])
def test_checker_catches(cells: list[tuple[str, str]], spec: dict[str, str] | None,
                         expect: str) -> None:
    found = problems(_nb(*cells, spec=spec))
    assert any(expect in p for p in found), found


def test_exercise_cells_may_define_functions_but_no_classes() -> None:
    nb = _nb(*GOOD[:1], ("code", "def f(x):\n    return x"), *GOOD[1:])
    nb["cells"][1]["metadata"] = {"tags": ["exercise"]}
    assert problems(nb) == []
    nb["cells"][1]["source"] = "\n".join(f"a{i} = {i}" for i in range(13))
    assert any("13 lines (at most 12" in p for p in problems(nb))
    nb["cells"][1]["source"] = "class A: pass"
    assert any("defines 'A'" in p for p in problems(nb))
