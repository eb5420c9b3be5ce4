"""The exercise checks of notebooks 05-08 give a learner a hint, never a traceback: a blank
exercise names what to define, a wrong answer names what is wrong.  Only the parts that need
no engine run here (the checks try every answer on inputs of their own before the notebook's
engine); tests/privileged/test_checks_nb05_08.py runs the worked answers to PASS."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from labkit.lab import exercises

FUNCTIONS = {"05.diff_id": "diff_id", "05.layer_of": "layer_of",
             "06.volume_dir": "volume_dir", "06.keep_data": "keep_data",
             "07.count_streams": "count_streams", "07.log_cap": "log_cap",
             "08.veth": "connect", "08.dnat_target": "dnat_target"}


@pytest.fixture(autouse=True)
def _lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)  # make test sets it


def _hint(exercise_id: str, ns: dict[str, Any]) -> str:
    r = exercises.check(exercise_id, ns)
    assert not r.passed, r
    return r.message


def test_every_exercise_is_registered() -> None:
    for nb in ("05", "06", "07", "08"):
        assert {k for k in FUNCTIONS if k.startswith(nb)} <= set(exercises.registered(nb))


@pytest.mark.parametrize("exercise_id", sorted(FUNCTIONS))
def test_blank_exercise_names_the_function(exercise_id: str) -> None:
    assert f"named {FUNCTIONS[exercise_id]!r}" in _hint(exercise_id, {})
    assert "should be a function" in _hint(exercise_id, {FUNCTIONS[exercise_id]: 42})


@pytest.mark.parametrize("exercise_id", sorted(set(FUNCTIONS) - {"08.veth"}))
def test_an_answer_that_raises_is_a_hint(exercise_id: str) -> None:
    # (08.veth makes network namespaces before it calls the answer: a privileged test)
    if exercise_id == "05.layer_of" and os.geteuid() != 0:
        pytest.skip("the check makes whiteouts (mknod needs root) before it calls the answer")

    def broken(*args: object) -> object:
        raise ValueError("not yet")

    msg = _hint(exercise_id, {FUNCTIONS[exercise_id]: broken,
                              "client": None, "eng": None, "netlab": None})
    assert "not yet" in msg or "not defined" in msg


# -- 05 -----------------------------------------------------------------------------------------

def _digest(blob: Path) -> str:
    return "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()


def _diff_id(blob: Path) -> str:
    data = Path(blob).read_bytes()
    return "sha256:" + hashlib.sha256(gzip.decompress(data) if data[:2] == b"\x1f\x8b"
                                      else data).hexdigest()


def test_diff_id_hints() -> None:
    assert "UNCOMPRESSED" in _hint("05.diff_id", {"diff_id": _digest})
    assert "bare hex" in _hint("05.diff_id", {"diff_id": lambda b: _diff_id(b)[7:]})
    assert "as a string" in _hint("05.diff_id", {"diff_id": lambda b: None})
    # right on the check's own tars: it goes on to the notebook's store, and asks for it
    assert "'eng' is not defined" in _hint("05.diff_id", {"diff_id": _diff_id})


def _naive_layer_of(dirs: list[Path], path: str) -> int | None:
    """Looks only at the path itself: misses a whiteout of a parent directory."""
    for i in reversed(range(len(dirs))):
        if os.path.lexists(dirs[i] / path):
            return None if (dirs[i] / path).is_char_device() else i
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="the check makes whiteouts (mknod needs root)")
def test_layer_of_hints() -> None:
    assert "expected 0" in _hint("05.layer_of", {"layer_of": lambda d, p: None})
    assert "whole /opt directory" in _hint("05.layer_of", {"layer_of": _naive_layer_of})
    from labkit.lab.checks.nb05 import reference_layer_of
    assert "'eng' is not defined" in _hint("05.layer_of", {"layer_of": reference_layer_of})
    assert not [p for p in os.listdir("/tmp") if p.startswith("lk-chk05-")]


# -- 06 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("exercise_id", ["06.volume_dir", "06.keep_data"])
def test_volume_checks_ask_for_the_engine_first(exercise_id: str) -> None:
    assert "'client' is not defined" in _hint(exercise_id,
                                              {FUNCTIONS[exercise_id]: lambda *a: None})


# -- 07 -----------------------------------------------------------------------------------------

def _count(path: Path) -> dict[str, int]:
    counts = {"stdout": 0, "stderr": 0}
    for line in Path(path).read_text().splitlines():
        counts[json.loads(line)["stream"]] += 1
    return counts


def test_count_streams_hints() -> None:
    assert "expected" in _hint("07.count_streams",
                               {"count_streams": lambda p: {"stdout": 0, "stderr": 0}})
    swapped = {"count_streams": lambda p: {"stdout": _count(p)["stderr"],
                                           "stderr": _count(p)["stdout"]}}
    assert "swapped" in _hint("07.count_streams", swapped)
    assert "'stream' field" in _hint("07.count_streams", {"count_streams": lambda p: {"out": 1}})
    assert "'eng' is not defined" in _hint("07.count_streams", {"count_streams": _count})


@pytest.mark.parametrize(("answer", "words"), [
    (lambda n: "json-file", "return (driver, options)"),
    (lambda n: ("syslog", {}), "only json-file and local"),
    (lambda n: ("json-file", {}), "without max-size"),
    (lambda n: ("json-file", {"max-size": str(n), "max-file": "3"}), "more than"),
    (lambda n: ("local", {}), "more than"),  # local's defaults: 20m x 5
    (lambda n: ("json-file", {"max-size": "1k", "max-file": "0"}), "would refuse"),
    (lambda n: ("json-file", {"max-size": "1k", "rotate": "yes"}), "would refuse"),
    (lambda n: ("json-file", {"max-size": str(n // 2), "max-file": "2"}), "'eng' is not"),
])
def test_log_cap_hints(answer: Any, words: str) -> None:
    assert words in _hint("07.log_cap", {"log_cap": answer})


# -- 08 -----------------------------------------------------------------------------------------

def _dnat(rules: list[str], port: int) -> tuple[str, int] | None:
    import re

    for rule in rules:
        m = re.search(rf"\bdport {port} dnat ip to ([\d.]+):(\d+)", rule)
        if m:
            return m.group(1), int(m.group(2))
    return None


def _substring_dnat(rules: list[str], port: int) -> tuple[str, int] | None:
    for rule in rules:
        if f"dport {port}" in rule:
            ip, _, p = rule.split(" to ")[1].split()[0].partition(":")
            return ip, int(p)
    return None


def test_dnat_target_hints() -> None:
    assert "whole number" in _hint("08.dnat_target", {"dnat_target": _substring_dnat})
    assert "return None" in _hint("08.dnat_target",
                                  {"dnat_target": lambda r, p: _dnat(r, p) or ("", 0)})
    assert "dnat ip to" in _hint("08.dnat_target", {"dnat_target": lambda r, p: None})
    # right on the samples, a list instead of a tuple is fine; then it asks for the lab
    listy = {"dnat_target": lambda r, p: list(_dnat(r, p) or []) or None}
    assert "'netlab' is not defined" in _hint("08.dnat_target", listy)


# -- the notebooks' older exercises (section 7 of 06 and 08), checked by the demo modules -------

@pytest.mark.parametrize(("exercise_id", "needs"), [("06.greeting", "'client'"),
                                                    ("08.publish", "'netlab'"),
                                                    ("08.dns", "'netlab'")])
def test_section_exercises_ask_for_the_notebook_objects(exercise_id: str, needs: str) -> None:
    assert f"{needs} is not defined" in _hint(exercise_id, {})
