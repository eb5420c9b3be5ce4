"""Log drivers through the real Docker CLI and docker-py, checked at the receiving end: a real
rsyslogd (Debian's, own config/pid file/sockets), a GELF UDP listener and a fluentd forward
receiver, all on loopback or unix sockets and ended by the fixtures; dual logging and
daemon.json defaults through `docker logs`, `docker inspect` and `docker info`."""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker as docker_py
import pytest

from labkit import errors
from labkit.engine.logs.mpack import Unpacker
from labkit.lab.engine import LabEngine
from labkit.lab.logsinks import GelfListener, Rsyslog
from labkit.measure.peers import docker_cli

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def rsyslog() -> Iterator[Rsyslog]:
    with Rsyslog() as rs:
        yield rs


@pytest.fixture
def gelf_rx() -> Iterator[GelfListener]:
    with GelfListener() as g:
        yield g


class ForwardReceiver:
    """fluentd's forward protocol, Message mode, on 127.0.0.1 (one thread per connection)."""

    def __init__(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.events: list[Any] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._read, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _read(self, c: socket.socket) -> None:
        u = Unpacker()
        c.settimeout(0.2)
        with c:
            while not self.stop.is_set():
                try:
                    chunk = c.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                u.feed(chunk)
                self.events.extend(u)

    def close(self) -> None:
        self.stop.set()
        self.srv.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def forward() -> Iterator[ForwardReceiver]:
    rx = ForwardReceiver()
    yield rx
    rx.close()


def _until(pred: Callable[[], Any], timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("condition not met")
        time.sleep(0.05)


def _inspect(docker: Docker, name: str) -> dict[str, Any]:
    r = docker("inspect", name)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)[0]
    return doc


def test_syslog_to_real_rsyslog_over_unix_socket_then_logs_from_cache(
        docker: Docker, name: str, rsyslog: Rsyslog, engine: LabEngine) -> None:
    r = docker("run", "--name", name, "--log-driver", "syslog",
               "--log-opt", f"syslog-address={rsyslog.unixgram_address}",
               "--log-opt", "syslog-facility=local4", "--log-opt", "tag=lk/{{.Name}}",
               "busybox", "sh", "-c", r"echo out-line; echo err-line >&2; printf '\033[31mansi\n'")
    try:
        assert r.returncode == 0, r.stderr
        out = rsyslog.wait_for("out-line")[0]
        err = rsyslog.wait_for("err-line")[0]
        ansi = rsyslog.wait_for("ansi")[0]
        assert out.startswith("local4.info ") and f"tag=lk/{name}[" in out
        assert err.startswith("local4.err ")
        assert "#033[31mansi" in ansi  # rsyslog escaped the control byte; framing intact
        # dual logging: the network driver cannot be read back, the local cache can
        logs = docker("logs", name)
        assert (logs.returncode, logs.stdout, logs.stderr) == (
            0, b"out-line\n\x1b[31mansi\n", b"err-line\n")
        lc = _inspect(docker, name)["HostConfig"]["LogConfig"]
        assert lc["Type"] == "syslog" and lc["Config"]["syslog-facility"] == "local4"
        assert "lk-context" not in lc["Config"]
        cache = engine.root / "containers" / _inspect(docker, name)["Id"] / "container-cached.log"
        assert os.stat(cache).st_mode & 0o777 == 0o600
    finally:
        docker("rm", "-f", name)


def test_syslog_udp_rfc5424_and_cache_disabled(docker: Docker, name: str,
                                               rsyslog: Rsyslog) -> None:
    r = docker("run", "--name", name, "--log-driver", "syslog",
               "--log-opt", f"syslog-address={rsyslog.udp_address}",
               "--log-opt", "syslog-format=rfc5424micro", "--log-opt", "cache-disabled=true",
               "busybox", "echo", "udp-5424")
    try:
        assert r.returncode == 0, r.stderr
        line = rsyslog.wait_for("udp-5424")[0]
        cid = _inspect(docker, name)["Id"]
        raw = line.split("|raw=", 1)[1]
        assert raw.startswith("<30>1 ") and f" {cid[:12]} " in raw  # tag defaults to {{.ID}}
        assert raw.split()[1].count(".") == 1 and len(raw.split()[1].split(".")[1]) >= 6
        logs = docker("logs", name)
        assert logs.returncode == 1
        assert b"configured logging driver does not support reading" in logs.stderr
    finally:
        docker("rm", "-f", name)


def test_gelf_fields_chunking_and_logs(docker: Docker, name: str,
                                       gelf_rx: GelfListener) -> None:
    r = docker("run", "--name", name, "--log-driver", "gelf",
               "--log-opt", f"gelf-address={gelf_rx.address}",
               "--log-opt", "gelf-compression-type=none", "--log-opt", "tag={{.ImageName}}",
               "busybox", "sh", "-c",
               "echo gelf-hi; echo gelf-err >&2; head -c 6000 /dev/urandom | od -An -tx1 "
               "| tr -d ' \\n'; echo")
    try:
        assert r.returncode == 0, r.stderr
        ins = _inspect(docker, name)
        hi = gelf_rx.wait_for(lambda m: m["short_message"] == "gelf-hi")[0]
        assert {k: hi[k] for k in ("version", "level", "_container_id", "_container_name",
                                   "_image_id", "_image_name", "_tag")} == {
            "version": "1.1", "level": 6, "_container_id": ins["Id"], "_container_name": name,
            "_image_id": ins["Image"], "_image_name": "busybox", "_tag": "busybox"}
        assert hi["_command"].startswith("sh -c echo gelf-hi")
        assert hi["_created"] == ins["Created"]
        assert gelf_rx.wait_for(lambda m: m["short_message"] == "gelf-err")[0]["level"] == 3
        big = gelf_rx.wait_for(lambda m: len(m["short_message"]) == 12000)
        assert big and gelf_rx.chunked >= 1  # 12 KB uncompressed: sent as GELF chunks
        logs = docker("logs", "--tail", "2", name)
        assert logs.stdout.endswith(big[0]["short_message"].encode() + b"\n")
    finally:
        docker("rm", "-f", name)


def test_fluentd_forward_receiver(docker: Docker, name: str,
                                  forward: ForwardReceiver) -> None:
    r = docker("run", "--name", name, "--log-driver", "fluentd",
               "--log-opt", f"fluentd-address=127.0.0.1:{forward.port}",
               "--log-opt", "tag=docker.{{.Name}}", "busybox", "sh", "-c",
               "echo fl-out; echo fl-err >&2")
    try:
        assert r.returncode == 0, r.stderr
        cid = _inspect(docker, name)["Id"]
        events = _until(lambda: len(forward.events) >= 2 and forward.events)
        assert [e[0] for e in events] == [f"docker.{name}"] * 2
        assert all(isinstance(e[1], int) and abs(e[1] - time.time()) < 600 for e in events)
        assert sorted((e[2]["source"], e[2]["log"]) for e in events) == [
            ("stderr", "fl-err"), ("stdout", "fl-out")]
        assert {e[2]["container_id"] for e in events} == {cid}
        assert {e[2]["container_name"] for e in events} == {f"/{name}"}
    finally:
        docker("rm", "-f", name)


def test_unreachable_endpoint_fails_the_start(docker: Docker, name: str,
                                              forward: ForwardReceiver) -> None:
    port = forward.port
    forward.close()  # nothing listens there now
    r = docker("run", "--name", name, "--log-driver", "fluentd",
               "--log-opt", f"fluentd-address=127.0.0.1:{port}", "busybox", "true")
    try:
        assert r.returncode != 0
        assert b"failed to initialize logging driver" in r.stderr
        assert _inspect(docker, name)["State"]["Running"] is False
    finally:
        docker("rm", "-f", name)


@pytest.mark.parametrize(("opts", "message"), [
    (["--log-opt", "bogus=1"], b"unknown log opt 'bogus' for syslog log driver"),
    (["--log-opt", 'tag={{printf "%s" .Name}}'], b"is not supported"),
    (["--log-opt", "syslog-address=unix:///nonexistent/lk.sock"],
     b"stat /nonexistent/lk.sock: no such file or directory"),
])
def test_syslog_options_refused_by_name(docker: Docker, opts: list[str],
                                        message: bytes) -> None:
    r = docker("run", "--rm", "--log-driver", "syslog", *opts, "busybox", "true")
    # (the CLI exits 127 for any daemon error saying "no such file or directory", as it
    # would with dockerd's identical message)
    assert r.returncode in (125, 127) and message in r.stderr, r.stderr


def test_none_driver_logs_error(docker: Docker, name: str) -> None:
    r = docker("run", "--name", name, "--log-driver", "none", "busybox", "echo", "x")
    try:
        assert r.returncode == 0 and r.stdout == b"x\n"  # attached output still flows
        logs = docker("logs", name)
        assert logs.returncode == 1
        assert logs.stderr.strip() == (b"Error response from daemon: configured logging driver "
                                       b"does not support reading")
    finally:
        docker("rm", "-f", name)


def test_local_driver_rotation_and_reading(docker: Docker, name: str,
                                          engine: LabEngine) -> None:
    r = docker("run", "--name", name, "--log-driver", "local", "--log-opt", "max-size=2k",
               "--log-opt", "max-file=3", "busybox", "sh", "-c",
               "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done")
    try:
        assert r.returncode == 0, r.stderr
        cid = _inspect(docker, name)["Id"]
        files = sorted(glob.glob(str(engine.root / "containers" / cid / "local-logs" / "*")))
        assert [os.path.basename(f) for f in files] == [
            "container.log", "container.log.1.gz", "container.log.2.gz"]
        assert all(os.stat(f).st_mode & 0o777 == 0o600 for f in files)
        assert docker("logs", "--tail", "2", name).stdout == b"line-298\nline-299\n"
        allv = docker("logs", name).stdout.split()
        assert allv[-1] == b"line-299" and 0 < len(allv) < 300  # the oldest rotated away
        stamped = docker("logs", "-t", "--tail", "1", name).stdout
        assert re.fullmatch(rb"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line-299\n", stamped)
        assert docker("logs", "--until", "2000-01-01T00:00:00Z", name).stdout == b""
        assert docker("logs", "--since", "2000-01-01T00:00:00Z", "--tail", "1",
                      name).stdout == b"line-299\n"
    finally:
        docker("rm", "-f", name)


def test_local_driver_follow(docker: Docker, name: str) -> None:
    r = docker("run", "-d", "--name", name, "--log-driver", "local", "busybox", "sh", "-c",
               "echo first; sleep 1; echo second")
    try:
        assert r.returncode == 0, r.stderr
        f = docker("logs", "-f", name, timeout=30)
        assert f.stdout == b"first\nsecond\n"
    finally:
        docker("rm", "-f", name)


def test_docker_py_log_config_and_none_error(engine: LabEngine, name: str,
                                             gelf_rx: GelfListener) -> None:
    dc = docker_py.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")
    try:
        lc = docker_py.types.LogConfig(type="gelf", config={"gelf-address": gelf_rx.address})
        c = dc.containers.run("busybox", ["echo", "py-gelf"], name=name, log_config=lc,
                              detach=True)
        c.wait()
        gelf_rx.wait_for(lambda m: m["short_message"] == "py-gelf")
        assert c.logs() == b"py-gelf\n"  # dual logging
        c.remove()
        n = dc.containers.run("busybox", ["true"], name=name, detach=True,
                              log_config=docker_py.types.LogConfig(type="none"))
        n.wait()
        with pytest.raises(docker_py.errors.APIError) as exc:
            n.logs()
        assert exc.value.status_code == 501
        assert "configured logging driver does not support reading" in str(exc.value)
    finally:
        try:
            dc.containers.get(name).remove(force=True)
        except docker_py.errors.NotFound:
            pass
        dc.close()


def test_daemon_json_defaults_restart_and_refusal() -> None:
    """daemon.json log-driver/log-opts: shown by `docker info`, applied to containers created
    without --log-driver (inspect shows them), refused at start when invalid."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    eng = LabEngine("lgd", config={"log-driver": "local", "log-opts": {"max-size": "3k",
                                                                        "max-file": "2"}})
    cli = docker_cli()

    def d(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([cli, *args], env=eng.docker_env, capture_output=True,
                              timeout=60, check=False)
    try:
        eng.start()
        assert d("info", "--format", "{{.LoggingDriver}}").stdout == b"local\n"
        assert d("run", "--name", "lk-d1", "busybox", "echo", "dflt").returncode == 0
        lc = json.loads(d("inspect", "-f", "{{json .HostConfig.LogConfig}}", "lk-d1").stdout)
        assert lc == {"Type": "local", "Config": {"max-size": "3k", "max-file": "2"}}
        assert d("logs", "lk-d1").stdout == b"dflt\n"
        lc2 = json.loads(d("create", "--name", "lk-d2", "--log-driver", "json-file",
                           "busybox").stdout and d("inspect", "-f",
                                                   "{{json .HostConfig.LogConfig}}",
                                                   "lk-d2").stdout)
        assert lc2 == {"Type": "json-file", "Config": {}}  # the defaults are local's
        # an invalid default: the daemon refuses to start and says why
        eng.crash()
        eng.set_config({"log-driver": "local", "log-opts": {"max-file": "0"}})
        with pytest.raises(errors.LabkitError) as exc:
            eng.start(timeout=30)
        said = str(exc.value) + "\n".join(getattr(exc.value, "__notes__", []))
        assert "failed to set log opts" in said and "max-file cannot be less than 1" in said
        eng.set_config({"log-driver": "none"})
        eng.start()
        assert d("info", "--format", "{{.LoggingDriver}}").stdout == b"none\n"
        assert d("run", "--name", "lk-d3", "busybox", "echo", "x").returncode == 0
        assert b"does not support reading" in d("logs", "lk-d3").stderr
        assert d("logs", "lk-d1").stdout == b"dflt\n"  # created before: keeps its driver
    finally:
        eng.stop()


def test_log_file_is_0600_even_when_read_before_start(docker: Docker, name: str,
                                                      engine: LabEngine) -> None:
    """`docker logs` on a created container makes its (empty) json-file: 0600 like the
    writer's own, since what a container prints may be secret."""
    r = docker("create", "--name", name, "busybox", "echo", "secret")
    try:
        assert r.returncode == 0, r.stderr
        cid = r.stdout.decode().strip()
        assert docker("logs", name).returncode == 0
        assert docker("start", "-a", name).stdout == b"secret\n"
        log = engine.root / "containers" / cid / f"{cid}-json.log"
        assert os.stat(log).st_mode & 0o777 == 0o600
    finally:
        docker("rm", "-f", name)


def test_network_driver_survives_daemon_restart(rsyslog: Rsyslog) -> None:
    """The shim holds the syslog socket and the cache file: SIGKILL of daemon and supervisor
    loses no line, at the receiver or in `docker logs`."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    eng = LabEngine("lgr")
    cli = docker_cli()

    def d(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([cli, *args], env=eng.docker_env, capture_output=True,
                              timeout=60, check=False)
    try:
        eng.start()
        r = d("run", "-d", "--name", "lk-r1", "--log-driver", "syslog", "--log-opt",
              f"syslog-address={rsyslog.udp_address}", "--log-opt", "tag=lkr", "busybox", "sh",
              "-c", "i=0; while [ $i -lt 40 ]; do echo n=$i; i=$((i+1)); sleep 0.1; done")
        assert r.returncode == 0, r.stderr
        rsyslog.wait_for("n=3")
        eng.crash()
        time.sleep(1)
        eng.start()
        assert d("wait", "lk-r1").stdout == b"0\n"
        rsyslog.wait_for("n=39")
        got = [int(ln.rsplit("n=", 1)[1]) for ln in rsyslog.lines() if "tag=lkr[" in ln]
        assert got == list(range(40))
        assert d("logs", "lk-r1").stdout == b"".join(b"n=%d\n" % i for i in range(40))
    finally:
        eng.stop()


def test_labels_env_and_tag_attributes(docker: Docker, name: str, engine: LabEngine,
                                       gelf_rx: GelfListener) -> None:
    """--log-opt labels/env/tag reach json-file's "attrs" and gelf's additional fields."""
    r = docker("run", "--name", name, "--label", "team=blue", "-e", "STAGE=prod",
               "--log-opt", "labels=team", "--log-opt", "env=STAGE,UNSET",
               "--log-opt", "tag={{.Name}}", "busybox", "echo", "attr")
    g = name + "-g"
    try:
        assert r.returncode == 0, r.stderr
        cid = _inspect(docker, name)["Id"]
        rec = json.loads((engine.root / "containers" / cid / f"{cid}-json.log").read_text())
        assert rec["attrs"] == {"team": "blue", "STAGE": "prod", "tag": name}
        assert docker("logs", name).stdout == b"attr\n"
        assert docker("logs", "--details", name).stdout == (
            f"STAGE=prod,tag={name},team=blue attr\n".encode())
        r = docker("run", "--name", g, "--label", "team=red", "--log-driver", "gelf",
                   "--log-opt", f"gelf-address={gelf_rx.address}", "--log-opt", "labels=team",
                   "busybox", "echo", "gattr")
        assert r.returncode == 0, r.stderr
        assert gelf_rx.wait_for(lambda m: m["short_message"] == "gattr")[0]["_team"] == "red"
    finally:
        docker("rm", "-f", name, g)
