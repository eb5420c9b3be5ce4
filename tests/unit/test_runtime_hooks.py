"""labkit.engine.runtime.hooks without a container: argv, env, stdin, exit status, timeout."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from labkit.engine.runtime import hooks


def test_hook_gets_argv0_env_and_state_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook = {"path": "/bin/sh", "args": ["lk-argv0", "-c", f'echo "$0 $LK $(cat)" > {out}', ],
            "env": ["LK=yes"]}
    hooks.run_one(hook, "hooks.poststop[0]", b'{"id": "c1"}')
    assert out.read_text() == 'lk-argv0 yes {"id": "c1"}\n'


def test_failure_names_the_hook_status_and_output() -> None:
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "echo why >&2; exit 9"]}
    with pytest.raises(hooks.HookError, match=r"hooks.prestart\[0\] \(/bin/sh\) failed: exit status 9: why"):
        hooks.run_one(hook, "hooks.prestart[0]", b"{}")
    with pytest.raises(hooks.HookError, match=r"\(/no/such\) could not run: .*No such file"):
        hooks.run_phase({"prestart": [{"path": "/no/such"}]}, "prestart", b"{}")


def test_timeout_kills_the_hook(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 1000"],
            "timeout": 1}
    with pytest.raises(hooks.HookError, match="killed after its timeout of 1s"):
        hooks.run_one(hook, "hooks.createRuntime[0]", b"{}")
    assert not Path(f"/proc/{pidfile.read_text().strip()}").exists()


def test_poststop_failures_warn_and_the_rest_still_run(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    phase = {"poststop": [{"path": "/bin/false"},
                          {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran > {out}"]}]}
    hooks.run_phase(phase, "poststop", b"{}")
    assert out.read_text() == "ran\n"
    assert "warning: hooks.poststop[0] (/bin/false) failed: exit status 1" in capsys.readouterr().err
    with pytest.raises(hooks.HookError):
        hooks.run_phase({"createRuntime": phase["poststop"]}, "createRuntime", b"{}")


def test_hook_starts_with_default_signals(tmp_path: Path) -> None:
    # Python ignores SIGPIPE (and so does the runtime): a hook must not inherit that.
    out = tmp_path / "out"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"grep -E '^Sig(Ign|Blk)' /proc/self/status > {out}"]}
    hooks.run_one(hook, "hooks.poststop[0]", b"{}")
    fields = dict(line.split(":\t") for line in out.read_text().splitlines())
    # Bit n-1 is signal n (proc(5)).  Only what posix_spawn(3) can name is reset: glibc
    # keeps 32 and 33 for itself, so whatever launched the test may leave them ignored.
    nameable = sum(1 << (sig - 1) for sig in signal.valid_signals() if sig < 65)
    assert int(fields["SigIgn"], 16) & nameable == 0
    assert int(fields["SigBlk"], 16) == 0
