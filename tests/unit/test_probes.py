"""Probe render(): placeholders filled, options reflected, kernel differences handled (no root)."""

from __future__ import annotations

import re

import pytest

from labkit import errors
from labkit._sys import features
from labkit.probes import execsnoop, kcount, oomkill, selftest

PLACEHOLDERS = re.compile(r"\b(UID_FILTER|PPID_FILTER|FILENAME_READ|COPY_FIELDS|PID_FILTER|"
                          r"TARGET_PID)\b")

OOM_NEW = {"pid": "int", "comm": "__data_loc char[]", "total_vm": "unsigned long",
           "anon_rss": "unsigned long", "file_rss": "unsigned long",
           "shmem_rss": "unsigned long", "uid": "uid_t", "pgtables": "unsigned long",
           "oom_score_adj": "short"}


@pytest.fixture
def exec_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "tracepoint_fields",
                        lambda cat, ev, root=features.ROOT: {"filename": "__data_loc char[]",
                                                             "pid": "pid_t"})


def test_execsnoop_render_without_filters(exec_format: None) -> None:
    text = execsnoop.render(execsnoop.Options())
    assert not PLACEHOLDERS.search(text)
    assert "ev.uid !=" not in text and "ev.ppid !=" not in text
    assert "data_loc_filename & 0xFFFF" in text
    assert "TRACEPOINT_PROBE(sched, sched_process_exec)" in text


def test_execsnoop_render_with_filters(exec_format: None) -> None:
    text = execsnoop.render(execsnoop.Options(uid=1000, ppid=4242))
    assert "if (ev.uid != 1000) return 0;" in text
    assert "if (ev.ppid != 4242) return 0;" in text


def test_oomkill_render_new_kernel_copies_every_field() -> None:
    text = oomkill.render(oomkill.Options(), fields=OOM_NEW)
    assert not PLACEHOLDERS.search(text)
    for name in oomkill.NUMERIC:
        assert f"ev.{name} = args->{name};" in text
    assert "args->data_loc_comm & 0xFFFF" in text


def test_oomkill_render_old_kernel_copies_pid_only() -> None:
    text = oomkill.render(oomkill.Options(), fields={"pid": "int"})
    assert "ev.pid = args->pid;" in text
    assert "args->total_vm" not in text
    assert "bpf_probe_read_kernel_str(&ev.comm" not in text


def test_oomkill_render_char_array_comm() -> None:
    text = oomkill.render(oomkill.Options(), fields={"pid": "int", "comm": "char[16]"})
    assert "sizeof(ev.comm), args->comm)" in text


def test_selftest_render_fills_pid() -> None:
    text = selftest.render(4242)
    assert not PLACEHOLDERS.search(text)
    assert "!= 4242)" in text


def test_kcount_without_kprobes_is_unsupported_before_compiling(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_kprobes", lambda root=features.ROOT: False)

    def no_compile(text: str, tool: str) -> None:
        raise AssertionError("must not compile")

    monkeypatch.setattr("labkit.probes.base.load_bpf", no_compile)
    with pytest.raises(errors.UnsupportedError) as info:
        kcount.attach(kcount.Options(function="do_sys_openat2"))
    assert info.value.feature == "kprobes"
    assert info.value.hint is not None and "labkit vm" in info.value.hint
    assert "fallback='tracepoint'" in info.value.hint  # an alternative exists for this one


def test_kcount_without_kprobes_and_no_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_kprobes", lambda root=features.ROOT: False)
    with pytest.raises(errors.UnsupportedError) as info:
        kcount.hooks(kcount.Options(function="tcp_v4_connect", fallback="tracepoint"))
    assert "fallback" not in (info.value.hint or "")


def test_kcount_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_kprobes", lambda root=features.ROOT: True)
    assert kcount.hooks(kcount.Options(function="vfs_read")) == ["kprobe:vfs_read"]
    monkeypatch.setattr(features, "has_kprobes", lambda root=features.ROOT: False)
    assert kcount.hooks(kcount.Options(function="vfs_read", fallback="tracepoint")) == [
        "syscalls:sys_enter_read", "syscalls:sys_enter_pread64"]


def test_kcount_render_pid_filter() -> None:
    text = kcount.render(kcount.Options(function="vfs_read", pid=77), ["kprobe:vfs_read"])
    assert not PLACEHOLDERS.search(text)
    assert "if (key.pid != 77) return 0;" in text
    assert "// attached to: kprobe:vfs_read" in text


@pytest.mark.parametrize("bad", ["", "vfs read", "x;system()", "1abc"])
def test_kcount_rejects_bad_function_names(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        kcount.render(kcount.Options(function=bad), ["kprobe:x"])


def test_records_are_frozen() -> None:
    rec = execsnoop.Exec(ts_ns=1, pid=2, ppid=None, uid=0, comm="true", filename="/bin/true")
    with pytest.raises(AttributeError):
        rec.pid = 3  # type: ignore[misc]
