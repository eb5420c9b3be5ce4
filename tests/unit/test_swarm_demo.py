"""Notebook 12's helpers that need no swarm: quorum arithmetic, /proc/net/tcp parsing, the
node table, secret masking, the failover plot, and the exercise check's hints (on a fake
lab that records what the check asked of it)."""

from __future__ import annotations

from typing import Any

import pytest

from labkit import errors
from labkit.lab import exercises, swarm_demo
from labkit.measure.bench_swarm import FailoverTrial

# /proc/net/tcp and tcp6 as proc(5) shows them (columns cut after the inode)
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0200D70A:094F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4101 1
   1: 0100007F:094F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4102 1
   2: 0200D70A:094F 0300D70A:B2C4 01 00000000:00000000 00:00000000 00000000     0        0 4103 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0951 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4104 1
   1: 0000000000000000FFFF00000200D70A:0952 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4105 1
"""


@pytest.mark.parametrize(("n", "tolerated"), [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1),
                                               (5, 2), (6, 2), (7, 3)])
def test_tolerated_failures_is_a_minority(n: int, tolerated: int) -> None:
    assert swarm_demo.tolerated_failures(n) == tolerated


def test_tolerated_failures_refuses_a_negative_count() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="negative"):
        swarm_demo.tolerated_failures(-1)


def test_parse_proc_net_tcp_keeps_listeners_only() -> None:
    got = swarm_demo.parse_proc_net_tcp(TCP)
    assert got == [swarm_demo.ListenSocket("10.215.0.2", 2383, 4101),
                   swarm_demo.ListenSocket("127.0.0.1", 2383, 4102)]


def test_parse_proc_net_tcp6_words_are_host_order() -> None:
    got = swarm_demo.parse_proc_net_tcp(TCP6)
    assert got == [swarm_demo.ListenSocket("::", 2385, 4104),
                   swarm_demo.ListenSocket("::ffff:10.215.0.2", 2386, 4105)]


def test_parse_proc_net_tcp_skips_short_lines() -> None:
    assert swarm_demo.parse_proc_net_tcp("header\n 0: garbage\n\n") == []


def _node(host: str, role: str, leader: bool = False, reach: str | None = "reachable",
          state: str = "ready") -> dict[str, Any]:
    n: dict[str, Any] = {"ID": f"{host}-0123456789abcdef", "Description": {"Hostname": host},
                         "Spec": {"Role": role, "Availability": "active"},
                         "Status": {"State": state, "Addr": "10.215.0.9"}}
    if reach is not None:
        n["ManagerStatus"] = {"Reachability": reach, **({"Leader": True} if leader else {})}
    return n


def test_node_rows_show_manager_status_as_docker_node_ls() -> None:
    rows = swarm_demo.node_rows([_node("lk-w1", "worker", reach=None),
                                 _node("lk-m2", "manager", reach="unreachable", state="down"),
                                 _node("lk-m1", "manager", leader=True)])
    assert [r["hostname"] for r in rows] == ["lk-m1", "lk-m2", "lk-w1"]
    assert [r["manager status"] for r in rows] == ["Leader", "Unreachable", ""]
    assert rows[0]["id"] == "lk-m1-012345" and rows[1]["state"] == "down"


def test_mask_secret_keeps_the_prefix_and_four_characters() -> None:
    key = "SWMKEY-1-" + "k" * 43
    assert swarm_demo.mask_secret(key) == "SWMKEY-1-kkkk..."
    assert "k" * 5 not in swarm_demo.mask_secret(key)
    assert swarm_demo.mask_secret("nodash") == "noda..."


def test_plot_failover_draws_both_times_and_the_target() -> None:
    import matplotlib

    matplotlib.use("Agg")
    trials = [FailoverTrial("m1", "m2", 1.5, 1.6), FailoverTrial("m2", "m3", 1.2, 1.1)]
    ax = swarm_demo.plot_failover(trials)
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert heights == [1.1, 1.2, 1.5, 1.6]
    assert any(list(ln.get_ydata()) == [2.0, 2.0] for ln in ax.get_lines())
    assert "kill m1" in ax.get_xticklabels()[0].get_text()


class FakeDemo(swarm_demo.SwarmDemo):
    """A SwarmDemo whose lab is never up: it reports ``managers`` and records survive()."""

    def __init__(self, managers: list[str], survive_error: str | None = None) -> None:
        super().__init__("nbfake", "10.215.0.0/24")
        self.hosts = managers
        self.survived: list[int] = []
        self.survive_error = survive_error

    def managers_settled(self, timeout: float = 60.0) -> list[str]:
        return self.hosts

    def survive(self, failures: int, timeout: float = 60.0) -> dict[str, Any]:
        if self.survive_error:
            raise errors.UnavailableError(self.survive_error)
        self.survived.append(failures)
        return {"killed": ["lk-m1", "lk-m3"][:failures], "write_s": 0.05, "leader": "lk-m2"}


def _check(ns: dict[str, Any]) -> exercises.Result:
    return exercises.check("12.tolerate_one_more", ns)


@pytest.fixture(autouse=True)
def _lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)


def test_check_wants_the_demo_and_a_number() -> None:
    assert "tolerated" in _check({"demo": FakeDemo(["a"] * 5)}).message
    r = _check({"demo": object(), "tolerated": 2})
    assert not r.passed and "SwarmDemo" in r.message
    r = _check({"demo": FakeDemo(["a"] * 5), "tolerated": "2"})
    assert not r.passed and "whole number" in r.message


@pytest.mark.parametrize(("n", "words"), [(3, "no more than with 3"), (4, "even count")])
def test_check_hints_when_the_swarm_tolerates_no_more(n: int, words: str) -> None:
    demo = FakeDemo([f"m{i}" for i in range(n)])
    r = _check({"demo": demo, "tolerated": 2})
    assert not r.passed and words in r.message and demo.survived == []


def test_check_hints_on_a_wrong_count_before_killing_anything() -> None:
    demo = FakeDemo([f"m{i}" for i in range(5)])
    r = _check({"demo": demo, "tolerated": 3})
    assert not r.passed and "tolerate 2" in r.message and demo.survived == []


def test_check_passes_when_the_swarm_survives_the_count() -> None:
    demo = FakeDemo([f"m{i}" for i in range(5)])
    r = _check({"demo": demo, "tolerated": 2})
    assert r.passed and demo.survived == [2] and "quorum 3" in r.message


def test_check_hints_when_the_proof_fails() -> None:
    r = _check({"demo": FakeDemo(["m"] * 5, survive_error="lost quorum"), "tolerated": 2})
    assert not r.passed and "lost quorum" in r.message


def test_nb12_registers_its_exercise() -> None:
    assert exercises.registered("12") == ["12.tolerate_one_more"]
