"""runqlat, netio and oomkill without a kernel: render(), the pure helpers, the fallbacks on
fake /proc and cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit import errors, probes
from labkit._sys import features
from labkit.probes import netio, oomkill, runqlat, target


def Ctr(name: str, cgroup_id: int, path: str) -> target.Target:
    return target.Target(name, name, None, cgroup_id, path)


@pytest.fixture
def formats(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {"pid": "int", "comm": "__data_loc char[]", "total_vm": "unsigned long"}
    monkeypatch.setattr(features, "tracepoint_fields", lambda cat, ev: fields)


def test_runqlat_render_filters_only_with_targets() -> None:
    plain = runqlat.render(runqlat.Options())
    aimed = runqlat.render(runqlat.Options(targets=[Ctr("a", 7, "/x")]))
    for text in (plain, aimed):
        assert "TRACEPOINT_PROBE(sched, sched_wakeup)" in text
        assert "TRACEPOINT_PROBE(sched, sched_wakeup_new)" in text
        assert "FILTER" not in text and "MAX_SLOTS" not in text and "MAX_ENTRIES" not in text
        assert "task_struct" not in text  # no kernel struct reads (nearest headers)
    assert "lk_target_of(&ix);" in aimed and "return ix;" in aimed
    assert "return bpf_get_current_cgroup_id();" in plain and "lk_target_of(&ix);" not in plain
    assert "ATTRIBUTION" not in aimed and "WHO" not in aimed


def test_log2_buckets_and_percentiles() -> None:
    assert [runqlat.bucket_range(s) for s in (0, 1, 2, 5)] == [(0, 0), (0, 1), (2, 3), (16, 31)]
    row = runqlat.buckets_to_row("a", 1, {5: 10, 0: 0, 7: 10}, 20, 20 * 50_000)
    assert row.buckets == ((16, 31, 10), (64, 127, 10)) and row.mean_us == 50.0
    assert row.p50_us == 31.0                 # the end of the lower half
    assert row.p95_us == pytest.approx(64 + 63 * 0.9)
    assert runqlat.percentile((), 0.5) is None
    with pytest.raises(errors.InvalidArgumentError):
        runqlat.percentile(row.buckets, 1.5)


def test_runqlat_procfs_sums_run_delay_over_the_cgroup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cg, proc = tmp_path / "cg", tmp_path / "proc"
    (cg / "sub").mkdir(parents=True)
    (cg / "cgroup.threads").write_text("10\n11\n")
    (cg / "sub" / "cgroup.threads").write_text("12\n")

    def stat(tid: int, delay: int, slices: int) -> None:
        d = proc / str(tid) / "task" / str(tid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "schedstat").write_text(f"999 {delay} {slices}\n")

    for tid in (10, 11, 12):
        stat(tid, 1000, 1)
    monkeypatch.setattr(runqlat, "cgroup_dir", lambda t: cg)
    probe = runqlat.ProcfsRunq([Ctr("a", 5, "/cg")], proc=proc)
    stat(10, 5000, 3)                         # +4 us in 2 slices
    stat(12, 2000, 2)                         # +1 us in 1 slice
    (cg / "cgroup.threads").write_text("10\n11\n13\n")
    stat(13, 3000, 1)                         # new since open: all of it
    [row] = probe.read()
    assert (row.target, row.count, row.sum_ns, row.p50_us) == ("a", 4, 8000, None)
    assert probe.mode == "procfs" and "histogram" in probe.missing
    probe.close()
    with pytest.raises(errors.InvalidStateError):
        probe.read()
    with pytest.raises(errors.InvalidArgumentError):
        runqlat.ProcfsRunq([])


def test_netio_render_reads_data_loc_names_and_adds_entry_probes() -> None:
    text = netio.render(netio.Options(), events=["netif_receive_skb_entry"])
    assert "args->data_loc_name & 0xFFFF" in text
    assert "TRACEPOINT_PROBE(net, netif_receive_skb_entry)" in text
    assert "napi_gro_receive_entry" not in text and "ENTRY_PROBES" not in text
    assert "WHO" not in text and "u64 who = bpf_get_current_cgroup_id();" in text
    aimed = netio.render(netio.Options(targets=[Ctr("a", 3, "/x")]), events=[])
    assert "if (!lk_target_of(&ix)) return 0;" in aimed and "ATTRIBUTION" not in aimed


@pytest.mark.parametrize("bad", ["", "x" * 16, "a/b", " eth0", "eth0 "])
def test_netio_refuses_names_that_are_not_interfaces(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="devices"):
        netio.render(netio.Options(devices={bad: "web"}), events=[])


def test_netio_protocols_views_and_veth_names() -> None:
    assert [netio.proto_name(p) for p in (0x0800, 0x86DD, 0x0806, 0x88CC, 0)] == [
        "ipv4", "ipv6", "arp", "0x88cc", "?"]
    rows = [netio.NetRow("web", "device", "lkv1", "tx", "ipv4", 3, 300),
            netio.NetRow("web", "device", "lkv1", "rx", "arp", 1, 28),
            netio.NetRow("web", "cgroup", "eth0", "tx", "ipv4", 9, 900),
            netio.NetRow(None, "device", "lo", "tx", "ipv4", 5, 500)]
    assert netio.per_target(rows) == {"web": {"rx_packets": 3, "rx_bytes": 300,
                                              "tx_packets": 1, "tx_bytes": 28}}
    assert netio.per_target(rows, host_side=False)["web"]["tx_packets"] == 3
    inspect = {"NetworkSettings": {"Networks": {
        "bridge": {"EndpointID": "0123456789abcdef" * 4}, "none": {"EndpointID": ""}}}}
    assert netio.veths(inspect) == ["lkv0123456789a"]
    assert netio.veths({}) == []


def test_netio_fallback_needs_devices() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="devices"):
        netio.ProcfsNet(netio.Options())


def test_oomkill_render_watches_the_victims_exit(formats: None) -> None:
    text = oomkill.render(oomkill.Options())
    assert "TRACEPOINT_PROBE(sched, sched_process_exit)" in text
    assert "ev.cgid = bpf_get_current_cgroup_id();" in text
    assert "args->data_loc_comm & 0xFFFF" in text and "ev.total_vm = args->total_vm" in text
    assert "anon_rss = args" not in text and "COPY_FIELDS" not in text
    assert text.count("lk_target_of(&ev.ix);") == 2 and "ATTRIBUTION" not in text


def test_oomkill_attribution_order(formats: None) -> None:
    probe = oomkill.OomProbe.__new__(oomkill.OomProbe)
    probe.targets = (Ctr("web", 42, "/x"),)
    probe._exits = {7: (42, 0)}
    probe._trigger_ix = {}
    base = oomkill.OomKill(1, 7, None, None, None, None, None, None, None, None, 7, "x",
                           trigger_cgroup_id=99)
    k = probe._attribute(base)
    assert (k.attributed_by, k.cgroup_id, k.target) == ("exit", 42, "web")  # its exit wins
    k = probe._attribute(base)                               # its exit is used once
    assert (k.attributed_by, k.cgroup_id, k.target) == ("trigger", 99, None)
    other = oomkill.OomKill(1, 8, None, None, None, None, None, None, None, None, 7, "x",
                            trigger_cgroup_id=42)
    assert probe._attribute(other).attributed_by is None     # not the trigger, no exit
    assert oomkill.kill_count([k, probe._attribute(other)], "web") == 0
    probe._exits = {8: (77, 1)}                              # a sub-cgroup of web: ix 1
    assert probe._attribute(other).target == "web"


def test_proc_cgroup_id_reads_the_v2_line(tmp_path: Path) -> None:
    proc, unified = tmp_path / "proc", tmp_path / "unified"
    (proc / "5").mkdir(parents=True)
    (unified / "lk" / "c1").mkdir(parents=True)
    (unified / "cgroup.procs").write_text("")
    (proc / "5" / "cgroup").write_text("4:memory:/lk/c1\n0::/lk/c1\n")
    assert oomkill.proc_cgroup_id(5, proc, unified) == (unified / "lk" / "c1").stat().st_ino
    assert oomkill.proc_cgroup_id(6, proc, unified) is None


def test_oomkill_fallback_needs_targets() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="targets"):
        oomkill.ProcfsOom([])
    for bad in ("/sys/fs/cgroup/memory", "/", "/lk/../etc"):
        with pytest.raises(errors.InvalidArgumentError, match="cgroup"):
            oomkill._relative(bad)
    assert oomkill._relative("/lk/web") == "lk/web"
    assert oomkill._relative("/sys/fs/cgroup/memory/lk/web") == "lk/web"


def test_front_door_opens_the_counter_stand_ins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert {"runqlat", "net", "oomkill"} <= set(probes.KINDS)
    monkeypatch.setattr(runqlat, "cgroup_dir", lambda t: tmp_path)
    with probes.open("runqlat", [Ctr("web", 9, "/lk/web")]) as p:
        assert isinstance(p, runqlat.ProcfsRunq) and p.mode == "procfs"
        assert "not root" in p.reason and "histogram" in p.missing
        assert [(r.target, r.count) for r in p.read()] == [("web", 0)]
    with pytest.raises(errors.InvalidArgumentError, match="devices"):
        probes.open("net")                      # counters need the devices named
    with pytest.raises(errors.InvalidArgumentError, match="bogus"):
        probes.open("oomkill", bogus=1)
    with pytest.raises(errors.UnsupportedError, match="not root"):
        probes.open("net", devices={"lkv1": "web"}, fallback=False)
