"""labkit.engine.client against canned responses: requests sent, streams decoded, errors rebuilt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.daemon import FakeDaemon, js

from labkit import errors
from labkit.engine.client import APIError, Client, DaemonUnavailable
from labkit.engine.client.streams import demux_all
from labkit.engine.client.transport import error_from_response
from labkit.engine.shim.stdcopy import Decoder as FrameDecoder
from labkit.engine.shim.stdcopy import encode as frame


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDaemon]:
    with FakeDaemon(tmp_path / "d.sock") as f:
        yield f


def test_ping_sends_unversioned_path_and_reads_headers(fake: FakeDaemon) -> None:
    fake.routes["GET /_ping"] = lambda r: (200, {"Api-Version": "1.41"}, b"OK")
    headers = Client(fake.path).system.ping()
    assert headers["api-version"] == "1.41"
    assert fake.requests[0]["path"] == "/_ping"


def test_create_sends_json_body_and_name(fake: FakeDaemon) -> None:
    fake.routes["POST /containers/create"] = lambda r: js(201, {"Id": "abc", "Warnings": []})
    out = Client(fake.path).containers.create({"Image": "busybox", "Cmd": ["true"]}, name="x")
    assert out["Id"] == "abc"
    req = fake.requests[0]
    assert req["query"] == "name=x"
    assert json.loads(req["body"]) == {"Image": "busybox", "Cmd": ["true"]}
    assert req["headers"]["content-type"] == "application/json"


def test_list_encodes_filters_as_json_and_bools_as_1(fake: FakeDaemon) -> None:
    fake.routes["GET /containers/json"] = lambda r: js(200, [{"Id": "a"}])
    assert Client(fake.path).containers.list(all=True, filters={"status": ["exited"]}) == [
        {"Id": "a"}]
    q = fake.requests[0]["query"]
    assert "all=1" in q and "filters=%7B%22status%22%3A%5B%22exited%22%5D%7D" in q


def test_chunked_body_is_reassembled(fake: FakeDaemon) -> None:
    fake.routes["POST /containers/x/wait"] = lambda r: (
        200, {"Content-Type": "application/json"}, [b'{"StatusCode"', b':3}'])
    assert Client(fake.path).containers.wait("x").json() == {"StatusCode": 3}


@pytest.mark.parametrize(("status", "body", "cls"), [
    (404, {"message": "No such container: nosuch", "type": "NotFoundError"},
     errors.NotFoundError),
    (409, {"message": "Conflict. The container name \"/dup\" is already in use"},
     errors.ConflictError),
    (400, {"message": "invalid restart policy"}, errors.InvalidArgumentError),
    (501, {"message": "not here"}, errors.UnsupportedError),
    (500, {"message": "boom", "type": "NotFoundError"}, errors.NotFoundError),
])
def test_errors_rebuilt_by_type_then_status(fake: FakeDaemon, status: int, body: dict[str, str],
                                            cls: type[Exception]) -> None:
    fake.routes["GET /containers/nosuch/json"] = lambda r: js(status, body)
    with pytest.raises(cls) as info:
        Client(fake.path).containers.inspect("nosuch")
    assert str(info.value) == body["message"]


def test_unknown_status_is_api_error() -> None:
    err = error_from_response(502, b'{"message": "bad gateway"}')
    assert isinstance(err, APIError) and err.status == 502
    assert str(err) == "bad gateway"


def test_503_is_unavailable_with_dockers_text() -> None:
    err = error_from_response(503, b'{"message": "not a swarm manager"}')
    assert isinstance(err, errors.UnavailableError) and err.status == 503  # type: ignore[attr-defined]
    assert str(err) == "not a swarm manager"


def test_non_json_error_body_keeps_text() -> None:
    err = error_from_response(400, b"bad thing\n")
    assert isinstance(err, errors.InvalidArgumentError) and str(err) == "bad thing"


def test_hijack_keeps_bytes_sent_with_headers_and_half_closes(fake: FakeDaemon) -> None:
    out = frame(1, b"hi\n") + frame(2, b"oops\n")
    fake.routes["POST /containers/x/attach"] = lambda r: (
        101, {"Upgrade": "tcp", "Connection": "Upgrade"}, out)
    h = Client(fake.path).containers.attach("x", stdin=True)
    h.sendall(b"input")
    h.close_write()
    got = b""
    while data := h.recv():
        got += data
    h.close()
    assert demux_all(got) == (b"hi\n", b"oops\n")
    assert fake.hijack_input == b"input"
    req = fake.requests[0]
    assert req["headers"]["upgrade"] == "tcp" and req["headers"]["connection"] == "Upgrade"
    assert "stdin=1" in req["query"] and "stream=1" in req["query"]


def test_hijack_error_status_raises_typed(fake: FakeDaemon) -> None:
    fake.routes["POST /exec/e/start"] = lambda r: js(409, {"message": "container is not running",
                                                            "type": "ConflictError"})
    with pytest.raises(errors.ConflictError, match="not running"):
        Client(fake.path).execs.start("e")


def test_exec_create_body(fake: FakeDaemon) -> None:
    fake.routes["POST /containers/c/exec"] = lambda r: js(201, {"Id": "e1"})
    assert Client(fake.path).execs.create("c", ["ls", "-l"], tty=True, env=["A=1"]) == "e1"
    body = json.loads(fake.requests[0]["body"])
    assert body["Cmd"] == ["ls", "-l"] and body["Tty"] is True and body["Env"] == ["A=1"]


def test_stream_lines(fake: FakeDaemon) -> None:
    fake.routes["GET /events"] = lambda r: (200, {}, [b'{"a":1}\n{"a"', b':2}\n'])
    assert list(Client(fake.path).system.events()) == [{"a": 1}, {"a": 2}]


def test_no_daemon_is_daemon_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailable) as info:
        Client(tmp_path / "none.sock").system.ping()
    assert "cannot connect" in str(info.value) and info.value.hint


def test_frame_decoder_handles_split_frames() -> None:
    data = frame(1, b"abc") + frame(2, b"de")
    dec = FrameDecoder()
    got = []
    for i in range(len(data)):
        got += dec.feed(data[i:i + 1])
    assert got == [(1, b"abc"), (2, b"de")] and dec.pending == 0
