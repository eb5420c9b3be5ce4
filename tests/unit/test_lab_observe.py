"""labkit.lab.observe and notebook 10's check, without containers: the check's hints, the
plots' inputs."""

from __future__ import annotations

import pytest

from labkit.lab import exercises, observe
from labkit.probes import netio, runqlat


@pytest.fixture
def obs(monkeypatch: pytest.MonkeyPatch) -> observe.Observatory:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)
    seen = {"ls /; /bin/date; sleep 0": (3, ["/bin/sh", "/bin/date", "/proc/self/exe"]),
            "ls /": (1, ["/bin/sh"])}
    monkeypatch.setattr(observe, "count_execs", lambda o, c, s: seen[s])
    return observe.Observatory.__new__(observe.Observatory)


def test_count_execs_passes_a_right_prediction(obs: observe.Observatory) -> None:
    ns = {"obs": obs, "exec_script": "ls /; /bin/date; sleep 0", "predicted_execs": 3}
    assert exercises.check("10.count_execs", ns).passed


def test_count_execs_hints_name_what_is_wrong(obs: observe.Observatory) -> None:
    ns = {"obs": obs, "exec_script": "ls /; /bin/date; sleep 0", "predicted_execs": 4}
    r = exercises.check("10.count_execs", ns)
    assert not r.passed and "saw 3" in r.message and "/bin/date" in r.message
    r = exercises.check("10.count_execs", {**ns, "exec_script": "ls /", "predicted_execs": 1})
    assert not r.passed and "at least 3" in r.message
    r = exercises.check("10.count_execs", {**ns, "predicted_execs": "3"})
    assert not r.passed and "whole number" in r.message
    r = exercises.check("10.count_execs", {"obs": obs, "predicted_execs": 3})
    assert not r.passed and "exec_script" in r.message
    r = exercises.check("10.count_execs", {})
    assert not r.passed and "Observatory" in r.message


def test_plots_take_probe_rows() -> None:
    import matplotlib

    matplotlib.use("Agg")
    rows = [runqlat.buckets_to_row("lk-one", 1, {3: 4, 5: 1}, 5, 5000),
            runqlat.buckets_to_row("lk-two", 2, {2: 2}, 2, 100)]
    ax = observe.plot_runqlat(rows)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "16"]
    net = [netio.NetRow("lk-one", "device", "lkv1", "rx", "ipv4", 23, 2254)]
    ax = observe.plot_net(net)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lk-one"]
