"""GET /containers/{id}/logs reads the log in a worker thread, a piece at a time.

A 1 GiB log read on the event loop would stall every other request (`docker ps`) until it
is done, and a list of every record would hold it all in memory; so every record must be
parsed off the loop's thread, and the response must start before the file is read whole.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.engine.daemon import streams
from labkit.engine.logs import JsonFileWriter, reader


def _engine(path: Path, running: bool = False) -> Any:
    rec = SimpleNamespace(id="c1", host_config={}, config={"Tty": True}, running=running)
    return SimpleNamespace(log_path=lambda ref: (rec, str(path)),
                           store=SimpleNamespace(by_id={"c1": rec}))


def _write(path: Path, n: int) -> None:
    w = JsonFileWriter(str(path), max_size=64_000, max_file=3, compress=True)
    for i in range(n):
        w.write("stdout", f"{i}\n".encode())
    w.close()


@pytest.mark.parametrize("query", [
    {"stdout": "1"},                                   # forward, whole log
    {"stdout": "1", "tail": "3000"},                   # tail: read backwards
    {"stdout": "1", "follow": "1"},                    # follow of a stopped container
    {"stdout": "1", "follow": "1", "tail": "10"},
])
def test_records_are_parsed_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              query: dict[str, str]) -> None:
    path = tmp_path / "c-json.log"
    _write(path, 5000)
    want = [e.log for e in reader.read_logs(str(path))]     # rotated: the newest ~2400 kept
    assert len(want) > 2000 and want[-1] == b"4999\n"
    threads: set[int] = set()
    real = reader._entry

    def spy(line: bytes) -> Any:
        threads.add(threading.get_ident())
        return real(line)
    monkeypatch.setattr(reader, "_entry", spy)

    async def main() -> tuple[list[bytes], int]:
        loop_thread = threading.get_ident()
        out = [c async for c in streams.log_chunks(_engine(path), "c1", query)]
        return out, loop_thread
    out, loop_thread = asyncio.run(main())
    tail = int(query.get("tail", "-1"))
    assert out == (want[-tail:] if tail >= 0 else want)
    assert threads and loop_thread not in threads


def test_the_first_records_go_out_before_the_file_is_read_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c-json.log"
    w = JsonFileWriter(str(path))
    for i in range(20_000):
        w.write("stdout", f"{i}\n".encode())
    w.close()
    parsed = []
    real = reader._entry

    def spy(line: bytes) -> Any:
        parsed.append(1)
        return real(line)
    monkeypatch.setattr(reader, "_entry", spy)

    async def first() -> bytes:
        it = streams.log_chunks(_engine(path), "c1", {"stdout": "1"})
        chunk = await it.__anext__()
        await it.aclose()  # the client went away: the file is closed, no more is read
        return chunk
    assert asyncio.run(first()) == b"0\n"
    assert len(parsed) < 2000
