"""process.args[0] lookup and its Docker-style errors; signal names; the CLI parser."""

from __future__ import annotations

import pickle
import signal
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.runtime import cli, process
from labkit.engine.runtime.kill import parse_signal
from labkit.engine.runtime.run import exit_code


def exe(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_lookup_uses_path_from_process_env(tmp_path: Path) -> None:
    exe(tmp_path / "b/tool")
    exe(tmp_path / "a/tool", 0o644)  # not executable: skipped, later dir wins
    env = [f"PATH={tmp_path}/a:{tmp_path}/b", "HOME=/"]
    assert process.lookup("tool", env, "/") == f"{tmp_path}/b/tool"


def test_lookup_not_found_is_127_with_dockers_words(tmp_path: Path) -> None:
    with pytest.raises(process.ExecutableNotFoundError) as ei:
        process.lookup("foo", [f"PATH={tmp_path}"], "/")
    assert str(ei.value) == 'exec: "foo": executable file not found in $PATH'
    assert ei.value.exit_code == 127
    again = pickle.loads(pickle.dumps(ei.value))  # crosses the init -> runtime pipe
    assert str(again) == str(ei.value) and type(again) is type(ei.value)
    assert isinstance(again, errors.NotFoundError)


def test_lookup_paths_and_permissions(tmp_path: Path) -> None:
    exe(tmp_path / "noexec", 0o644)
    with pytest.raises(process.ExecutablePermissionError) as ei:
        process.lookup(str(tmp_path / "noexec"), [], "/")
    assert ei.value.exit_code == 126
    with pytest.raises(process.ExecutableNotFoundError, match="no such file"):
        process.lookup("./missing", [], str(tmp_path))
    exe(tmp_path / "rel")
    assert process.lookup("./rel", [], str(tmp_path)) == f"{tmp_path}/./rel"


@pytest.mark.parametrize("text, num", [("9", 9), ("KILL", 9), ("SIGKILL", 9), ("term", 15),
                                       ("SIGUSR1", signal.SIGUSR1)])
def test_parse_signal(text: str, num: int) -> None:
    assert parse_signal(text) == num


@pytest.mark.parametrize("text", ["0", "999", "NOPE", "SIG", "-9", "9x"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        parse_signal(text)


def test_exit_code_from_wait_status() -> None:
    assert exit_code(3 << 8) == 3
    assert exit_code(9) == 137       # killed by SIGKILL
    assert exit_code(15) == 143


def test_cli_parse_options_anywhere() -> None:
    cmd, opts, args = cli.parse(["--root", "/r", "run", "-d", "--bundle=/b", "lk-1"])
    assert (cmd, args) == ("run", ["lk-1"])
    assert opts == {"root": "/r", "detach": True, "bundle": "/b"}
    assert cli.parse(["kill", "lk-1", "9"])[2] == ["lk-1", "9"]
    with pytest.raises(cli.UsageError):
        cli.parse(["run", "--bogus", "x"])
    with pytest.raises(cli.UsageError):
        cli.parse(["create", "--bundle"])


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rc = cli.main(["--root", str(tmp_path), "state", "lk-none"])
    assert rc == 1
    assert "labkit-runtime: no such container: lk-none" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["--root", str(tmp_path), "list", "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["spec"]) == 0 and (tmp_path / "config.json").exists()
    assert cli.main(["spec"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_cli_exec_command_keeps_its_own_options() -> None:
    cmd, opts, args = cli.parse(["exec", "-t", "-e", "A=1", "--env=B=2", "lk-1", "ls", "-l", "--", "-x"])
    assert cmd == "exec" and args == ["lk-1", "ls", "-l", "--", "-x"]
    assert opts == {"tty": True, "env": ["A=1", "B=2"]}


def test_exec_process_overrides() -> None:
    from labkit.engine.runtime.exec import build_process
    from labkit.engine.runtime.spec import default_config

    cfg = default_config()
    p = build_process(cfg, ["ls", "-l"], cwd="/tmp", env=["X=1"], user="7:8", tty=True)
    assert p["args"] == ["ls", "-l"] and p["cwd"] == "/tmp" and p["terminal"] is True
    assert p["env"][-1] == "X=1" and p["env"][0].startswith("PATH=")
    assert p["user"]["uid"] == 7 and p["user"]["gid"] == 8
    assert p["capabilities"] == cfg["process"]["capabilities"]
    with pytest.raises(errors.InvalidArgumentError, match="--user"):
        build_process(cfg, ["ls"], user="root")
    with pytest.raises(errors.InvalidArgumentError, match="no command"):
        build_process(cfg, [])
