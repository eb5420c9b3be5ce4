"""lab.exec_chain: the chain of one docker run, from fork/exec/exit events (synthetic here)."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.lab.exec_chain import exec_chain
from labkit.probes.nscount import Options, kinds, render
from labkit.probes.proctree import Event

ENGINE = {10: ("daemon", 1), 11: ("supervisor", 10), 12: ("shim template", 11)}
ME = 500


def ev(ms: float, kind: str, pid: int, child: int = 0, comm: str = "python",
       filename: str = "") -> Event:
    return Event(ts_ns=int(ms * 1e6) + 10**9, kind=kind, pid=pid, child=child, comm=comm,
                 filename=filename)


RUN = [
    ev(0.0, "fork", ME, 501), ev(0.1, "exec", 501, comm="docker", filename="/usr/bin/docker"),
    ev(1.0, "fork", 900, 901, comm="dockerd"),                      # another engine's noise
    ev(1.5, "exec", 901, comm="true", filename="/bin/true"),
    ev(2.0, "fork", 12, 20), ev(2.1, "fork", 20, 21), ev(2.2, "exit", 20),
    ev(3.0, "fork", 21, 22), ev(3.5, "fork", 22, 23), ev(3.6, "fork", 23, 24),
    ev(3.7, "exit", 23), ev(4.0, "exit", 22),
    ev(5.0, "exec", 24, comm="true", filename="/bin/true"), ev(5.5, "exit", 24, comm="true"),
    ev(6.0, "exit", 501, comm="docker"),
]


def test_the_chain_reaches_the_engine_and_names_each_hop() -> None:
    hops = exec_chain(RUN, ENGINE, ME)
    assert [(h.role, h.pid) for h in hops] == [
        ("client", 501), ("daemon", 10), ("supervisor", 11), ("shim template", 12),
        ("shim (setsid fork)", 20), ("shim", 21), ("runtime create", 22),
        ("runtime intermediate", 23), ("container", 24)]
    c = hops[-1]
    assert c.started == "exec /bin/true" and c.start_ms == pytest.approx(3.6 - 0.1)
    assert c.exec_ms == pytest.approx(5.0 - 0.1) and c.exit_ms == pytest.approx(5.5 - 0.1)
    assert hops[1].started == "already running" and hops[1].start_ms is None


def test_an_unknown_layout_is_numbered_not_misnamed() -> None:
    short = [e for e in RUN if not (e.pid == 23 or e.child in (23, 24))] + [
        ev(3.6, "fork", 22, 24), ev(5.0, "exec", 24, comm="true", filename="/bin/true")]
    roles = [h.role for h in exec_chain(sorted(short, key=lambda e: e.ts_ns), ENGINE, ME)]
    assert roles[4:] == ["forked 1", "forked 2", "forked 3", "container"]


def test_missing_pieces_are_named() -> None:
    with pytest.raises(errors.NotFoundError, match="docker CLI"):
        exec_chain(RUN[2:], ENGINE, ME)
    with pytest.raises(errors.NotFoundError, match="/bin/true"):
        exec_chain([e for e in RUN if e.pid != 24], ENGINE, ME)


def test_nscount_decodes_clone_flags() -> None:
    assert kinds(0x6C020000) == ("pid", "net", "ipc", "uts", "mnt")
    assert kinds(0x04000000) == ("uts",) and kinds(0x01200011) == ()
    assert "sys_enter_clone3" in render(Options())
