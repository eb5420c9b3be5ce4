"""Log drivers other than json-file: formats on the wire and on disk, options and their words,
tags, dual logging; each checked from the receiving end (a socket the test holds)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import errors
from labkit.engine.containers.logconfig import check_daemon_default, check_log_config
from labkit.engine.daemon.errmap import message_of, status_of
from labkit.engine.logs import drivers, fluentd, gelf, local, syslog, tag
from labkit.engine.logs.jsonfile import LineSplitter
from labkit.engine.logs.mpack import ExtType, Unpacker, packb
from labkit.lab.logsinks import GelfListener, decode_gelf

T0 = 1_795_875_000_123_456_789
CID = "c0ffee" + "0" * 58
CTX = {"id": CID, "name": "web", "image_id": "sha256:" + "ab" * 32, "image_name": "busybox:1",
       "command": "sh -c echo hi", "created": "2026-12-03T10:00:00.5Z"}
CTX_OPT = json.dumps(CTX)


def feed(w: Any, stream: str, data: bytes, ns: int = T0) -> None:
    sp = LineSplitter()
    for i, msg in enumerate(sp.feed(data) + sp.flush()):
        w.write(stream, msg, ns + i)


def refusal(fn: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(errors.LabkitError) as exc:
        fn(*args)
    return status_of(exc.value), message_of(exc.value)


# -- local ------------------------------------------------------------------------------

def test_local_record_framing_and_protobuf(tmp_path: Path) -> None:
    w = local.LocalWriter(str(tmp_path / "container.log"))
    w.write("stderr", b"hi\n", 1_700_000_000_000_000_001)
    w.close()
    raw = (tmp_path / "container.log").read_bytes()
    n = struct.unpack(">I", raw[:4])[0]
    assert len(raw) == n + 8 and raw[-4:] == raw[:4]
    # field 1 "stderr", field 2 varint time, field 3 b"hi" (newline dropped), no partial
    assert raw[4:4 + n] == (b"\x0a\x06stderr\x10" + local._varint(1_700_000_000_000_000_001)
                            + b"\x1a\x02hi")
    assert local.decode_entry(raw[4:4 + n]) == ("stderr", 1_700_000_000_000_000_001, b"hi",
                                                False)
    assert os.stat(tmp_path / "container.log").st_mode & 0o777 == 0o600


def test_local_reads_back_tail_since_until_streams(tmp_path: Path) -> None:
    p = str(tmp_path / "container.log")
    w = local.LocalWriter(p)
    for i in range(10):
        w.write("stdout" if i % 2 == 0 else "stderr", f"l{i}\n".encode(), T0 + i)
    w.write("stdout", b"partial", T0 + 10)
    w.close()
    got = [e.log for e in local.scan(p)]
    assert got == [f"l{i}\n".encode() for i in range(10)] + [b"partial"]
    assert [e.log for e in local.scan(p, tail=2)] == [b"l9\n", b"partial"]
    assert [e.log for e in local.scan(p, since=T0 + 8, until=T0 + 9)] == [b"l8\n", b"l9\n"]
    assert [e.log for e in local.scan(p, stdout=False)] == [f"l{i}\n".encode()
                                                            for i in range(1, 10, 2)]
    assert list(local.scan(p, tail=0)) == []


def test_local_rotation_compress_and_defaults(tmp_path: Path) -> None:
    p = str(tmp_path / "container.log")
    assert local.check_options({}) == (20 << 20, 5, True)  # moby's local defaults
    w = local.LocalWriter.from_options(p, {"max-size": "1k", "max-file": "3"})
    for i in range(200):
        w.write("stdout", f"line-{i:03d}\n".encode(), T0 + i)
    w.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["container.log", "container.log.1.gz", "container.log.2.gz"]
    with gzip.open(tmp_path / "container.log.1.gz") as f:
        assert local.decode_entry(f.read()[4:])  # a local-format record inside
    got = [e.log for e in local.scan(p)]
    assert got[-1] == b"line-199\n" and len(got) < 200  # the oldest rotated away
    assert got == sorted(got)
    assert all(os.stat(tmp_path / n).st_mode & 0o777 == 0o600 for n in names)


def test_local_follower_across_rotation_and_torn_records(tmp_path: Path) -> None:
    p = str(tmp_path / "container.log")
    w = local.LocalWriter(p, max_size=300, max_file=2)
    f = local.LocalFollower(p)
    seen: list[bytes] = []
    for i in range(40):
        w.write("stdout", f"n{i}\n".encode(), T0 + i)
        seen += [e.log for e in f.poll()]
    w.close()
    seen += [e.log for e in f.poll()]
    assert seen == [f"n{i}\n".encode() for i in range(40)]
    with open(p, "ab") as fh:  # a writer that died mid-record
        fh.write(b"\x00\x00\x00\x40abc")
    f2 = local.LocalFollower(p)
    end = f2.line_end()
    assert end == os.path.getsize(p) - 7
    assert [e.log for e in local.scan(p)][-1] == b"n39\n"


@pytest.mark.parametrize(("opts", "message"), [
    ({"nosuch": "1"}, "unknown log opt 'nosuch' for local log driver"),
    ({"max-file": "0"}, "max-file cannot be less than 1"),
    ({"max-file": "x"}, 'strconv.Atoi: parsing "x": invalid syntax'),
])
def test_local_refusals(opts: dict[str, str], message: str) -> None:
    assert refusal(check_log_config, {"Type": "local", "Config": opts}) == (400, message)


# -- tags -------------------------------------------------------------------------------

def test_tag_fields() -> None:
    t = "{{.ID}} {{.FullID}} {{.Name}} {{.ImageID}} {{.ImageFullID}} {{.ImageName}} " \
        "{{ .DaemonName }}"
    assert tag.render(t, CTX).split() == [CID[:12], CID, "web", "ab" * 6, "sha256:" + "ab" * 32,
                                          "busybox:1", "labkit"]
    assert tag.render("app-{{.Name}}", CTX) == "app-web"


@pytest.mark.parametrize("template", [
    '{{printf "%s" .Name}}', "{{.Env}}", "{{range .}}x{{end}}", "{{.Name", "{{ .Name | upper }}",
    "{{template \"x\"}}", "{{call .X}}"])
def test_tag_only_documented_fields(template: str) -> None:
    """A tag is API input: nothing but Docker's fields is evaluated (no template code)."""
    status, _ = refusal(tag.render, template, CTX)
    assert status == 400
    for driver in ("syslog", "json-file", "fluentd"):
        assert refusal(check_log_config, {"Type": driver, "Config": {"tag": template}})[0] == 400


