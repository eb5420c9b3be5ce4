"""labkit._sys.fastjson gives what json gives (same objects, same text) and typed errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from labkit._sys import fastjson
from labkit.engine.runtime import config as configmod
from labkit.engine.runtime.spec import default_config
from labkit.errors import InvalidArgumentError

DOCS: list[Any] = [
    default_config(False),
    default_config(True),
    {"ociVersion": "1.0.2", "id": "lk-x", "status": "created", "pid": 4242,
     "bundle": "/tmp/b", "annotations": {"k": "v"}, "created": "2026-01-01T00:00:00.0Z"},
    {"unicode": "héllo ☃ \U0001f600 \u0000 \"q\" \\ \n\t", "ключ": ["значение"]},
    {"floats": [0.1, -2.5e-300, 1e300, 3.0, -0.0, 123456789.123456789]},
    {"ints": [0, -1, 2**63 - 1, 2**64, -(10**40), 10**400]},
    {"nested": [[[{"a": [{"b": {"c": [None, True, False]}}]}]]]},
    [], {}, "", "just a string", 0, None, True,
    {"z": 1, "a": {"y": 2, "b": 3}},
]


@pytest.mark.parametrize("doc", DOCS)
def test_dumps_is_json_dumps(doc: Any) -> None:
    assert fastjson.dumps(doc) == json.dumps(doc)
    assert fastjson.dumps(doc, sort_keys=True) == json.dumps(doc, sort_keys=True)


@pytest.mark.parametrize("doc", DOCS)
def test_loads_is_json_loads(doc: Any) -> None:
    for text in (json.dumps(doc), json.dumps(doc, indent=2, ensure_ascii=False)):
        for data in (text, text.encode(), "\ufeff".encode() + text.encode(),
                     f" \n\t{text}\r\n "):
            got = fastjson.loads(data)
            want = json.loads(data)
            assert got == want and type(got) is type(want)


def test_special_floats_and_utf16() -> None:
    got = fastjson.loads("[NaN, Infinity, -Infinity, 1e400]")
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, math.inf]
    assert fastjson.dumps([math.nan, math.inf]) == json.dumps([math.nan, math.inf])
    text = json.dumps({"a": "é"})
    for enc in ("utf-16", "utf-16-le", "utf-32-be"):  # json detects these; so do we (via json)
        assert fastjson.loads(text.encode(enc)) == {"a": "é"}


@pytest.mark.parametrize("bad", ["", "   ", "{", "[1,]", '{"a":1} x', "nul", '"\\x"',
                                 '{"a" 1}', "[1 2]", '"\x01"', "\ufeff{}", b"\xff{}", "01"])
def test_malformed_names_the_file(bad: str | bytes) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        fastjson.loads(bad, what="/b/config.json")
    assert exc.value.what == "/b/config.json"
    assert str(exc.value).startswith("/b/config.json: not valid JSON: ")
    if not isinstance(bad, bytes) and not bad.startswith("\ufeff"):
        with pytest.raises(json.JSONDecodeError) as jexc:
            json.loads(bad)
        assert str(jexc.value) in str(exc.value)  # json's message, line and column


def test_dumps_refuses_like_json() -> None:
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        fastjson.dumps({"a": {1}})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        fastjson.dumps(loop)


def test_runtime_config_load_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"ociVersion": "1.0.2",')
    with pytest.raises(InvalidArgumentError) as exc:
        configmod.load(str(tmp_path), "lk-x")
    assert exc.value.what == str(tmp_path / "config.json")
    assert "not valid JSON" in str(exc.value) and "line 1" in str(exc.value)
