"""The labkit command: dispatch, argument parsing, one-line typed errors (no root)."""

from __future__ import annotations

import json
import sys
import types

import pytest

import labkit
from labkit import errors
from labkit.cli import bench, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"labkit {labkit.__version__}"


def test_help_lists_commands_without_importing_them(capsys: pytest.CaptureFixture[str]) -> None:
    for mod in ("labkit.cli.doctor", "labkit.cli.bench"):
        sys.modules.pop(mod, None)
    with pytest.raises(SystemExit):
        main.main(["--help"])
    out = capsys.readouterr().out
    assert "doctor" in out and "bench" in out
    assert "labkit.cli.doctor" not in sys.modules and "labkit.cli.bench" not in sys.modules


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main.main(["frobnicate"])
    assert info.value.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_split_finds_the_command_word() -> None:
    assert main.split(["doctor", "--json"]) == ("doctor", ["--json"])
    assert main.split(["--version"]) == (None, ["--version"])


def test_bench_runtime_arguments() -> None:
    args = bench.parser().parse_args(["runtime", "-n", "7", "--peers", "runc, crun,"])
    assert (args.bench, args.runs, args.warmup) == ("runtime", 7, 3)
    assert bench.peers(args.peers) == ["runc", "crun"]
    assert bench.peers("") == []


@pytest.mark.parametrize("argv", [["runtime", "-n", "0"], ["runtime", "-n", "x"],
                                  ["runtime", "--warmup", "-1"], []])
def test_bench_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench.parser().parse_args(argv)
    assert info.value.code == 2


def test_doctor_json_no_live(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["doctor", "--json", "--no-live"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"kernel", "namespaces", "kprobes", "cgroup mode"} <= names


def test_labkit_error_is_one_line_with_hint(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake = types.ModuleType("labkit_test_fake_cmd")

    def run(argv: list[str], prog: str) -> int:
        raise errors.UnsupportedError("kprobes", "kernel without CONFIG_KPROBES",
                                      hint="use the VM: labkit vm")

    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "labkit_test_fake_cmd", fake)
    monkeypatch.setitem(main.COMMANDS, "fake", ("labkit_test_fake_cmd", "a test command"))
    assert main.main(["fake"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["labkit: error: kprobes is not supported here: kernel without CONFIG_KPROBES",
                   "hint: use the VM: labkit vm"]


def test_add_arguments_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("labkit_test_fake_cmd2")
    seen: list[str] = []
    fake.add_arguments = lambda p: p.add_argument("--name")  # type: ignore[attr-defined]
    fake.run_command = lambda a: seen.append(a.name) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "labkit_test_fake_cmd2", fake)
    monkeypatch.setitem(main.COMMANDS, "fake2", ("labkit_test_fake_cmd2", "another"))
    assert main.main(["fake2", "--name", "x"]) == 0
    assert seen == ["x"]


def test_missing_command_module_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(main.COMMANDS, "ghost", ("labkit.cli.lk_no_such_module", "missing"))
    assert main.main(["ghost"]) == 1
    assert capsys.readouterr().err.startswith("labkit: error: labkit ghost")