# -- syslog -----------------------------------------------------------------------------

def test_syslog_formats() -> None:
    ns = 1_764_756_000_123_456_000
    for fmt in ("", "rfc3164"):
        line = syslog.format_message(fmt, 30, ns, "h", "t", 7, "hi")
        assert line.startswith("<30>") and line.endswith(" t[7]: hi\n")
        assert (" h t[7]" in line) == (fmt == "rfc3164")
    r5424 = syslog.format_message("rfc5424", 27, ns, "h", "t", 7, "hi")
    assert r5424.startswith("<27>1 ") and r5424.endswith(" h t 7 t - hi\n")
    micro = syslog.format_message("rfc5424micro", 27, ns, "h", "t", 7, "hi").split()[1]
    assert ".123456" in micro


@pytest.mark.parametrize(("opts", "message"), [
    ({"x": "1"}, "unknown log opt 'x' for syslog log driver"),
    ({"syslog-address": "http://a"}, "unsupported scheme: 'http'"),
    ({"syslog-address": "unix:///nonexistent/lk.sock"},
     "stat /nonexistent/lk.sock: no such file or directory"),
    ({"syslog-facility": "nope"}, "invalid syslog facility"),
    ({"syslog-format": "rfc9999"}, "Invalid syslog format"),
    ({"cache-disabled": "maybe"}, "invalid value for option cache-disabled: maybe"),
])
def test_syslog_refusals(opts: dict[str, str], message: str) -> None:
    assert refusal(check_log_config, {"Type": "syslog", "Config": opts}) == (400, message)


