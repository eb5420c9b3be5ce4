"""labkit.measure.timeline's join and labkit._sys.trace, on synthetic marks and events."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import errors
from labkit._sys import trace
from labkit.measure import timeline as tlm
from labkit.measure.timeline import Mark, join
from labkit.probes import startup
from labkit.probes.startup import Event

CID = "c0ffee" * 10 + "abcd"
MS = 1_000_000


def _runtime_marks(cid: str = CID, skip: tuple[str, ...] = ()) -> list[Mark]:
    seq = [("runtime.create", 10, 100), ("runtime.clone", 14, 101), ("runtime.cgroup", 15, 101),
           ("runtime.ns", 16, 101), ("runtime.mounts", 20, 1), ("runtime.pivot_root", 21, 1),
           ("runtime.ready", 23, 1), ("runtime.exec", 25, 1)]
    return [Mark(t * MS, pid, pid, ph, cid) for ph, t, pid in seq if ph not in skip]


def _events() -> list[Event]:
    return [Event(13 * MS + 500, "clone", 100, 100, enter_ns=13 * MS, ret=101),
            Event(13 * MS + 600, "fork", 100, 100, other=101),
            Event(14 * MS + 800, "cgroup_attach", 101, 101, other=101, text="/lk/x"),
            Event(15 * MS + 900, "unshare", 101, 101, enter_ns=15 * MS, ret=0),
            Event(16 * MS + 100, "fork", 101, 101, other=102),
            Event(19 * MS, "mount", 102, 102, enter_ns=18 * MS, text="/b/rootfs/sys"),
            Event(20 * MS + 500, "pivot_root", 102, 102, enter_ns=20 * MS + 400),
            Event(20 * MS + 700, "mount", 102, 102, enter_ns=20 * MS + 600, text="/proc/bus"),
            Event(25 * MS + 400, "exec", 102, 102, text="/bin/true"),
            Event(26 * MS, "exit", 102, 102)]


def _check_contiguous(tl: tlm.StartTimeline) -> None:
    assert tl.phases
    assert all(a.end_ns == b.start_ns for a, b in zip(tl.phases, tl.phases[1:], strict=False))
    assert all(p.end_ns >= p.start_ns for p in tl.phases)
    assert sum(p.end_ns - p.start_ns for p in tl.phases) == tl.end_ns - tl.start_ns


def test_runtime_join_orders_phases_and_prefers_kernel_points() -> None:
    tl = join("runtime", CID, _runtime_marks(), _events(), client=(5 * MS, 27 * MS))
    _check_contiguous(tl)
    assert [p.name for p in tl.phases] == [name for _, name in tlm.RUNTIME_CHAIN[1:]]
    assert tl.missing == []
    assert tl.total_ms == pytest.approx(22.0)
    cg = tl.phase("cgroup")
    assert cg is not None and cg.source == "ebpf" and cg.end_ns == 14 * MS + 800
    # the mounts before pivot_root end the mounts phase; the later one (/proc/bus) does not
    mounts = tl.phase("mounts")
    assert mounts is not None and mounts.end_ns == 19 * MS
    clone = tl.phase("clone")
    assert clone is not None and clone.start_ns == 13 * MS and clone.source == "mark"
    ex = tl.phase("execve")
    assert ex is not None and ex.start_ns == 25 * MS and ex.end_ns == 25 * MS + 400


def test_without_events_marks_stand_in_and_kernel_only_points_are_named_missing() -> None:
    tl = join("runtime", CID, _runtime_marks(), [], client=(5 * MS, 27 * MS),
              client_source="harness")
    _check_contiguous(tl)
    assert "clone.enter" in tl.missing and "exec" in tl.missing and "exit" in tl.missing
    names = [p.name for p in tl.phases]
    assert "runtime setup + clone (no clone.enter)" in names
    assert names[-1] == "execve + container runs + delete and exit (no exec, exit)"
    cg = tl.phase("cgroup")
    assert cg is not None and cg.source == "mark" and cg.end_ns == 15 * MS
    assert tl.phases[0].name == "interpreter" and tl.phases[-1].source == "harness"


def test_a_missing_mark_merges_its_phase_with_a_label() -> None:
    tl = join("runtime", CID, _runtime_marks(skip=("runtime.ready",)), _events(),
              client=(5 * MS, 27 * MS))
    _check_contiguous(tl)
    assert tl.missing == ["runtime.ready"]
    assert tl.phase("finalize + start handshake (no runtime.ready)") is not None
    assert tl.phase("finalize") is None


def test_a_point_out_of_order_is_dropped_not_reordered() -> None:
    marks = _runtime_marks()
    marks.append(Mark(2 * MS, 5, 5, "runtime.create", "other"))  # another container's
    bad = [m if m.phase != "runtime.ready" else Mark(12 * MS, 1, 1, m.phase, CID) for m in marks]
    tl = join("runtime", CID, bad, _events(), client=(5 * MS, 27 * MS))
    _check_contiguous(tl)
    assert "runtime.ready (out of order)" in tl.missing
    first = tl.phase("interpreter")
    assert first is not None and first.end_ns == 10 * MS  # the other key's mark was ignored


def test_engine_join_pairs_the_keyless_create_mark_and_prefix_keys() -> None:
    d = [("daemon.create.recv", 1, ""), ("daemon.create.sent", 3, CID),
         ("daemon.start.recv", 4, CID[:12]), ("supervisor.create.recv", 5, CID),
         ("supervisor.shim.forked", 7, CID), ("shim.create.begin", 9, CID)]
    later = [("shim.create.end", 24, CID), ("supervisor.start.recv", 24.2, CID),
             ("shim.start.begin", 24.5, CID), ("shim.exit", 26.5, CID)]
    marks = [Mark(int(t * MS), 9, 9, ph, k) for ph, t, k in d + later]
    marks += [m for m in _runtime_marks() if m.phase != "runtime.create"]
    marks.append(Mark(int(3.5 * MS), 9, 9, "daemon.create.recv", ""))  # after the answer: not ours
    tl = join("engine", CID, marks, _events(), client=(0, 30 * MS))
    _check_contiguous(tl)
    assert tl.missing == []
    assert [p.name for p in tl.phases] == [name for _, name in tlm.ENGINE_CHAIN[1:]]
    req = tl.phase("request")
    assert req is not None and req.end_ns == 1 * MS


def test_to_dataframe_and_medians() -> None:
    tls = [join("runtime", CID, _runtime_marks(), _events(), client=(5 * MS, 27 * MS))
           for _ in range(3)]
    df = tlm.to_dataframe(tls)
    assert len(df) == 3 * len(tls[0].phases)
    assert set(df["start"]) == {0, 1, 2}
    assert df.groupby("start")["ms"].sum().round(6).tolist() == [22.0] * 3
    med = tlm.medians(tls)
    assert med["phase"].tolist() == [p.name for p in tls[0].phases]
    assert med["share_%"].sum() == pytest.approx(100.0)


def test_bad_via_is_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="via"):
        join("podman", CID, [])
    with pytest.raises(errors.InvalidArgumentError, match="via"):
        tlm.trace_starts(1, via="kubernetes")


def test_read_marks_skips_torn_lines(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_text("5\t1\t1\truntime.exec\tabc\nnot a record\n3\t1\t1\truntime.ns\tabc\n7\t1\t1")
    assert [m.phase for m in tlm.read_marks(f)] == ["runtime.ns", "runtime.exec"]


# -- labkit._sys.trace --------------------------------------------------------------------

@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    path = tmp_path / "trace"
    monkeypatch.setenv(trace.ENV, str(path))
    trace.reload()
    yield path
    trace.reload()


def test_mark_appends_records_0600(traced: Path) -> None:
    trace.mark("a.b", "k1")
    trace.mark("c", "k2", scope=True)
    trace.mark("d")
    marks = tlm.read_marks(traced)
    assert [(m.phase, m.key, m.pid) for m in marks] == [("a.b", "k1", os.getpid()),
                                                       ("c", "k2", os.getpid()),
                                                       ("d", "k2", os.getpid())]
    assert stat.S_IMODE(traced.stat().st_mode) == 0o600


def test_mark_fd_is_cloexec_and_checked_after_fork(traced: Path) -> None:
    import fcntl

    trace.mark("parent", "k")
    assert fcntl.fcntl(trace._fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    pid = os.fork()
    if pid == 0:
        # the child closes the inherited fd and puts another file on its number: a mark must
        # not write into that file, it opens the trace file anew
        fd = trace._fd
        os.close(fd)
        other = os.open(str(traced) + ".other", os.O_WRONLY | os.O_CREAT, 0o600)
        if other != fd:
            os.dup2(other, fd)
        trace.mark("child", "k")
        os._exit(0)
    os.waitpid(pid, 0)
    assert [m.phase for m in tlm.read_marks(traced)] == ["parent", "child"]
    assert Path(str(traced) + ".other").read_bytes() == b""


def test_mark_refuses_a_symlink_or_a_loose_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "link"
    link.symlink_to(target)
    monkeypatch.setenv(trace.ENV, str(link))
    trace.reload()
    trace.mark("x")
    assert trace.dropped() == 1 and target.read_text() == ""
    loose = tmp_path / "loose"
    loose.write_text("")
    loose.chmod(0o644)
    monkeypatch.setenv(trace.ENV, str(loose))
    trace.reload()
    trace.mark("x")
    assert trace.dropped() == 1 and "0600" in trace.status() and loose.read_text() == ""
    trace.reload()


def test_unset_means_no_file_and_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(trace.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    trace.reload()
    trace.mark("x", "k")
    assert not trace.enabled() and list(tmp_path.iterdir()) == [] and trace._fd == -1
    trace.reload()


def test_disabled_mark_cost_is_printed() -> None:
    # a figure, not an assertion on time: what one disabled mark costs in a fresh interpreter
    code = ("import timeit, os; os.environ.pop('LABKIT_TRACE', None);"
            "from labkit._sys import trace; trace.mark('x');"
            "n=200000; print(timeit.timeit(lambda: trace.mark('x', 'k'), number=n) / n * 1e9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    print(f"disabled mark: {float(out.stdout):.0f} ns per call (incl. the lambda call)")


def test_startup_render_modes() -> None:
    assert "if (0)" in startup.render([1]).replace("TRACE_ALL", "?")
    assert "if (1)" in startup.render(None)
    assert "SETNS_FLAG" not in startup.render(None) and "EXEC_FILENAME_READ" not in startup.render([1])


def test_startup_descendants_of_this_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        got = startup.descendants([os.getpid()])
        assert os.getpid() in got and child.pid in got
    finally:
        child.kill()
        child.wait()


# -- plots and the notebook's check ------------------------------------------------------

def _tls(n: int = 3) -> list[tlm.StartTimeline]:
    return [join("runtime", f"{CID[:-1]}{i}", [Mark(m.ts_ns, m.pid, m.tid, m.phase,
                                                    f"{CID[:-1]}{i}") for m in _runtime_marks()],
                 _events(), client=(5 * MS, 27 * MS)) for i in range(n)]


def test_plots_draw_a_bar_per_phase_and_a_box_per_phase() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from labkit.lab import startup_plots

    tls = _tls()
    ax = startup_plots.plot_waterfall(tls[0])
    assert len(ax.patches) == len(tls[0].phases)
    assert [t.get_text() for t in ax.get_yticklabels()] == [p.name for p in tls[0].phases]
    ax = startup_plots.plot_distribution(tls)
    assert len(ax.get_yticklabels()) == len(tls[0].phases)


def test_nb09_check_passes_the_worked_answer_and_hints_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.lab import exercises

    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)  # hints are returned, not raised

    df_one = tlm.to_dataframe(_tls(1)[0])
    share = float(df_one.loc[df_one["phase"] == "execve", "end_ms"].iloc[0]) / 22.0
    assert exercises.check("09.before_exec_share",
                           {"df_one": df_one, "before_exec_share": share}).passed
    pct = exercises.check("09.before_exec_share",
                          {"df_one": df_one, "before_exec_share": share * 100})
    assert not pct.passed and "percentage" in pct.message
    wrong = exercises.check("09.before_exec_share", {"df_one": df_one, "before_exec_share": 0.1})
    assert not wrong.passed and "execve" in wrong.message
    missing = exercises.check("09.before_exec_share", {"df_one": df_one})
    assert not missing.passed and "before_exec_share" in missing.message
