"""labkit lab check: which notebook a short name means, and reading PASS/HINT lines back."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import errors
from labkit.cli import lab


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    for name in ("00_lab_setup", "01_namespaces", "02_cgroups", "10_a", "10_b"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    return tmp_path


@pytest.mark.parametrize("arg", ["01", "01_namespaces", "01_namespaces.ipynb"])
def test_short_names_resolve(nbdir: Path, arg: str) -> None:
    assert lab.resolve(arg, [nbdir]) == (nbdir / "01_namespaces.ipynb").resolve()


def test_a_path_resolves_as_is(nbdir: Path) -> None:
    p = nbdir / "02_cgroups.ipynb"
    assert lab.resolve(str(p), []) == p.resolve()


def test_unknown_name_lists_what_there_is(nbdir: Path) -> None:
    with pytest.raises(errors.NotFoundError) as exc:
        lab.resolve("07", [nbdir])
    assert exc.value.hint is not None and "01_namespaces" in exc.value.hint


def test_ambiguous_prefix_is_refused(nbdir: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="10_a.ipynb, 10_b.ipynb"):
        lab.resolve("10", [nbdir])


def test_a_missing_path_is_not_found(nbdir: Path) -> None:
    with pytest.raises(errors.NotFoundError):
        lab.resolve(str(nbdir / "nope" / "x.ipynb"), [nbdir])


def test_the_repository_notebooks_resolve() -> None:
    assert lab.resolve("03").name == "03_union_filesystem.ipynb"
    assert lab.notebook_id(lab.resolve("04_engine_architecture")) == "04"


def test_parse_results_reads_only_verdict_lines() -> None:
    text = ("noise\nPASS [01.lo_up]: lo is UP\n  HINT [02.pids_cap]: your Resources sets no pids_max\n"
            "PASS [bad]: not an exercise id\n")
    assert lab.parse_results(text) == [("PASS", "01.lo_up", "lo is UP"),
                                       ("HINT", "02.pids_cap", "your Resources sets no pids_max")]


def test_report_ok_needs_checks_that_all_passed(tmp_path: Path) -> None:
    ok = lab.CellOutcome(3, [("PASS", "99.double", "fine")])
    hint = lab.CellOutcome(5, [("HINT", "99.double", "no")])
    silent = lab.CellOutcome(7)
    assert lab.Report(tmp_path, [ok]).ok
    assert not lab.Report(tmp_path, [ok, hint]).ok
    assert not lab.Report(tmp_path, [silent]).ok
    assert not lab.Report(tmp_path, []).ok  # a notebook without checks checks nothing
    assert not lab.Report(tmp_path, [ok], errors=["cell 2: NameError: x"]).ok
    assert not lab.Report(tmp_path, [ok], skipped="no bcc").ok


def test_list_prints_the_registered_exercises(capsys: pytest.CaptureFixture[str]) -> None:
    assert lab.run(["check", "03", "--list"]) == 0
    assert capsys.readouterr().out.split() == ["03.copy_up", "03.whiteout"]
