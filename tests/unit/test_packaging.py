"""environment.yml (conda users) and pyproject.toml (pip users) must name the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[2]

# Packages conda-forge ships that pip users get elsewhere: bcc comes from Debian's python3-bpfcc
# (the PyPI package named bcc is unrelated), python and pip are the environment itself.
CONDA_ONLY = {"python", "pip", "bcc"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, set[str]]:
    data = tomllib.loads((TOP / "pyproject.toml").read_text())
    proj = data["project"]
    out = {"main": {_name(r) for r in proj["dependencies"]}}
    for extra, reqs in proj["optional-dependencies"].items():
        out[extra] = {_name(r) for r in reqs}
    return out


def _environment() -> set[str]:
    env = yaml.safe_load((TOP / "environment.yml").read_text())
    names: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(r) for r in dep.get("pip", [])}
        else:
            names.add(_name(dep))
    return names - CONDA_ONLY


def test_environment_matches_pyproject() -> None:
    py = set().union(*_pyproject().values())
    env = _environment()
    assert env - py == set(), f"in environment.yml but not pyproject.toml: {sorted(env - py)}"
    assert py - env == set(), f"in pyproject.toml but not environment.yml: {sorted(py - env)}"


def test_environment_pins_python_and_bcc() -> None:
    env = yaml.safe_load((TOP / "environment.yml").read_text())
    flat = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in flat
    assert "bcc" in flat
    assert env["channels"] == ["conda-forge"]


def test_version_requirements_agree() -> None:
    """Where both files give a lower bound, it is the same one."""
    data = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]
    reqs = list(data["dependencies"]) + [r for v in data["optional-dependencies"].values() for r in v]
    pins = {_name(r): r.split(">=", 1)[1] for r in reqs if ">=" in r}
    env = yaml.safe_load((TOP / "environment.yml").read_text())
    flat: list[str] = []
    for d in env["dependencies"]:
        flat += d.get("pip", []) if isinstance(d, dict) else [d]
    for r in flat:
        if ">=" in r and _name(r) in pins:
            assert r.split(">=", 1)[1] == pins[_name(r)], f"{r} vs pyproject {pins[_name(r)]}"


def test_ci_calls_make_test() -> None:
    run = (TOP / ".ci" / "run").read_text()
    assert "make test" in run
    readme = (TOP / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
