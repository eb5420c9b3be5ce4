"""Row shaping of labkit.measure.csampler / isolation / limits, and notebook 11's checks'
hints: pure functions on hand-made readings, no kernel objects."""

from __future__ import annotations

from typing import Any

import pytest

from labkit import errors
from labkit.cgroups import Resources, Stats
from labkit.lab import exercises
from labkit.measure import csampler, isolation, limits
from labkit.measure.sampler import CgroupSample
from labkit.measure.workloads import LimitedRun

BLKIO = """7:0 Read 4096
7:0 Write 6291456
7:0 Sync 6295552
7:0 Async 0
254:0 Read 100
254:0 Write 200
Total 6295752
"""


def test_parse_blkio_sums_read_and_write_over_devices() -> None:
    assert csampler.parse_blkio(BLKIO) == (4196, 6291656)
    assert csampler.parse_blkio("Total 0\n") == (0, 0)
    assert csampler.parse_blkio(None) is None


def test_parse_io_stat_sums_rbytes_and_wbytes() -> None:
    text = ("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"
            "7:0 rbytes=5 wbytes=7 rios=1 wios=1 dbytes=0 dios=0\n")
    assert csampler.parse_io_stat(text) == (15, 27)
    assert csampler.parse_io_stat(None) is None


def _sample(**kw: Any) -> csampler.ContainerSample:
    base: dict[str, Any] = {
        "t": 1.0, "ps_procs": 2, "ps_threads": 3, "cg_pids_current": 3, "ps_cpu_s": 1.0,
        "cg_cpu_s": 2.0, "ps_cpu_percent": 50.0, "cg_cpu_percent": 55.0, "ps_rss": 10,
        "ps_anon": 8, "cg_memory_current": 9, "cg_anon": 8, "ps_read_bytes": 0,
        "ps_write_bytes": 5, "cg_read_bytes": None, "cg_write_bytes": 5}
    base.update(kw)
    return csampler.ContainerSample(**base)


def test_agreement_rows_have_the_ratio_or_none() -> None:
    rows = {a.quantity: a for a in csampler.agreement(_sample())}
    assert rows["threads vs pids.current"].ratio == 1.0
    assert rows["cpu seconds"].ratio == 0.5
    assert rows["read bytes"].cgroup is None and rows["read bytes"].ratio is None
    assert rows["write bytes"].ratio == 1.0
    assert list(rows) == [q for q, _, _ in csampler._PAIRS]


def test_last_alive_skips_samples_after_the_processes_left() -> None:
    rows = [_sample(t=0.1), _sample(t=0.2, ps_threads=4), _sample(t=0.3, ps_procs=1),
            _sample(t=0.4, ps_procs=0)]
    assert csampler.last_alive(rows).t == 0.2  # the last with both processes
    with pytest.raises(errors.NotFoundError):
        csampler.last_alive([_sample(ps_procs=0)])


def test_host_view_rows_say_whose_value() -> None:
    host = {"cpu": 2, "mem": 100, "node": "vm", "pids": 90}
    inside = {"cpu": 2, "mem": 100, "node": "box", "pids": 1, "aff": 1}
    rows = {r.call: r for r in csampler.host_view_rows(host, inside, {"mem": 64, "aff": 1})}
    assert rows["cpu"].reports == "host" and rows["mem"].reports == "host"
    assert rows["mem"].limit == "64" and rows["cpu"].limit == ""
    assert rows["node"].reports == "container" and rows["pids"].reports == "container"
    assert rows["aff"].reports == "limit" and rows["aff"].host == "None"


def _reading(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "npids": 90, "pid": 4242, "hostname": "vm", "nmounts": 25, "root_mount": 27,
        "ifaces": ["eth0", "lo"], "uid": 0, "uid_map": "0 0 4294967295",
        "shm": [["0", "7"]], "msg": [["0", "9"]], "cgroup": "4:memory:/lk-iso-1\n0::/\n",
        "monotonic": 1000.0, "boottime": 2000.0}
    base.update(kw)
    return base


def _outside(**kw: Any) -> dict[str, Any]:
    out = _reading(points=["/", "/proc"], insider_uid=0)
    out.update(kw)
    return out


OBJS = isolation.SysvObjects(("0", "7"), ("0", "9"))


def test_rows_for_an_insider_that_shares_everything_isolates_nothing() -> None:
    rows = isolation.rows_for("x", "x", _reading(), _outside(), 4242, OBJS, None)
    assert [r.aspect for r in rows] == list(isolation.ASPECTS)
    assert not any(r.isolated for r in rows)


