"""The container-aware probes without root: render() for this and other kernels, the kprobe
mode's selection and refusal, flag decoding, summaries, the front door and the procfs
stand-ins (driven by hand on a fake cgroup tree)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from labkit import errors, probes
from labkit._sys import consts, features
from labkit.probes import cgattach, fallback, lifecycle, nssyscalls
from labkit.probes.target import Target

LEFT = re.compile(r"\b(ATTRIBUTION|THREADS|FILENAME_READ|PROCESS_DEAD|TREE_MATCH|TREE_HOOKS|EXIT_GROUP|"
                  r"TREE_IX|HOOKS|DST_ID|ON_ATTACH|KPROBES|CLONE_INTO_CGROUP_FLAG|"
                  r"LK_ANCESTORS|LK_KEEP_HOST|LK_MAX_TARGETS)\b")

WEB = Target("web", "web", 10, 4242, "/lk/web", {"pid": 1})
DB = Target("db", "db", 11, 4343, "/lk/db", {"pid": 2})

EXEC_NEW = {"filename": "__data_loc char[]", "pid": "pid_t", "old_pid": "pid_t"}
EXIT_NEW = {"comm": "char[16]", "pid": "pid_t", "prio": "int", "group_dead": "bool"}
EXIT_OLD = {"comm": "char[16]", "pid": "pid_t", "prio": "int"}


# --- lifecycle -----------------------------------------------------------------------------


def test_lifecycle_render_fills_every_placeholder_and_attributes_each_hook() -> None:
    text = lifecycle.render(lifecycle.Options(targets=(WEB,)), exec_fields=EXEC_NEW,
                            exit_fields=EXIT_NEW)
    assert not LEFT.search(text)
    for hook in ("task, task_newtask", "sched, sched_process_exec",
                 "sched, sched_process_exit", "syscalls, sys_enter_exit_group"):
        body = text.split(f"TRACEPOINT_PROBE({hook})")[1]
        assert body.lstrip(" {\n").startswith("LK_TARGET(ix);")
    assert "if (!args->group_dead) return 0;" in text
    assert "data_loc_filename & 0xFFFF" in text
    # threads are dropped unless asked for
    assert "if (args->clone_flags & LK_CLONE_THREAD) {\n        return 0;" in text


def test_lifecycle_render_names_the_pid_inside_the_container_on_57_and_later() -> None:
    text = lifecycle.render(lifecycle.Options(targets=(WEB,)), exec_fields=EXEC_NEW,
                            exit_fields=EXIT_NEW, ns_pid=True)
    assert "bpf_get_current_ns_pid_tgid" not in text
    assert "bpf_get_ns_current_pid_tgid(" in text and text.count("lk_ns_pid(ix);") == 2
    assert "BPF_ARRAY(lk_pidns, u64," in text and not LEFT.search(text)
    old = lifecycle.render(lifecycle.Options(targets=(WEB,)), exec_fields=EXEC_NEW,
                           exit_fields=EXIT_NEW, ns_pid=False)
    assert "lk_ns_pid" not in old and "NS_PID" not in old


def test_lifecycle_render_without_syscall_tracepoints_has_no_exit_codes() -> None:
    with_codes = lifecycle.render(lifecycle.Options(), exec_fields=EXEC_NEW, exit_fields=EXIT_NEW)
    assert "sys_enter_exit_group" in with_codes
    text = lifecycle.render(lifecycle.Options(), exec_fields=EXEC_NEW, exit_fields=EXIT_NEW,
                            exit_codes=False)
    assert "sys_enter_exit_group" not in text and not LEFT.search(text)


def test_lifecycle_render_old_kernel_and_threads() -> None:
    text = lifecycle.render(lifecycle.Options(threads=True),
                            exec_fields={"filename": "char *"}, exit_fields=EXIT_OLD)
    assert "if ((u32)id != tgid) return 0;" in text      # no group_dead: the leader's exit
    assert "args->filename);" in text
    assert "LK_CLONE_THREAD) {\n        \n" in text       # threads kept


# --- nssyscalls ----------------------------------------------------------------------------


def test_nssyscalls_render_hooks_enter_and_exit_of_each_syscall() -> None:
    text = nssyscalls.render(nssyscalls.Options(targets=(WEB,)))
    assert not LEFT.search(text)
    for name in nssyscalls.SYSCALLS:
        assert f"TRACEPOINT_PROBE(syscalls, sys_enter_{name})" in text
        assert f"TRACEPOINT_PROBE(syscalls, sys_exit_{name})" in text
    assert "bpf_probe_read_user(&lk_flags, sizeof(lk_flags), (void *)args->uargs);" in text
    assert "lk_on_enter(4, args->flags, (const char *)args->dir_name, (const char *)args->type)" in text
    assert "task_newtask" not in text  # no subtree asked for
    assert "return 0;\n}" in text.split("*ix = 0;")[1]  # targets only: the rest dropped


def test_nssyscalls_render_subtree_and_subset() -> None:
    text = nssyscalls.render(nssyscalls.Options(pids_under=1234), ["unshare", "setns"])
    assert "TRACEPOINT_PROBE(task, task_newtask)" in text
    assert "*ix = 65535;" in text
    assert "sys_enter_clone)" not in text and "sys_enter_unshare)" in text
    everything = nssyscalls.render(nssyscalls.Options())
    assert "return 1;\n}" in everything.split("*ix = 0;")[1]  # nothing named: all as host


def test_nssyscalls_decodes_namespace_flags() -> None:
    flags = consts.CLONE_NEWNS | consts.CLONE_NEWPID | consts.CLONE_NEWNET
    assert nssyscalls.decode_ns_flags("unshare", flags) == (
        "CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWNET")
    # clone's low byte is the exit signal (SIGCHLD = 17 sets 0x10 .. and 0x80 would be
    # CLONE_NEWTIME's bit): never read as a namespace there
    assert nssyscalls.decode_ns_flags("clone", 0x80 | 17) == ()
    assert nssyscalls.decode_ns_flags("clone3", consts.CLONE_NEWTIME) == ("CLONE_NEWTIME",)
    assert nssyscalls.decode_ns_flags("setns", consts.CLONE_NEWUTS) == ("CLONE_NEWUTS",)
    assert nssyscalls.decode_ns_flags("mount", consts.CLONE_NEWNS) == ()


def _ev(container: str, syscall: str, lat: int, ret: int = 0) -> nssyscalls.SyscallEvent:
    return nssyscalls.SyscallEvent(0, lat, syscall, container, 1, 1, "x", ret, 0, ())


def test_nssyscalls_summary_counts_and_nearest_rank_percentiles() -> None:
    evs = [_ev("web", "mount", ns) for ns in range(1, 21)] + [_ev("db", "mount", 7, ret=-1)]
    s = nssyscalls.summarize(evs)
    assert s[("web", "mount")] == nssyscalls.Summary(count=20, p50_ns=10, p95_ns=19, failed=0)
    assert s[("db", "mount")] == nssyscalls.Summary(count=1, p50_ns=7, p95_ns=7, failed=1)


def test_nssyscalls_refuses_unknown_syscalls_and_bad_pids() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="chroot"):
        nssyscalls.available(["chroot"])
    with pytest.raises(errors.InvalidArgumentError, match="pids_under"):
        nssyscalls.attach(nssyscalls.Options(pids_under=-1))


# --- cgattach: mode selection and refusal --------------------------------------------------


def test_cgattach_selects_kprobes_when_the_kernel_has_them() -> None:
    mode, fns, missing = cgattach.select("auto", has_kprobes=True, has_symbol=lambda s: True)
    assert (mode, fns, missing) == ("kprobe", cgattach.WRITE_HANDLERS, ())
    only_v1 = cgattach.select("auto", has_kprobes=True,
                              has_symbol=lambda s: s.startswith("cgroup1_"))
    assert only_v1[1] == ("cgroup1_procs_write", "cgroup1_tasks_write")
    # no write handler to probe: the migration itself, never both (nested entries)
    only_migrate = cgattach.select("auto", has_kprobes=True,
                                   has_symbol=lambda s: s == "cgroup_attach_task")
    assert only_migrate[:2] == ("kprobe", ("cgroup_attach_task",))


def test_cgattach_falls_back_to_the_tracepoint_and_names_the_latency() -> None:
    mode, fns, missing = cgattach.select("auto", has_kprobes=False, has_symbol=lambda s: True)
    assert (mode, fns) == ("tracepoint", ())
    assert missing == (cgattach.LATENCY_MISSING,) and "latency" in missing[0]
    # asked for the tracepoint: no kprobes even where they exist
    assert cgattach.select("tracepoint", has_kprobes=True, has_symbol=lambda s: True)[0] == \
        "tracepoint"


def test_cgattach_kprobe_mode_is_refused_without_kprobes() -> None:
    with pytest.raises(errors.UnsupportedError, match="CONFIG_KPROBES") as info:
        cgattach.select("kprobe", has_kprobes=False)
    assert "tracepoint" in (info.value.hint or "")
    with pytest.raises(errors.UnsupportedError, match="kallsyms"):
        cgattach.select("kprobe", has_kprobes=True, has_symbol=lambda s: False)
    with pytest.raises(errors.InvalidArgumentError):
        cgattach.select("uprobe")


def test_cgattach_render_both_modes() -> None:
    fields = {"dst_root": "int", "dst_level": "int", "dst_id": "u64", "pid": "int",
              "dst_path": "__data_loc char[]", "comm": "__data_loc char[]"}
    tp = cgattach.render(cgattach.Options(targets=(WEB,)), fields=fields)
    assert not LEFT.search(tp)
    assert "lk_write_enter" not in tp and "ev.dst_id = args->dst_id;" in tp
    assert "0x200000000ULL" in tp  # CLONE_INTO_CGROUP
    kp = cgattach.render(cgattach.Options(), kprobes=True, fields=fields)
    assert "int lk_write_enter(struct pt_regs *ctx)" in kp
    assert "lk_parked.update(&lk_tid, &ev)" in kp
    # C: the maps the tracepoint program parks records in are declared before it uses them
    assert kp.index("BPF_HASH(lk_wstart") < kp.index("lk_wstart.lookup(&lk_tid)")
    assert kp.index("BPF_HASH(lk_parked") < kp.index("lk_parked.update(&lk_tid, &ev)")
    old = cgattach.render(cgattach.Options(), fields={"dst_root": "int", "dst_id": "int"})
    assert "ev.dst_id = args->dst_id;" in old
    assert "ev.dst_id = 0;" in cgattach.render(cgattach.Options(), fields={"dst_root": "int"})


class _FakeBpf:
    """attach_kprobe fails on one function, as on a kprobe-blacklisted symbol."""

    def __init__(self, bad: str) -> None:
        self.bad, self.attached, self.detached = bad, [], []  # type: ignore[var-annotated]

    def attach_kprobe(self, event: bytes, fn_name: bytes) -> None:
        if event.decode() == self.bad:
            raise Exception(f"Failed to attach BPF program to kprobe {self.bad}")  # noqa: TRY002
        self.attached.append(event.decode())

    def attach_kretprobe(self, event: bytes, fn_name: bytes) -> None:
        self.attached.append("ret:" + event.decode())

    def detach_kprobe(self, event: bytes) -> None:
        self.detached.append(event.decode())

    def detach_kretprobe(self, event: bytes) -> None:
        self.detached.append("ret:" + event.decode())


def test_cgattach_kprobe_refused_by_the_kernel_auto_goes_on_as_tracepoint() -> None:
    fake = _FakeBpf("cgroup1_procs_write")
    p = cgattach.AttachProbe(fake, "cgattach")
    cgattach._attach_kprobes(p, cgattach.WRITE_HANDLERS, "auto")
    assert p.mode == "tracepoint" and "cgroup1_procs_write" in p.missing[0]
    assert sorted(fake.detached) == sorted(fake.attached)  # nothing left half attached
    p2 = cgattach.AttachProbe(_FakeBpf("cgroup_procs_write"), "cgattach")
    with pytest.raises(errors.UnsupportedError, match="cgroup_procs_write"):
        cgattach._attach_kprobes(p2, cgattach.WRITE_HANDLERS, "kprobe")


def test_cgattach_attributes_v1_moves_by_path() -> None:
    p = cgattach.AttachProbe(None, "cgattach")
    p.targets = (WEB, DB)
    assert p._container(2, "") == "db"
    assert p._container(0, "/lk/web") == "web"
    assert p._container(0, "/lk/web/sub") == "web"
    assert p._container(0, "/lk/webby") is None
    p.targets = ()
    assert p._container(0, "/anything") == "host"


# --- the front door and the procfs stand-ins -----------------------------------------------


def test_open_refuses_unknown_kinds_and_options() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="lifecycle"):
        probes.open("nope")
    with pytest.raises(errors.InvalidArgumentError, match="bogus"):
        probes.open("lifecycle", bogus=1)


def test_open_falls_back_without_bcc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_bcc", lambda: False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with probes.open("syscalls") as p:
        assert p.mode == "procfs" and p.read() == [] and p.summary() == {}
        assert "needs eBPF" in p.missing[0]
        assert "bcc" in p.reason
    with pytest.raises(errors.UnsupportedError, match="bcc"):
        probes.open("syscalls", fallback=False)
    with pytest.raises(errors.UnsupportedError, match="threads"):
        probes.open("lifecycle", threads=True)
    with pytest.raises(errors.UnsupportedError, match="kprobe"):
        probes.open("cgattach", mode="kprobe")


def test_open_without_root_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with probes.open("lifecycle", poll_interval=3600) as p:
        assert p.mode == "procfs" and "not root" in p.reason
        assert "exit codes" in p.missing


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    mount = tmp_path / "unified"
    (mount / "lk" / "web" / "sub").mkdir(parents=True)
    (mount / "lk" / "web" / "cgroup.procs").write_text(f"{os.getpid()}\n")
    (mount / "lk" / "web" / "sub" / "cgroup.procs").write_text("")
    monkeypatch.setattr(fallback, "_v2_mount", lambda: str(mount))
    return mount / "lk" / "web"


def test_lifecycle_poller_reports_new_changed_and_gone_pids(v2: Path) -> None:
    ppid = os.getppid()
    with fallback.open("lifecycle", [WEB], "test", interval=3600) as p:
        assert isinstance(p, fallback.LifecyclePoller)
        assert p.read() == []  # the first poll is the baseline
        (v2 / "sub" / "cgroup.procs").write_text(f"{ppid}\n")
        evs = p.read()
        assert [(e.kind, e.container, e.pid) for e in evs] == [("fork", "web", ppid)]
        p._known["web"][ppid] = "/bin/old"          # as if it had exec'd since
        evs = p.read()
        assert [(e.kind, e.pid) for e in evs] == [("exec", ppid)]
        assert evs[0].filename == fallback._cmdline(ppid)
        (v2 / "sub" / "cgroup.procs").write_text("")
        assert [(e.kind, e.pid, e.code) for e in p.read()] == [("exit", ppid, None)]
    assert not p._thread.is_alive()


def test_attach_poller_reports_arrivals_with_the_targets_cgroup(v2: Path) -> None:
    with fallback.open("cgattach", [WEB], "test", interval=3600) as p:
        (v2 / "cgroup.procs").write_text(f"{os.getpid()}\n{os.getppid()}\n")
        evs = p.read()
    assert [(e.kind, e.pid, e.dst_id, e.dst_path, e.lat_ns) for e in evs] == [
        ("attach", os.getppid(), 4242, "/lk/web", None)]
    assert "attach latency" in p.missing


def test_poller_refuses_a_bad_interval(v2: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="interval"):
        fallback.open("lifecycle", [WEB], "test", interval=0)
