"""Docker's stdout/stderr framing (labkit.engine.shim.stdcopy): the one encoder and decoder."""

from __future__ import annotations

import pytest

from labkit.engine.shim import stdcopy
from labkit.engine.shim.stdcopy import Decoder, decode_all, encode, split


def test_header_layout() -> None:
    assert encode(1, b"hello\n")[:8] == bytes([1, 0, 0, 0, 0, 0, 0, 6])
    assert encode(2, b"x" * 0x01020304)[:8] == bytes([2, 0, 0, 0, 1, 2, 3, 4])
    assert stdcopy.HEADER.size == 8


def test_roundtrip_and_partial() -> None:
    data = encode(1, b"hello\n") + encode(2, b"") + encode(2, b"err")
    frames, rest = split(data + encode(1, b"partial")[:9])
    assert frames == [(1, b"hello\n"), (2, b""), (2, b"err")]
    assert rest == encode(1, b"partial")[:9]
    assert split(rest + encode(1, b"partial")[9:]) == ([(1, b"partial")], b"")


def test_zero_length_frame() -> None:
    assert encode(1, b"") == bytes([1, 0, 0, 0, 0, 0, 0, 0])
    assert decode_all(encode(2, b"")) == [(2, b"")]


def test_decoder_byte_by_byte() -> None:
    data = encode(1, b"abc") + encode(2, b"") + encode(2, b"de" * 40000)
    dec, got = Decoder(), []
    for i in range(0, len(data), 7):
        got += dec.feed(data[i:i + 7])
    assert got == [(1, b"abc"), (2, b""), (2, b"de" * 40000)] and dec.pending == 0


def test_decoder_holds_a_cut_frame() -> None:
    dec = Decoder()
    assert dec.feed(encode(1, b"abcdef")[:-2]) == []
    assert dec.pending == 12
    assert dec.feed(b"ef") == [(1, b"abcdef")] and dec.pending == 0


def test_max_length_is_the_uint32_limit() -> None:
    # a header announcing the largest length: nothing is decoded until it all arrives
    head = bytes([1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
    assert split(head + b"x" * 100) == ([], head + b"x" * 100)
    assert stdcopy.MAX_PAYLOAD == 0xFFFFFFFF


def test_encode_refuses_what_the_header_cannot_say() -> None:
    with pytest.raises(ValueError, match="stream 3"):
        encode(3, b"x")

    class Huge(bytes):
        def __len__(self) -> int:
            return stdcopy.MAX_PAYLOAD + 1

    with pytest.raises(ValueError, match="exceeds"):
        encode(1, Huge(b"x"))


def test_decode_all_names_a_truncated_frame() -> None:
    with pytest.raises(ValueError, match="truncated frame at byte 9"):
        decode_all(encode(1, b"a") + encode(1, b"abc")[:5])
