"""labkit lab check NOTEBOOK [--list]: run a notebook's exercise checks outside Jupyter.

The notebook is executed headless (nbclient, with a kernel of this Python environment), cell
by cell in order, as Jupyter's "Run All" would.  The output of each cell tagged ``check``
(``lab.exercises.check(...)``) is read back for its ``PASS [..]`` / ``HINT [..]`` lines.
LABKIT_EXERCISES_STRICT is unset in the kernel, so a wrong answer prints its hint and the
rest of the notebook (its clean-up cells included) still runs.

Exit status: 0 when every check cell passed, 1 otherwise (a hint, a cell that raised, a
notebook that has no check, or one that skipped because the host lacks something).

NOTEBOOK is "01", "01_namespaces", "01_namespaces.ipynb" (looked up in the repository's
notebooks/ directory, then ./notebooks) or a path to an .ipynb file.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = ["CellOutcome", "Report", "notebook_dirs", "parse_results", "parser", "resolve", "run"]

_RESULT = re.compile(r"^(PASS|HINT) \[([0-9]{2}\.[\w.-]+)\]: (.*)$")
_NB_ID = re.compile(r"^(\d{2})(?:_|\.ipynb$|$)")
CELL_TIMEOUT = 900  # seconds: notebook 00 builds a VM image on its first run


def notebook_dirs() -> list[Path]:
    """Where a short name is looked up: the repository's notebooks/, then ./notebooks."""
    repo = Path(__file__).resolve().parents[2] / "notebooks"
    here = Path.cwd() / "notebooks"
    return list(dict.fromkeys(d for d in (repo, here) if d.is_dir()))


def resolve(name: str, dirs: list[Path] | None = None) -> Path:
    """The .ipynb that ``name`` ("01", "01_namespaces", "x.ipynb" or a path) means.

    Raises:
        NotFoundError: no such notebook (the hint lists the ones there are).
        InvalidArgumentError: the short name matches more than one notebook.
    """
    p = Path(name)
    if p.suffix == ".ipynb" and p.is_file():
        return p.resolve()
    if os.sep in name or p.suffix not in ("", ".ipynb"):
        raise errors.NotFoundError("notebook", name, hint="give NN, NN_name or an .ipynb path")
    dirs = notebook_dirs() if dirs is None else dirs
    stem = name.removesuffix(".ipynb")
    found: list[Path] = []
    for d in dirs:
        exact = d / f"{stem}.ipynb"
        if exact.is_file():
            return exact.resolve()
        found += sorted(d.glob(f"{stem}_*.ipynb")) if stem.isdigit() else []
        if found:
            break
    if len(found) == 1:
        return found[0].resolve()
    if len(found) > 1:
        raise errors.InvalidArgumentError(
            "notebook", f"{name!r} matches {', '.join(f.name for f in found)}",
            hint="give the full name, e.g. " + found[0].stem)
    have = sorted(f.stem for d in dirs for f in d.glob("*.ipynb"))
    raise errors.NotFoundError("notebook", name,
                               hint="one of: " + (", ".join(have) or "(none found)"))


def notebook_id(path: Path) -> str | None:
    """"01" for .../01_namespaces.ipynb; None when the name has no NN prefix."""
    m = _NB_ID.match(path.name)
    return m.group(1) if m else None


@dataclass
class CellOutcome:
    """One check cell after it ran: its PASS/HINT lines, or the error it raised."""

    index: int
    results: list[tuple[str, str, str]] = field(default_factory=list)  # (PASS|HINT, id, msg)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.results) and all(
            r[0] == "PASS" for r in self.results)


