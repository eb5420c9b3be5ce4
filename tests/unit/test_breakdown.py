"""labkit.measure.breakdown: a run's processes put in DESIGN's rooms from fork/exec/exit."""

from __future__ import annotations

from labkit.measure.breakdown import PHASES, RunBreakdown, attribute, summarize
from labkit.probes.proctree import Event

MS = 1_000_000
DAEMON, SUP, TEMPLATE, CLI = 100, 200, 201, 300


def _run() -> list[Event]:
    """One `docker run --rm`: the CLI execs, the template double-forks a shim, the shim forks
    the runtime's create, which forks init, which execs /bin/true."""
    return [
        Event(0 * MS, "exec", CLI, filename="/usr/bin/docker", cpu_ns=2 * MS),
        Event(1 * MS, "fork", CLI, child=301),                    # a CLI thread
        Event(10 * MS, "fork", TEMPLATE, child=400),              # setsid child
        Event(11 * MS, "fork", 400, child=401),                   # the shim
        Event(11 * MS, "exit", 400),
        Event(12 * MS, "fork", 401, child=402),                   # runtime create (in-process)
        Event(13 * MS, "fork", 402, child=403),                   # the container's init
        Event(20 * MS, "exec", 403, filename="/bin/true", cpu_ns=4 * MS),
        Event(21 * MS, "fork", 403, child=404),                   # the container's own child
        Event(22 * MS, "exit", 404),
        Event(23 * MS, "exit", 403),
        Event(24 * MS, "exit", 402),
        Event(30 * MS, "exit", 401),
        Event(35 * MS, "exit", CLI),
        Event(36 * MS, "fork", 999, child=1000),                  # someone else's: ignored
    ]


def test_rooms_cpu_and_phases() -> None:
    before = {DAEMON: 50 * MS, SUP: 70 * MS, TEMPLATE: 5 * MS, 999: 1}
    after = {DAEMON: 58 * MS, SUP: 73 * MS, TEMPLATE: 6 * MS, CLI: 20 * MS, 400: 1 * MS,
             401: 3 * MS, 402: 6 * MS, 403: 1 * MS, 404: 1 * MS, 999: 9 * MS, 1000: 9 * MS}
    b = attribute(_run(), CLI, {DAEMON: "daemon", SUP: "supervisor", TEMPLATE: "template"},
                  before, after)
    assert b.cpu_ms == {"docker CLI": 20.0, "daemon": 8.0, "supervisor": 4.0, "shim": 4.0,
                        "runtime": 6.0 + 4.0, "container": 2.0}
    assert b.phase_ms == dict(zip(PHASES, (10.0, 10.0, 3.0, 12.0), strict=True))
    assert b.wall_ms == 35.0


def test_missing_marks_give_none_not_zero() -> None:
    b = attribute([Event(0, "exec", CLI, filename="/usr/bin/docker")], CLI, {}, {}, {})
    assert set(b.phase_ms.values()) == {None} and b.wall_ms == 0.0


def test_summary_is_medians_and_labkit_share() -> None:
    runs = [RunBreakdown({"daemon": d, "supervisor": 1.0, "shim": 1.0, "runtime": 1.0},
                         dict.fromkeys(PHASES, 2.0), 10.0) for d in (1.0, 5.0, 3.0)]
    s = summarize(runs)
    assert s["cpu_ms"]["daemon"] == 3.0 and s["cpu_ms"]["labkit"] == 6.0
    assert s["cpu_ms"]["container"] is None
    assert s["wall_ms"]["run"] == 10.0
