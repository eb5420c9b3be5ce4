"""Detach keys: moby/term's spelling, and the sequence found across chunk boundaries."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.containers.detachkeys import (
    DEFAULT_DETACH_KEYS,
    DetachMatcher,
    parse_detach_keys,
)


def test_spelling() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == DEFAULT_DETACH_KEYS == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@,ctrl-_,ctrl-\\,DEL") == b"a\x00\x1f\x1c\x7f"
    for bad in ("ctrl-foo", "ab", "", "ctrl-p,,ctrl-q"):
        with pytest.raises(errors.InvalidArgumentError):
            parse_detach_keys(bad)


def test_matcher_holds_back_a_partial_match_and_gives_it_back() -> None:
    m = DetachMatcher(b"\x10\x11")
    assert m.feed(b"ab\x10") == (b"ab", False)
    assert m.feed(b"c") == (b"\x10c", False)
    assert m.feed(b"\x10\x10") == (b"\x10", False)
    assert m.feed(b"\x11tail") == (b"", True)


def test_matcher_whole_sequence_in_one_chunk() -> None:
    m = DetachMatcher(b"\x18a")
    assert m.feed(b"xy\x18az") == (b"xy", True)