@dataclass
class Report:
    """What ``lab check`` saw: the check cells, errors of other cells, a skip reason."""

    path: Path
    checks: list[CellOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return (self.skipped is None and not self.errors and bool(self.checks)
                and all(c.passed for c in self.checks))


def parse_results(text: str) -> list[tuple[str, str, str]]:
    """The (verdict, exercise id, message) of every PASS/HINT line in a cell's output."""
    out = []
    for line in text.splitlines():
        if m := _RESULT.match(line.strip()):
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _text(cell: Any) -> tuple[str, str | None]:
    """A cell's printed text and, if it raised, 'Name: value'."""
    text, error = [], None
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            text.append(o.get("text", ""))
        elif o.get("output_type") == "error":
            error = f"{o.get('ename')}: {o.get('evalue')}"
    return "".join(text), error


def _kernel_manager() -> Any:
    """A kernel of *this* Python (the venv labkit runs in), whatever kernelspecs exist."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                    "{connection_file}"],
                              display_name="labkit (current env)", language="python")

    return KernelManager(kernel_name="labkit-current-env", kernel_spec_manager=CurrentEnv())


def execute(path: Path, progress: Any = None) -> Report:
    """Run every cell of ``path`` in a fresh kernel; collect the check cells' verdicts.

    A cell that raises does not stop the run (the clean-up cells must still run); a skip
    (``lab.require`` finding the host lacks something) does, as the notebook made nothing yet.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    report = Report(path)
    # Hints must print, not raise (exercises.STRICT_ENV); the kernel inherits our environment.
    os.environ.pop("LABKIT_EXERCISES_STRICT", None)
    client = NotebookClient(nb, km=_kernel_manager(), timeout=CELL_TIMEOUT, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    # The kernel's own log (e.g. jupyter_client's "running over TCP" warning) is noise here:
    # cell output reaches us over the kernel's iopub channel, not its stderr.
    with client.setup_kernel(stderr=subprocess.DEVNULL):
        for n, (i, cell) in enumerate(code, 1):
            if progress is not None:
                progress(n, len(code), i, "check" in _tags(cell))
            client.execute_cell(cell, i)
            text, error = _text(cell)
            if "check" in _tags(cell):
                report.checks.append(CellOutcome(i, parse_results(text), error))
            elif error is not None:
                if error.startswith(("MissingFeatureError", "SkipTest")):
                    report.skipped = error.partition(": ")[2]
                    break
                report.errors.append(f"cell {i}: {error}")
    return report


def parser(prog: str = "labkit lab") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="The lab's notebooks, outside Jupyter.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="run a notebook headless and report its exercise checks")
    c.add_argument("notebook", help="NN, NN_name, or a path to an .ipynb")
    c.add_argument("--list", action="store_true", help="list the notebook's exercises only")
    return p


def _print_report(report: Report) -> None:
    from rich.console import Console

    con = Console(highlight=False)
    for c in report.checks:
        if c.error is not None:
            con.print(f"[red]ERROR[/] cell {c.index}: the check cell raised {c.error}")
        elif not c.results:
            con.print(f"[red]ERROR[/] cell {c.index}: the check cell printed no PASS or HINT")
        for verdict, ex, msg in c.results:
            colour = "green" if verdict == "PASS" else "yellow"
            con.print(f"[{colour}]{verdict}[/] [{ex}]: {msg}", markup=True)
    for e in report.errors:
        con.print(f"[red]ERROR[/] {e}")
    if report.skipped is not None:
        con.print(f"[yellow]SKIPPED[/] {report.skipped}")
    passed = sum(c.passed for c in report.checks)
    colour = "green" if report.ok else "red"
    con.print(f"[{colour}]{report.path.name}: {passed}/{len(report.checks)} checks passed"
              f"{f', {len(report.errors)} cell errors' if report.errors else ''}[/]")


def run(argv: list[str], prog: str = "labkit lab") -> int:
    args = parser(prog).parse_args(argv)
    path = resolve(args.notebook)
    if args.list:
        from labkit.lab import exercises

        nb = notebook_id(path)
        if nb is None:
            raise errors.InvalidArgumentError(
                "notebook", f"{path.name} has no NN_ prefix, so no exercises are registered")
        for ex in exercises.registered(nb):
            print(ex)
        return 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  transient=True) as bar:
        task = bar.add_task(f"running {path.name}", total=None)

        def step(n: int, total: int, index: int, is_check: bool) -> None:
            what = "check" if is_check else "cell"
            bar.update(task, total=total, completed=n - 1,
                       description=f"{path.name}: {what} {index}")

        report = execute(path, step)
    _print_report(report)
    return 0 if report.ok else 1
