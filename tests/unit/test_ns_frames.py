"""labkit's internal framing (labkit.ns.frames): [tag u8][length u32 BE][payload]."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from labkit import errors
from labkit.ns import frames
from labkit.ns.frames import Reader, pack, read_to_eof, split


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_layout() -> None:
    assert pack(b"P", b"42") == b"P\x00\x00\x00\x0242"
    assert pack(b"R") == b"R\x00\x00\x00\x00"
    assert frames.HEADER.size == 5


def test_split_partial_and_zero_length() -> None:
    data = pack(b"P", b"1") + pack(b"R") + pack(b"E", b"x" * 70000)
    got, rest = split(data[:-3])
    assert got == [(b"P", b"1"), (b"R", b"")] and rest == data[len(pack(b"P", b"1") + pack(b"R")):-3]
    assert split(rest + data[-3:]) == ([(b"E", b"x" * 70000)], b"")
    assert split(b"P\x00\x00") == ([], b"P\x00\x00")


def test_max_length() -> None:
    head = b"E\xff\xff\xff\xff"
    assert split(head + b"abc") == ([], head + b"abc")
    assert frames.MAX_PAYLOAD == 0xFFFFFFFF

    class Huge(bytes):
        def __len__(self) -> int:
            return frames.MAX_PAYLOAD + 1

    with pytest.raises(ValueError, match="exceeds"):
        pack(b"E", Huge(b"x"))
    with pytest.raises(ValueError, match="not one byte"):
        pack(b"PP", b"")


def test_reader_reassembles_writes_cut_anywhere(pipe: tuple[int, int]) -> None:
    r, w = pipe
    data = pack(b"H", b"7") + pack(b"X", b"") + pack(b"E", b"y" * 100000)

    def writer() -> None:
        for i in range(0, len(data), 3001):
            os.write(w, data[i:i + 3001])
        os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    reader = Reader(r, "test pipe")
    assert reader.next(10) == (b"H", b"7")
    assert reader.next(10) == (b"X", b"")
    assert reader.next(10) == (b"E", b"y" * 100000)
    assert reader.next(10) is None
    t.join()


def test_reader_names_a_frame_cut_by_eof(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, pack(b"P", b"123")[:-1])
    os.close(w)
    with pytest.raises(errors.SyscallError, match="test pipe: truncated frame"):
        Reader(r, "test pipe").next(5)


def test_reader_timeout(pipe: tuple[int, int]) -> None:
    r, _w = pipe
    with pytest.raises(errors.SyscallError) as exc:
        Reader(r, "test pipe").next(0.01)
    assert exc.value.errno == 110  # ETIMEDOUT


def test_read_to_eof(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, pack(b"P", b"9") + pack(b"R", b""))
    os.close(w)
    assert read_to_eof(r, 5, "test pipe") == [(b"P", b"9"), (b"R", b"")]
