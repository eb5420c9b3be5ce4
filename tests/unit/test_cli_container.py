"""The labkit container verbs against canned responses: Docker's text, flags and exit codes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.daemon import FakeDaemon, js

from labkit import errors
from labkit.cli import _create, _fmt
from labkit.cli.main import main
from labkit.engine.shim.stdcopy import encode as frame


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    sock = tmp_path / "d.sock"
    monkeypatch.setenv("LABKIT_SOCKET", str(sock))
    monkeypatch.setenv("LABKIT_RUN", str(tmp_path / "run"))
    with FakeDaemon(sock) as f:
        f.routes["GET /_ping"] = lambda r: (200, {"Api-Version": "1.41"}, b"OK")
        yield f


def _run_args(argv: list[str]) -> tuple[argparse.Namespace, str, list[str]]:
    p = argparse.ArgumentParser(add_help=False)
    _create.add_create_flags(p)
    p.add_argument("-d", "--detach", action="store_true")
    cut = _create.split_at_positional(argv, _create.RUN_VALUE_OPTS)
    return p.parse_args(argv[:cut]), argv[cut], argv[cut + 1:]


@pytest.mark.parametrize(("argv", "image", "cmd"), [
    (["busybox"], "busybox", []),
    (["-it", "--rm", "busybox", "sh"], "busybox", ["sh"]),
    (["-e", "A=1", "--name", "x", "busybox", "ls", "-l"], "busybox", ["ls", "-l"]),
    (["-eA=1", "-w/tmp", "busybox", "--rm"], "busybox", ["--rm"]),
    (["--restart=always", "-u", "0", "busybox"], "busybox", []),
])
def test_split_at_image(argv: list[str], image: str, cmd: list[str]) -> None:
    _, got_image, got_cmd = _run_args(argv)
    assert (got_image, got_cmd) == (image, cmd)


def test_create_body_flags(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nB=2\n")
    args, image, cmd = _run_args(["-i", "-t", "--rm", "-e", "A=1", "--env-file", str(env_file),
                                  "-w", "/w", "-u", "1:1", "-h", "box", "--memory", "64m",
                                  "--cpus", "0.5", "--pids-limit", "20", "--network", "none",
                                  "--init", "--entrypoint", "/bin/sh", "busybox", "-c", "true"])
    body = _create.create_body(args, image, cmd)
    assert body["Env"] == ["B=2", "A=1"] and body["Cmd"] == ["-c", "true"]
    assert body["Entrypoint"] == ["/bin/sh"] and body["Tty"] and body["OpenStdin"]
    assert (body["WorkingDir"], body["User"], body["Hostname"]) == ("/w", "1:1", "box")
    host = body["HostConfig"]
    assert host["Memory"] == 64 << 20 and host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 20 and host["NetworkMode"] == "none" and host["Init"]
    assert host["AutoRemove"] is True


@pytest.mark.parametrize(("text", "policy"), [
    ("no", {"Name": "", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
])
def test_restart_policies(text: str, policy: dict[str, object]) -> None:
    assert _create.parse_restart(text) == policy


@pytest.mark.parametrize("bad", ["sometimes", "on-failure:x", "always:2"])
def test_bad_restart_policy_names_the_flag(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="--restart"):
        _create.parse_restart(bad)


@pytest.mark.parametrize(("secs", "text"), [
    (0.5, "Less than a second"), (1, "1 second"), (3, "3 seconds"), (61, "About a minute"),
    (300, "5 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days")])
def test_human_duration(secs: float, text: str) -> None:
    assert _fmt.human_duration(secs) == text


def test_ps_table_layout_matches_docker() -> None:
    row = _fmt.ps_row({"Id": "a" * 64, "Names": ["/web"], "Image": "busybox",
                       "Command": "sleep 1000000000", "Created": 100, "Status": "Up 3 seconds",
                       "State": "running"}, now=103)
    out = _fmt.render_rows(_fmt.PS_DEFAULT, [row], _fmt.PS_HEADERS)
    assert out == (
        "CONTAINER ID   IMAGE     COMMAND              CREATED         STATUS         "
        "PORTS     NAMES\n"
        "aaaaaaaaaaaa   busybox   \"sleep 1000000000\"   3 seconds ago   Up 3 seconds             "
        "web\n")


def test_format_subset() -> None:
    row = {"ID": "abc", "Names": "web", "State": "running"}
    assert _fmt.render_rows("{{.ID}} {{ .Names }}", [row]) == "abc web\n"
    assert _fmt.render_rows("{{json .}}", [row]) == json.dumps(row, separators=(",", ":"),
                                                               sort_keys=True) + "\n"
    assert _fmt.render_rows("{{upper .State}}", [row]) == "RUNNING\n"
    assert _fmt.render("{{.State.Status}}", {"State": {"Status": "exited"}}) == "exited"
    with pytest.raises(errors.InvalidArgumentError, match="unsupported template"):
        _fmt.render("{{range .}}", row)
    with pytest.raises(errors.InvalidArgumentError, match="can't evaluate field Nope"):
        _fmt.render("{{.Nope}}", row)


def test_command_cut_then_quoted_like_docker() -> None:
    row = _fmt.ps_row({"Command": "sh -c echo out; echo err >&2"}, now=0)
    assert row["Command"] == '"sh -c echo out; ech…"'
    assert _fmt.ps_row({"Command": "sh -c echo out; echo err >&2"}, trunc=False,
                       now=0)["Command"] == '"sh -c echo out; echo err >&2"'


def test_ps_quiet_and_format(fake: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    fake.routes["GET /containers/json"] = lambda r: js(200, [
        {"Id": "b" * 64, "Names": ["/one"], "Image": "busybox", "Command": "true",
         "Created": 0, "State": "exited", "Status": "Exited (0) 2 seconds ago"}])
    assert main(["ps", "-a", "-q"]) == 0
    assert capsys.readouterr().out == "b" * 12 + "\n"
    assert main(["ps", "-a", "--no-trunc", "--format", "{{.ID}}\\t{{.Status}}"]) == 0
    assert capsys.readouterr().out == "b" * 64 + "\tExited (0) 2 seconds ago\n"
    assert "all=1" in fake.requests[-1]["query"]


def test_run_foreground_order_output_and_status(fake: FakeDaemon,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    fake.routes["POST /containers/create"] = lambda r: js(201, {"Id": "c1", "Warnings": []})
    fake.routes["POST /containers/c1/attach"] = lambda r: (
        101, {"Upgrade": "tcp"}, frame(1, b"hi\n") + frame(2, b"err\n"))
    fake.routes["POST /containers/c1/wait"] = lambda r: js(200, {"StatusCode": 3,
                                                                 "Error": None})
    fake.routes["POST /containers/c1/start"] = lambda r: (204, {}, b"")
    assert main(["run", "--rm", "busybox", "sh", "-c", "echo hi; exit 3"]) == 3
    out = capfd.readouterr()
    assert out.out == "hi\n" and out.err == "err\n"
    order = [(r["method"], r["path"]) for r in fake.requests if r["path"] != "/_ping"]
    assert order == [("POST", "/containers/create"), ("POST", "/containers/c1/attach"),
                     ("POST", "/containers/c1/wait"), ("POST", "/containers/c1/start")]
    wait = next(r for r in fake.requests if r["path"].endswith("/wait"))
    assert "condition=removed" in wait["query"]


def test_run_name_conflict_exits_125(fake: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    msg = 'Conflict. The container name "/dup" is already in use by container "x".'
    fake.routes["POST /containers/create"] = lambda r: js(409, {"message": msg,
                                                                "type": "ConflictError"})
    assert main(["run", "--name", "dup", "busybox", "true"]) == 125
    assert msg in capsys.readouterr().err


def test_run_start_not_found_exits_127(fake: FakeDaemon,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    fake.routes["POST /containers/create"] = lambda r: js(201, {"Id": "c2"})
    fake.routes["POST /containers/c2/attach"] = lambda r: (101, {}, b"")
    fake.routes["POST /containers/c2/wait"] = lambda r: js(200, {"StatusCode": 127})
    fake.routes["POST /containers/c2/start"] = lambda r: js(400, {
        "message": 'exec: "nosuch": executable file not found in $PATH'})
    assert main(["run", "busybox", "nosuch"]) == 127


def test_invalid_restart_exits_125_before_any_request(
        fake: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--restart", "sometimes", "busybox", "true"]) == 125
    assert "--restart" in capsys.readouterr().err
    assert [r for r in fake.requests if r["path"] != "/_ping"] == []


def test_exec_exit_code_from_inspect(fake: FakeDaemon, capfd: pytest.CaptureFixture[str]) -> None:
    fake.routes["POST /containers/c/exec"] = lambda r: js(201, {"Id": "e"})
    fake.routes["POST /exec/e/start"] = lambda r: (101, {}, frame(1, b"x\n"))
    fake.routes["GET /exec/e/json"] = lambda r: js(200, {"ExitCode": 5, "Running": False})
    assert main(["exec", "c", "sh", "-c", "echo x; exit 5"]) == 5
    assert capfd.readouterr().out == "x\n"


def test_stop_unknown_container_prints_daemon_text(
        fake: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    fake.routes["POST /containers/nosuch/stop"] = lambda r: js(
        404, {"message": "No such container: nosuch", "type": "NotFoundError"})
    assert main(["stop", "nosuch"]) == 1
    assert capsys.readouterr().err == "Error response from daemon: No such container: nosuch\n"


def test_logs_demuxes(fake: FakeDaemon, capfd: pytest.CaptureFixture[str]) -> None:
    fake.routes["GET /containers/c/json"] = lambda r: js(200, {"Config": {"Tty": False}})
    fake.routes["GET /containers/c/logs"] = lambda r: (200, {}, [frame(1, b"a\n"),
                                                                 frame(2, b"b\n")])
    assert main(["logs", "c"]) == 0
    out = capfd.readouterr()
    assert (out.out, out.err) == ("a\n", "b\n")


def test_first_request_without_daemon_calls_autostart_once(tmp_path: Path) -> None:
    from labkit.engine.client import DaemonUnavailable
    from labkit.engine.client.transport import Transport

    calls: list[int] = []
    sock = tmp_path / "late.sock"
    holder: dict[str, FakeDaemon] = {}

    def start() -> None:
        calls.append(1)
        holder["d"] = FakeDaemon(sock).__enter__()
        holder["d"].routes["GET /_ping"] = lambda r: (200, {}, b"OK")

    t = Transport(sock, on_unavailable=start)
    try:
        assert t.request("GET", "/_ping").read() == b"OK"
        assert calls == [1]
        holder["d"].__exit__(None, None, None)
        sock.unlink()
        with pytest.raises(DaemonUnavailable):  # never a second start once a request went
            t.request("GET", "/_ping")
        assert calls == [1]
    finally:
        if "d" in holder:
            holder["d"].server.server_close()


def test_client_path_imports_no_heavy_modules() -> None:
    """`labkit run` must stay fast: no aiohttp, grpc, pandas, rich or http.client on its path."""
    import subprocess
    import sys

    code = ("import sys; from labkit.cli import main, container, _run, _stream, _create, _fmt; "
            "from labkit.engine.client import launch, run; print(' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    heavy = {m for m in out if m.split(".")[0] in ("aiohttp", "grpc", "pandas", "rich",
                                                   "numpy", "matplotlib")}
    assert heavy == set() and "http.client" not in out and "asyncio" not in out
