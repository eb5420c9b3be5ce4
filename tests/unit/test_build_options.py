"""POST /build query parameters: applied, or refused by name (labkit.engine.build.options)."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.build.options import parse_options


def _opts(**q: str):  # type: ignore[no-untyped-def]
    return parse_options(q, list(q.items()))


def test_defaults_and_values() -> None:
    o = _opts(dockerfile="sub/Df", version="1")
    assert (o.dockerfile, o.rm, o.nocache, o.quiet, o.tags) == ("sub/Df", True, False, False, [])
    o = parse_options({"buildargs": '{"A":"1","B":null}', "labels": '{"k":"v"}', "nocache": "1",
                       "memory": "67108864", "cpusetcpus": "0"},
                      [("t", "x"), ("t", "lk/y:2"), ("buildargs", '{"A":"1","B":null}')])
    assert o.tags == ["x:latest", "lk/y:2"] and o.buildargs == {"A": "1", "B": ""}
    assert o.labels == {"k": "v"} and o.nocache
    assert o.host == {"Memory": 67108864, "CpusetCpus": "0"}


@pytest.mark.parametrize(("key", "value", "word"), [
    ("pull", "1", "pull"), ("platform", "linux/s390x", "platform"),
    ("networkmode", "host", "networkmode"), ("shmsize", "1024", "shmsize"),
    ("squash", "1", "squash"), ("version", "2", "version"), ("frobnicate", "1", "frobnicate"),
    ("remote", "https://example.com/x.git", "remote"),
])
def test_refused_by_name(key: str, value: str, word: str) -> None:
    with pytest.raises(errors.UnsupportedError, match=word):
        _opts(**{key: value})


def test_zero_values_the_clients_send_are_fine() -> None:
    o = _opts(pull="0", shmsize="0", cachefrom="[]", networkmode="default", platform="",
              squash="", extrahosts="", q="false", rm="false")
    assert not o.quiet and not o.rm
    with pytest.raises(errors.InvalidArgumentError, match="buildargs"):
        _opts(buildargs="[1]")
    with pytest.raises(errors.InvalidArgumentError, match="reference"):
        parse_options({}, [("t", "Bad:Name!")])
