"""Mount descriptions -> MS_* flags, data strings and mount(2) calls, without root (STYLE C10)."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit._sys import consts as C
from labkit.engine.images.mounts import FLAG_OPTIONS, Mount, MountCall


def fd(*options: str) -> tuple[int, str]:
    return Mount("tmpfs", "tmpfs", "/t", options).flags_and_data()


@pytest.mark.parametrize(
    ("word", "bits"),
    [
        ("ro", C.MS_RDONLY), ("nosuid", C.MS_NOSUID), ("nodev", C.MS_NODEV),
        ("noexec", C.MS_NOEXEC), ("sync", C.MS_SYNCHRONOUS), ("remount", C.MS_REMOUNT),
        ("bind", C.MS_BIND), ("rbind", C.MS_BIND | C.MS_REC), ("private", C.MS_PRIVATE),
        ("rprivate", C.MS_PRIVATE | C.MS_REC), ("slave", C.MS_SLAVE),
        ("rslave", C.MS_SLAVE | C.MS_REC), ("shared", C.MS_SHARED),
        ("rshared", C.MS_SHARED | C.MS_REC), ("unbindable", C.MS_UNBINDABLE),
        ("runbindable", C.MS_UNBINDABLE | C.MS_REC), ("relatime", C.MS_RELATIME),
        ("strictatime", C.MS_STRICTATIME), ("noatime", C.MS_NOATIME),
        ("nodiratime", C.MS_NODIRATIME),
    ],
)
def test_each_flag_word_sets_its_bits(word: str, bits: int) -> None:
    assert fd(word) == (bits, "")


@pytest.mark.parametrize(
    ("setter", "clearer"),
    [("ro", "rw"), ("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"),
     ("sync", "async"), ("relatime", "norelatime")],
)
def test_clearing_words_undo_and_later_words_win(setter: str, clearer: str) -> None:
    bits = FLAG_OPTIONS[setter][1]
    assert fd(setter, clearer) == (0, "")
    assert fd(clearer, setter) == (bits, "")


def test_unknown_words_go_to_data_in_order() -> None:
    flags, data = fd("nosuid", "size=64m", "ro", "mode=1777", "uid=0")
    assert flags == C.MS_NOSUID | C.MS_RDONLY
    assert data == "size=64m,mode=1777,uid=0"


def test_defaults_is_no_flag_and_not_data() -> None:
    assert fd("defaults") == (0, "")


def test_empty_option_word_is_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="empty option"):
        fd("ro", "")


def test_overlay_options_are_all_data() -> None:
    m = Mount("overlay", "overlay", "/m", ("lowerdir=/a:/b", "upperdir=/u", "workdir=/w"))
    assert m.flags_and_data() == (0, "lowerdir=/a:/b,upperdir=/u,workdir=/w")
    assert m.calls() == [MountCall("overlay", "/m", "overlay", 0,
                                   "lowerdir=/a:/b,upperdir=/u,workdir=/w")]


def test_plain_mount_is_one_call_with_flags_and_data() -> None:
    m = Mount("tmpfs", "tmpfs", options=("nosuid", "nodev", "size=1m"))
    assert m.calls("/x") == [MountCall("tmpfs", "/x", "tmpfs", C.MS_NOSUID | C.MS_NODEV, "size=1m")]


def test_bind_ro_needs_a_remount_call() -> None:
    # mount(2): a new bind mount ignores MS_RDONLY; runc remounts to apply it.
    m = Mount("bind", "/src", "/dst", ("bind", "ro", "nosuid"))
    assert m.calls() == [
        MountCall("/src", "/dst", None, C.MS_BIND, None),
        MountCall(None, "/dst", None, C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY | C.MS_NOSUID, None),
    ]


def test_plain_bind_is_one_call() -> None:
    assert Mount("none", "/src", "/dst", ("rbind",)).calls() == [
        MountCall("/src", "/dst", None, C.MS_BIND | C.MS_REC, None)]


def test_propagation_goes_in_its_own_call_with_its_own_rec() -> None:
    # rbind + private: the bind is recursive, the propagation change is NOT (no 'r').
    m = Mount("bind", "/src", "/dst", ("rbind", "private"))
    assert m.calls() == [
        MountCall("/src", "/dst", None, C.MS_BIND | C.MS_REC, None),
        MountCall(None, "/dst", None, C.MS_PRIVATE, None),
    ]
    assert m.flags_and_data() == (C.MS_BIND | C.MS_REC | C.MS_PRIVATE, "")


def test_propagation_only_mount_is_a_single_call() -> None:
    assert Mount("none", "", "/", ("rprivate",)).calls() == [
        MountCall(None, "/", None, C.MS_PRIVATE | C.MS_REC, None)]


def test_last_propagation_word_wins() -> None:
    calls = Mount("none", "", "/", ("rshared", "slave")).calls()
    assert calls == [MountCall(None, "/", None, C.MS_SLAVE, None)]


def test_fs_mount_with_propagation_is_two_calls() -> None:
    m = Mount("tmpfs", "tmpfs", "/t", ("rshared", "nodev"))
    assert m.calls() == [MountCall("tmpfs", "/t", "tmpfs", C.MS_NODEV, None),
                         MountCall(None, "/t", None, C.MS_SHARED | C.MS_REC, None)]


def test_remount_is_one_call_with_all_flags() -> None:
    m = Mount("none", "", "/t", ("remount", "bind", "ro"))
    assert m.calls() == [
        MountCall(None, "/t", None, C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY, None)]


def test_target_argument_overrides_and_missing_target_is_refused() -> None:
    m = Mount("proc", "proc", "/a")
    assert m.calls("/b")[0].target == "/b"
    with pytest.raises(errors.InvalidArgumentError, match="no target"):
        Mount("proc", "proc").calls()


def test_mount_is_frozen_and_hashable() -> None:
    m = Mount("proc", "proc", "/proc", ("nosuid",))
    with pytest.raises(AttributeError):
        m.type = "sysfs"  # type: ignore[misc]
    assert {m: 1}[Mount("proc", "proc", "/proc", ("nosuid",))] == 1


def test_type_bind_implies_ms_bind() -> None:
    m = Mount("bind", "/src", "/dst", ("ro",))
    assert m.flags_and_data() == (C.MS_BIND | C.MS_RDONLY, "")
    assert m.calls() == [
        MountCall("/src", "/dst", None, C.MS_BIND, None),
        MountCall(None, "/dst", None, C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY, None),
    ]