@pytest.mark.parametrize("opts", [{"syslog-tls-ca-cert": "/x"}, {"labels": "a"},
                                  {"syslog-address": "tcp+tls://127.0.0.1:1"}])
def test_syslog_what_labkit_lacks_is_501(opts: dict[str, str]) -> None:
    assert refusal(check_log_config, {"Type": "syslog", "Config": opts})[0] == 501


def test_syslog_writer_unixgram_facility_severity_tag(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    try:
        w = syslog.SyslogWriter({"syslog-address": f"unixgram://{path}",
                                 "syslog-facility": "local3", "tag": "{{.Name}}"}, CTX)
        feed(w, "stdout", b"out \x1b[31mred\x1b[0m\nsecond\n")
        feed(w, "stderr", b"err")
        w.close()
        got = [rx.recv(70000).decode() for _ in range(3)]
    finally:
        rx.close()
    pri = 19 * 8
    want = f" web[{os.getpid()}]: out \x1b[31mred\x1b[0m\n"
    assert got[0].startswith(f"<{pri + 6}>") and got[0].endswith(want)
    assert got[1].endswith(": second\n")
    assert got[2].startswith(f"<{pri + 3}>") and got[2].endswith(": err\n")
    assert all(g.count("\n") == 1 for g in got)  # one message, one newline: framing holds


def test_syslog_tcp_stream_framing_survives_huge_and_hostile_lines() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    data: list[bytes] = []

    def take() -> None:
        c, _ = srv.accept()
        with c:
            while chunk := c.recv(65536):
                data.append(chunk)
    t = threading.Thread(target=take)
    t.start()
    w = syslog.SyslogWriter({"syslog-address": f"tcp://127.0.0.1:{port}",
                             "syslog-format": "rfc5424"}, CTX)
    feed(w, "stdout", b"a\r\x00b\n" + b"x" * 40000 + b"\nlast\n")
    w.close()
    t.join(10)
    srv.close()
    lines = b"".join(data).split(b"\n")
    assert lines[-1] == b"" and len(lines) == 1 + 3 + 1 + 1  # a, 16K+16K+rest of x, last
    assert lines[0].endswith(b" - a\r\x00b") and lines[-2].endswith(b" - last")
    assert [len(ln.split(b" - ", 1)[1]) for ln in lines[1:4]] == [16384, 16384, 40000 - 32768]


def test_network_driver_unreachable_fails_start(tmp_path: Path) -> None:
    with pytest.raises(errors.SyscallError, match="failed to initialize logging driver"):
        drivers.open_writer("fluentd", str(tmp_path / "c-json.log"),
                            {"fluentd-address": "127.0.0.1:1", drivers.CONTEXT_KEY: CTX_OPT})
    assert not (tmp_path / "container-cached.log").exists()


# -- gelf -------------------------------------------------------------------------------

def test_gelf_message_fields_and_chunking_through_a_listener() -> None:
    with GelfListener() as g:
        w = gelf.GelfWriter({"gelf-address": g.address, "gelf-compression-type": "none",
                             "tag": "t-{{.Name}}"}, CTX)
        feed(w, "stdout", b"hello\n")
        big = os.urandom(6000).hex().encode()  # 12000 bytes: > 1 datagram, two 16K pieces no
        feed(w, "stderr", big + b"\n")
        w.close()
        m = g.wait_for(lambda m: m["short_message"] == "hello")[0]
        b = g.wait_for(lambda m: m["short_message"] == big.decode())[0]
    assert m == {"version": "1.1", "host": socket.gethostname(), "short_message": "hello",
                 "timestamp": (T0 // 10**6) / 1000, "level": 6, "_container_id": CID,
                 "_container_name": "web", "_image_id": CTX["image_id"],
                 "_image_name": "busybox:1", "_command": "sh -c echo hi", "_tag": "t-web",
                 "_created": CTX["created"]}
    assert b["level"] == 3 and g.chunked == 1


def test_gelf_chunk_layout_and_limit() -> None:
    payload = bytes(range(256)) * 20
    parts = gelf.chunks(payload, b"12345678")
    assert all(len(p) <= gelf.CHUNK and p[:2] == b"\x1e\x0f" and p[2:10] == b"12345678"
               for p in parts)
    assert [p[10] for p in parts] == list(range(len(parts))) and {p[11] for p in parts} == {
        len(parts)}
    assert b"".join(p[12:] for p in parts) == payload
    assert gelf.chunks(b"x" * (gelf.CHUNK - 12) * 129, b"12345678") == []  # spec: <= 128
    assert gelf.chunks(b"small", b"12345678") == [b"small"]


@pytest.mark.parametrize("ctype", ["gzip", "zlib"])
def test_gelf_compression(ctype: str) -> None:
    z = gelf.compress(b'{"a":1}', ctype, 1)
    assert decode_gelf(z) == {"a": 1}
    if ctype == "gzip":
        assert z[:2] == b"\x1f\x8b"
    else:
        assert zlib.decompress(z) == b'{"a":1}'


@pytest.mark.parametrize(("opts", "message"), [
    ({}, "gelf-address is a required parameter"),
    ({"gelf-address": "http://a:1"}, "gelf: endpoint needs to be TCP or UDP"),
    ({"gelf-address": "udp://a"}, "gelf: please provide gelf-address as proto://host:port"),
    ({"gelf-address": "udp://a:1", "x": "y"}, "unknown log opt 'x' for gelf log driver"),
])
def test_gelf_refusals(opts: dict[str, str], message: str) -> None:
    assert refusal(check_log_config, {"Type": "gelf", "Config": opts}) == (400, message)


def test_gelf_tcp_nul_framing() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    w = gelf.GelfWriter({"gelf-address": f"tcp://127.0.0.1:{port}"}, CTX)
    c, _ = srv.accept()
    feed(w, "stdout", b"a\x00b\n")
    w.close()
    data = c.recv(65536)
    c.close()
    srv.close()
    assert data.count(b"\0") == 1 and data.endswith(b"\0")
    assert json.loads(data[:-1])["short_message"] == "a\x00b"


# -- fluentd ----------------------------------------------------------------------------

def test_msgpack_roundtrip() -> None:
    values = [None, True, False, 0, 127, -1, -33, 1 << 40, -(1 << 40), 1.5, "", "é" * 40,
              "x" * 70000, b"\x00\xff", [1, [2]], {"a": {"b": [1]}}, ExtType(0, b"12345678")]
    u = Unpacker()
    u.feed(b"".join(packb(v) for v in values))
    assert list(u) == values


def test_msgpack_decoder_refuses_hostile_lengths() -> None:
    u = Unpacker(max_len=1024)
    u.feed(b"\xdb\xff\xff\xff\xff")  # a str claiming 4 GiB
    with pytest.raises(ValueError, match="too large"):
        next(u)
    deep = Unpacker()
    deep.feed(b"\x91" * 100 + b"\x00")
    with pytest.raises(ValueError, match="deep"):
        next(deep)


@pytest.fixture
def forward_receiver() -> Iterator[tuple[int, list[Any]]]:
    """A fluentd forward-protocol receiver (Message mode) on 127.0.0.1, in a thread."""
    srv = socket.create_server(("127.0.0.1", 0))
    events: list[Any] = []

    def serve() -> None:
        c, _ = srv.accept()
        u = Unpacker()
        with c:
            while chunk := c.recv(65536):
                u.feed(chunk)
                events.extend(u)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], events
    srv.close()
    t.join(5)


def test_fluentd_events(forward_receiver: tuple[int, list[Any]], tmp_path: Path) -> None:
    port, events = forward_receiver
    w = drivers.open_writer("fluentd", str(tmp_path / "c-json.log"),
                            {"fluentd-address": f"127.0.0.1:{port}", "tag": "docker.{{.Name}}",
                             drivers.CONTEXT_KEY: CTX_OPT})
    assert w is not None
    feed(w, "stdout", b"one\n\x1b[2Jtwo\nno newline")
    w.close()
    for _ in range(100):
        if len(events) == 3:
            break
        threading.Event().wait(0.05)
    assert events[0] == ["docker.web", T0 // 10**9, {"container_id": CID,
                                                      "container_name": "/web",
                                                      "source": "stdout", "log": "one"}]
    assert events[1][2]["log"] == "\x1b[2Jtwo"
    assert events[2][2] == {"container_id": CID, "container_name": "/web", "source": "stdout",
                            "log": "no newline", "partial_message": "true"}
    # dual logging: the cache holds the same lines, readable as `docker logs` reads them
    assert [e.log for e in local.scan(str(tmp_path / "container-cached.log"))] == [
        b"one\n", b"\x1b[2Jtwo\n", b"no newline"]