@pytest.mark.parametrize(("aspect", "inside", "outside"), [
    ("processes", {"pid": 1, "npids": 1}, {}),
    ("hostname", {"hostname": "lk-iso-uts"}, {}),
    ("mounts", {"root_mount": 51, "nmounts": 26}, {}),
    ("interfaces", {"ifaces": ["lo"]}, {}),
    ("users", {"uid_map": "0 100000 65536"}, {"insider_uid": 100000}),
    ("ipc", {"shm": [], "msg": []}, {}),
    ("clocks", {"monotonic": 1000.0 + 86400}, {}),
    ("cgroup", {"cgroup": "4:memory:/\n"}, {}),
])
def test_rows_for_marks_exactly_the_aspect_that_differs(
        aspect: str, inside: dict[str, Any], outside: dict[str, Any]) -> None:
    rows = isolation.rows_for("k", "k", _reading(**inside), _outside(**outside), 4242, OBJS, None)
    assert [r.aspect for r in rows if r.isolated] == [aspect]


def test_rows_for_a_mount_seen_outside_is_not_isolated() -> None:
    rows = isolation.rows_for("mnt", "mnt", _reading(root_mount=51), _outside(points=["/", "/tmp/s"]),
                              4242, OBJS, "/tmp/s")
    mounts = next(r for r in rows if r.aspect == "mounts")
    assert not mounts.isolated and "sees its tmpfs" in mounts.outside


def test_cgroup_path_prefers_memory_then_unified() -> None:
    assert isolation._cgroup_path("5:cpu,cpuacct:/a\n4:memory:/b\n0::/c\n") == "/b"
    assert isolation._cgroup_path("0::/c\n") == "/c"


def test_isolation_refuses_an_unknown_kind_before_making_anything() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="bogus"):
        isolation.measure(["bogus"])


def test_promises_cover_every_kind_once() -> None:
    assert set(isolation.PROMISES) == set(isolation.SPECS)
    assert sorted(isolation.PROMISES.values()) == sorted(isolation.ASPECTS)


def _run(samples: list[CgroupSample], before: Stats | None = None) -> LimitedRun:
    return LimitedRun("lk-x", Resources(), ("x",), 0, 1.0, tuple(samples),
                      before or Stats(oom_kills=0, cpu_usage_usec=0), Stats())


def _cs(t: float, cpu: int | None = None, oom: int | None = 0) -> CgroupSample:
    return CgroupSample(t, None, None, None, cpu, None, None, None, None, oom)


def test_cpu_points_difference_the_counter_per_interval() -> None:
    run = _run([_cs(0.0, 0), _cs(0.1, 25_000), _cs(0.2, None), _cs(0.3, 125_000)])
    pts = limits.cpu_points("q", run)
    assert [(p.t, round(p.percent, 6)) for p in pts] == [(0.1, 25.0), (0.3, 50.0)]


def test_oom_time_is_the_first_sample_above_the_count_before() -> None:
    run = _run([_cs(0.1, oom=2), _cs(0.2, oom=2), _cs(0.3, oom=3), _cs(0.4, oom=3)],
               before=Stats(oom_kills=2))
    assert limits.oom_time(run) == 0.3
    assert limits.oom_time(_run([_cs(0.1, oom=0)])) is None


def test_io_points_are_bytes_per_second_from_t0() -> None:
    pts = limits.io_points("w", 10.0, [(10.0, 0), (10.5, 1000), (11.0, 1000)])
    assert [(p.t, p.bytes_per_s) for p in pts] == [(0.5, 2000.0), (1.0, 0.0)]


def test_pids_run_counts() -> None:
    r = limits.PidsRun(3, ("ok", "ok", "EAGAIN", "EAGAIN", "ENOMEM"), 2, 3)
    assert (r.ok, r.eagain) == (2, 2)


def test_limits_refuse_bad_arguments() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="quota_pct"):
        limits.cpu_quota(0.5)
    with pytest.raises(errors.InvalidArgumentError, match="limit"):
        limits.pids_limit(0)
    with pytest.raises(errors.InvalidArgumentError, match="attempts"):
        limits.pids_limit(5, -1)


def test_nb11_checks_hint_before_touching_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)
    r = exercises.check("11.fork_bomb", {})
    assert not r.passed and "bomb_limit" in r.message
    r = exercises.check("11.fork_bomb", {"bomb_limit": 17, "bomb": "lk-x"})
    assert not r.passed and "Cgroup" in r.message
    r = exercises.check("11.quarter_core", {"quota_us": 50_000, "period_us": 100_000})
    assert not r.passed and "50%" in r.message
    r = exercises.check("11.quarter_core", {"quota_us": 500, "period_us": 2000})
    assert not r.passed and "1000" in r.message
    assert exercises.registered("11") == ["11.fork_bomb", "11.quarter_core"]
