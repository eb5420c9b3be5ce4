"""json-file log driver: the writer's format and rotation, the reader's tail/since/follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.engine.logs import (
    Follower,
    JsonFileWriter,
    LineSplitter,
    follow,
    parse_size,
    parse_time,
    read_logs,
    rfc3339nano,
)
from labkit.engine.logs.jsonfile import PARTIAL_MAX
from labkit.errors import InvalidArgumentError

T0 = 1_795_875_000_123_456_789  # 2026-11-28T...


def write(w: JsonFileWriter, stream: str, *lines: bytes, ns: int = T0) -> None:
    sp = LineSplitter()
    for i, line in enumerate(lines):
        for msg in sp.feed(line):
            w.write(stream, msg, ns + i)


def test_record_format_is_dockers(tmp_path: Path) -> None:
    w = JsonFileWriter(str(tmp_path / "c-json.log"))
    w.write("stdout", b"hi \xc3\xa9\n", 1_700_000_000_120_000_000)
    w.close()
    line = (tmp_path / "c-json.log").read_bytes()
    assert line == '{"log":"hi é\\n","stream":"stdout","time":"2023-11-14T22:13:20.12Z"}\n'.encode()
    assert json.loads(line)["log"] == "hi é\n"


@pytest.mark.parametrize(("ns", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (1, "1970-01-01T00:00:00.000000001Z"),
    (1_500_000_000, "1970-01-01T00:00:01.5Z"),
    (T0, "2026-11-28T14:10:00.123456789Z"),
])
def test_rfc3339nano_trims_zeros_and_parses_back(ns: int, text: str) -> None:
    assert rfc3339nano(ns) == text
    assert parse_time(text) == ns


def test_parse_time_offsets_and_errors() -> None:
    assert parse_time("1970-01-01T01:00:00+01:00") == 0
    assert parse_time("1970-01-01T00:00:00.5-00:30") == 1800 * 10**9 + 5 * 10**8
    with pytest.raises(InvalidArgumentError):
        parse_time("yesterday")


def test_splitter_lines_partials_and_flush() -> None:
    sp = LineSplitter()
    assert sp.feed(b"a\nb") == [b"a\n"]
    assert sp.feed(b"c\n\n") == [b"bc\n", b"\n"]
    big = b"x" * (PARTIAL_MAX + 10)
    assert sp.feed(big) == [b"x" * PARTIAL_MAX]
    assert sp.flush() == [b"x" * 10]
    assert sp.flush() == []


def test_invalid_bytes_are_replaced_not_fatal(tmp_path: Path) -> None:
    w = JsonFileWriter(str(tmp_path / "l"))
    w.write("stderr", b"\xff\xfe\n")
    w.close()
    [e] = read_logs(str(tmp_path / "l"))
    assert e.stream == "stderr" and e.log == "\ufffd\ufffd\n".encode()


@pytest.mark.parametrize(("text", "size"), [("", -1), ("-1", -1), ("100", 100), ("1k", 1024),
                                            ("10m", 10 << 20), ("1g", 1 << 30), ("2kb", 2048)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["ten", "1t", "k", "-5m"])
def test_parse_size_refuses(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="max-size"):
        parse_size(bad)


def test_max_file_must_be_a_count(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="max-file"):
        JsonFileWriter.from_options(str(tmp_path / "l"), {"max-file": "0"})


def test_rotation_keeps_max_file_files_and_order(tmp_path: Path) -> None:
    path = str(tmp_path / "c-json.log")
    w = JsonFileWriter.from_options(path, {"max-size": "300", "max-file": "3"})
    write(w, "stdout", *[f"line {i:03d}\n".encode() for i in range(40)])
    w.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    assert all(p.stat().st_size <= 300 for p in tmp_path.iterdir())
    logs = [e.log for e in read_logs(path)]
    # the newest lines survive, in order and without a gap
    n = [int(x.split()[1]) for x in logs]
    assert n == list(range(n[0], 40)) and n[0] > 0


def test_max_file_1_truncates(tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path, max_size=200, max_file=1)
    write(w, "stdout", *[f"{i}\n".encode() for i in range(20)])
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["l"]
    assert read_logs(path)[-1].log == b"19\n"


def test_tail_since_until_and_streams(tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path)
    for i in range(10):
        w.write("stdout" if i % 2 == 0 else "stderr", f"{i}\n".encode(), T0 + i * 10**9)
    w.close()
    assert [e.log for e in read_logs(path, tail=3)] == [b"7\n", b"8\n", b"9\n"]
    assert read_logs(path, tail=0) == []
    assert [e.log for e in read_logs(path, since=T0 + 8 * 10**9)] == [b"8\n", b"9\n"]
    assert [e.log for e in read_logs(path, until=T0 + 10**9)] == [b"0\n", b"1\n"]
    assert [e.log for e in read_logs(path, stderr=False, tail=2)] == [b"6\n", b"8\n"]
    assert {e.stream for e in read_logs(path, stdout=False)} == {"stderr"}
    assert read_logs(str(tmp_path / "missing")) == []


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "l"
    path.write_bytes(b'{"log":"a\\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}\n{"log":"b')
    assert [e.log for e in read_logs(str(path))] == [b"a\n"]


def test_follower_sees_growth_partial_lines_and_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path, max_size=400, max_file=2)
    f = Follower(path)
    assert f.poll() == []
    w.write("stdout", b"one\n")
    assert [e.log for e in f.poll()] == [b"one\n"]
    # a record written in two pieces is returned once complete
    rec = b'{"log":"two\\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}\n'
    with open(path, "ab") as fh:
        fh.write(rec[:10])
        fh.flush()
        assert f.poll() == []
        fh.write(rec[10:])
    w.size += len(rec)
    assert [e.log for e in f.poll()] == [b"two\n"]
    got = []
    for i in range(30):  # several rotations between polls must lose nothing
        w.write("stdout", f"r{i}\n".encode())
        if i % 3 == 0:
            got += [e.log for e in f.poll()]
    got += [e.log for e in f.poll()]
    assert got == [f"r{i}\n".encode() for i in range(30)]
    f.close()
    w.close()


def test_follow_generator_tail_then_new_then_stop(tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path)
    for i in range(5):
        w.write("stdout", f"{i}\n".encode())
    seen: list[bytes] = []
    state = {"n": 0}

    def stop() -> bool:
        state["n"] += 1
        if state["n"] == 1:
            w.write("stdout", b"new\n")
        return state["n"] > 3

    for e in follow(path, tail=2, stop=stop, interval=0.001):
        seen.append(e.log)
    assert seen == [b"3\n", b"4\n", b"new\n"]
    w.close()


def _lines(n: int, start: int = 0) -> list[bytes]:
    return [f"line {i:05d}\n".encode() for i in range(start, start + n)]


def test_compress_gzips_rotated_files_and_reads_them_back(tmp_path: Path) -> None:
    import gzip

    path = str(tmp_path / "c-json.log")
    w = JsonFileWriter.from_options(path, {"max-size": "400", "max-file": "3", "compress": "true"})
    write(w, "stdout", *_lines(60))
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"]
    assert gzip.decompress((tmp_path / "c-json.log.1.gz").read_bytes()).startswith(b'{"log":')
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == dict.fromkeys(
        ("c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"), 0o600)   # what it printed: private
    n = [int(e.log.split()[1]) for e in read_logs(path)]
    assert n == list(range(n[0], 60)) and n[0] > 0          # no gap across gz and plain files
    assert [e.log for e in read_logs(path, tail=12)] == _lines(12, 48)


@pytest.mark.parametrize(("opts", "field"), [
    ({"compress": "yes"}, "log-opt compress"),
    ({"compress": "true"}, "log-opt compress"),                  # max-file 1: nothing to compress
    ({"compress": "true", "max-file": "1"}, "log-opt compress"),
    ({"max-file": "0"}, "log-opt max-file"),
    ({"colour": "blue"}, "log-opt"),
])
def test_bad_log_options_are_refused_by_name(tmp_path: Path, opts: dict[str, str],
                                             field: str) -> None:
    with pytest.raises(InvalidArgumentError) as ei:
        JsonFileWriter.from_options(str(tmp_path / "l"), opts)
    assert ei.value.what == field
    assert not (tmp_path / "l").exists()


def test_a_crash_between_gzip_and_unlink_reads_the_plain_file(tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path)
    write(w, "stdout", *_lines(3))
    w.close()
    import os
    os.rename(path, path + ".1")
    (tmp_path / "l.1.gz").write_bytes(b"torn gzip")        # the half-written member
    w = JsonFileWriter(path)
    write(w, "stdout", *_lines(2, 3))
    w.close()
    assert [e.log for e in read_logs(path)] == _lines(5)


def test_tail_reads_backwards_across_blocks_and_files(tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path, max_size=200_000, max_file=3)
    write(w, "stdout", *_lines(5000))                        # several 64 KiB blocks, rotated
    w.close()
    assert [e.log for e in read_logs(path, tail=3)] == _lines(3, 4997)
    full = read_logs(path)
    for tail in (1, 999, 1500, 2500):                        # inside one file, and across two
        assert read_logs(path, tail=tail) == full[-tail:]
    assert read_logs(path, tail=10**6) == full


def test_tail_with_since_stops_at_older_records(tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path, max_size=300, max_file=5)
    for i in range(30):
        w.write("stdout", f"{i}\n".encode(), T0 + i * 10**9)
    w.close()
    got = [e.log for e in read_logs(path, tail=100, since=T0 + 25 * 10**9)]
    assert got == [f"{i}\n".encode() for i in range(25, 30)]


def test_follower_reads_a_bounded_piece_per_poll_and_starts_at_a_record_end(
        tmp_path: Path) -> None:
    path = str(tmp_path / "l")
    w = JsonFileWriter(path)
    write(w, "stdout", *_lines(1000))
    w.close()
    with open(path, "ab") as fh:                             # a record being written
        fh.write(b'{"log":"tor')
    f = Follower(path, max_read=4096)
    end = f.line_end()
    assert end == len(Path(path).read_bytes().rsplit(b"\n", 1)[0]) + 1
    f.seek(0)
    got, polls = [], 0
    while True:
        polls += 1
        got += f.poll()
        if not f.more:
            break
    assert [e.log for e in got] == _lines(1000) and polls > 5
    f.close()