def test_fluentd_subsecond_event_time() -> None:
    ev = fluentd.event("t", T0, {"log": "x"}, True)
    u = Unpacker()
    u.feed(ev)
    t = next(u)[1]
    assert t == ExtType(0, struct.pack(">II", T0 // 10**9, T0 % 10**9))


@pytest.mark.parametrize(("opts", "status", "message"), [
    ({"x": "1"}, 400, "unknown log opt 'x' for fluentd log driver"),
    ({"fluentd-address": "udp://a:1"}, 400,
     "invalid fluentd-address udp://a:1: unsupported scheme: 'udp'"),
    ({"fluentd-address": "unix://"}, 400, "invalid fluentd-address unix://: path is empty"),
    ({"fluentd-async": "true"}, 501, None),
    ({"fluentd-buffer-limit": "10"}, 501, None),
])
def test_fluentd_refusals(opts: dict[str, str], status: int, message: str | None) -> None:
    got = refusal(check_log_config, {"Type": "fluentd", "Config": opts})
    assert got[0] == status
    if message:
        assert got[1] == message


# -- dual logging, defaults -------------------------------------------------------------

def test_read_source_dual_logging(tmp_path: Path) -> None:
    jp = str(tmp_path / "c-json.log")
    assert drivers.read_source("json-file", {}, jp) == (jp, "json-file")
    assert drivers.read_source("local", {}, jp) == (str(tmp_path / "local-logs/container.log"),
                                                   "local")
    for d in ("syslog", "gelf", "fluentd"):
        assert drivers.read_source(d, {}, jp) == (str(tmp_path / "container-cached.log"),
                                                 "local")
        assert drivers.read_source(d, {"cache-disabled": "true"}, jp) is None
    assert drivers.read_source("none", {}, jp) is None


def test_cache_options_applied(tmp_path: Path) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    addr = f"udp://127.0.0.1:{srv.getsockname()[1]}"
    w = drivers.open_writer("gelf", str(tmp_path / "c-json.log"), {
        "gelf-address": addr, "cache-max-size": "1k", "cache-max-file": "2",
        "cache-compress": "false", drivers.CONTEXT_KEY: CTX_OPT})
    assert isinstance(w, drivers.Tee)
    for i in range(100):
        w.write("stdout", f"cached-{i:03d}\n".encode(), T0 + i)
    w.close()
    srv.close()
    files = sorted(n for n in os.listdir(tmp_path) if n.startswith("container-cached"))
    assert files == ["container-cached.log", "container-cached.log.1"]  # max-file 2, plain
    assert os.path.getsize(tmp_path / "container-cached.log.1") <= 1024
    w2 = drivers.open_writer("gelf", str(tmp_path / "d" / "c-json.log"), {
        "gelf-address": addr, "cache-disabled": "true", drivers.CONTEXT_KEY: CTX_OPT})
    assert isinstance(w2, gelf.GelfWriter)
    w2.close()
    assert not (tmp_path / "d" / "container-cached.log").exists()


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_cache_options_refused_where_no_cache(driver: str) -> None:
    assert refusal(check_log_config, {"Type": driver, "Config": {"cache-disabled": "true"}})[
        0] == 501


def test_daemon_defaults_merge_as_moby() -> None:
    opts = {"max-size": "1m", "max-file": "3"}
    assert check_log_config({}, "local", opts) == {"Type": "local", "Config": opts}
    assert check_log_config({"Config": {"max-file": "2"}}, "local", opts) == {
        "Type": "local", "Config": {"max-size": "1m", "max-file": "2"}}
    # another driver named: the daemon's options are not for it
    assert check_log_config({"Type": "json-file"}, "local", opts) == {"Type": "json-file",
                                                                      "Config": {}}
    assert check_log_config({"Type": "none"}, "local", opts)["Type"] == "none"


@pytest.mark.parametrize(("driver", "opts"), [("nosuch", {}), ("json-file", {"x": "1"}),
                                              ("journald", {}), ("local", {"max-file": "0"})])
def test_bad_daemon_default_refused(driver: str, opts: dict[str, str]) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="failed to set log opts"):
        check_daemon_default(driver, opts)


def test_context_key_cannot_be_set_by_a_user() -> None:
    want = f"unknown log opt '{drivers.CONTEXT_KEY}' for syslog log driver"
    assert refusal(check_log_config, {"Type": "syslog", "Config": {
        drivers.CONTEXT_KEY: "{}"}}) == (400, want)


# -- attributes (labels / env / json-file tag) ----------------------------------------

def test_attributes_pick_named_labels_and_env() -> None:
    opts = {"labels": "team,missing", "env": "STAGE,NOPE"}
    assert drivers.attributes(opts, {"team": "a", "other": "b"}, ["STAGE=prod=1", "X=y", "BARE"]
                              ) == {"team": "a", "STAGE": "prod=1"}
    assert drivers.attributes({}, {"team": "a"}, ["STAGE=x"]) == {}


def test_json_file_attrs_and_tag(tmp_path: Path) -> None:
    ctx = json.dumps({**CTX, "attrs": {"team": "a"}})
    w = drivers.open_writer("json-file", str(tmp_path / "c-json.log"),
                            {"tag": "{{.Name}}", "labels": "team", drivers.CONTEXT_KEY: ctx})
    assert w is not None
    w.write("stdout", b"hi\n", 1_700_000_000_000_000_000)
    w.close()
    line = (tmp_path / "c-json.log").read_bytes()
    assert line == (b'{"log":"hi\\n","stream":"stdout","attrs":{"team":"a","tag":"web"},'
                    b'"time":"2023-11-14T22:13:20Z"}\n')
    plain = drivers.open_writer("json-file", str(tmp_path / "d-json.log"), {})
    assert plain is not None
    plain.write("stdout", b"hi\n", 1_700_000_000_000_000_000)
    plain.close()
    assert b"attrs" not in (tmp_path / "d-json.log").read_bytes()


def test_gelf_and_fluentd_carry_attrs(forward_receiver: tuple[int, list[Any]],
                                      tmp_path: Path) -> None:
    port, events = forward_receiver
    ctx = json.dumps({**CTX, "attrs": {"team": "a", "_x": "y"}})
    fw = drivers.open_writer("fluentd", str(tmp_path / "c-json.log"),
                             {"fluentd-address": f"127.0.0.1:{port}", "labels": "team",
                              "cache-disabled": "true", drivers.CONTEXT_KEY: ctx})
    assert fw is not None
    fw.write("stdout", b"one\n", T0)
    fw.close()
    with GelfListener() as g:
        gw = drivers.open_writer("gelf", str(tmp_path / "c-json.log"), {
            "gelf-address": g.address, "labels": "team", "cache-disabled": "true",
            drivers.CONTEXT_KEY: ctx})
        assert gw is not None
        gw.write("stdout", b"two\n", T0)
        gw.close()
        m = g.wait_for(lambda m: m["short_message"] == "two")[0]
    assert m["_team"] == "a" and m["_x"] == "y"
    for _ in range(200):
        if events:
            break
        threading.Event().wait(0.05)
    assert events[0][2]["team"] == "a" and events[0][2]["log"] == "one"


@pytest.mark.parametrize("driver", ["json-file", "gelf", "fluentd"])
def test_regex_attributes_refused(driver: str) -> None:
    opts = {"gelf-address": "udp://127.0.0.1:1"} if driver == "gelf" else {}
    for key in ("labels-regex", "env-regex"):
        assert refusal(check_log_config, {"Type": driver, "Config": {**opts, key: "(a+)+$"}}
                       )[0] == 501
