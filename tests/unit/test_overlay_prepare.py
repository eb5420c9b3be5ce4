"""overlay.prepare: lowerdir order and the kernel's rules, checked without mounting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images import overlay
from labkit.engine.images.mounts import Mount


def dirs(root: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        (root / n).mkdir(parents=True, exist_ok=True)
        out.append(root / n)
    return out


def data(m: Mount) -> str:
    return m.flags_and_data()[1]


def test_lowerdir_keeps_the_given_order_top_first(tmp_path: Path) -> None:
    top, mid, base, up, wk = dirs(tmp_path, "top", "mid", "base", "up", "wk")
    m = overlay.prepare([top, mid, base], up, wk, "/merged")
    assert m.type == "overlay" and m.source == "overlay" and m.target == "/merged"
    assert m.options[0] == f"lowerdir={top}:{mid}:{base}"
    assert data(m) == f"lowerdir={top}:{mid}:{base},upperdir={up},workdir={wk}"


def test_image_layers_base_first_go_reversed(tmp_path: Path) -> None:
    # An image config lists diff_ids base first; overlay wants the top-most first.
    layers = dirs(tmp_path, "l0", "l1", "l2")
    m = overlay.prepare(list(reversed(layers)), target="/m")
    assert m.options[0] == "lowerdir=" + ":".join(str(p) for p in reversed(layers))


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs(tmp_path, "a", "b")
    monkeypatch.chdir(tmp_path)
    m = overlay.prepare(["a", "b"])
    assert m.options[0] == f"lowerdir={tmp_path}/a:{tmp_path}/b"


def test_extra_options_follow(tmp_path: Path) -> None:
    a, b = dirs(tmp_path, "a", "b")
    m = overlay.prepare([a, b], options=("ro", "redirect_dir=off"))
    flags, d = m.flags_and_data()
    assert flags == 1 and d.endswith(",redirect_dir=off")


def test_read_only_view_needs_two_lowers(tmp_path: Path) -> None:
    (a,) = dirs(tmp_path, "a")
    with pytest.raises(errors.InvalidArgumentError, match="at least two lowers"):
        overlay.prepare([a])


def test_no_lowers_is_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="at least one"):
        overlay.prepare([])


def test_upper_and_work_go_together(tmp_path: Path) -> None:
    a, up = dirs(tmp_path, "a", "up")
    with pytest.raises(errors.InvalidArgumentError, match="give both or neither"):
        overlay.prepare([a], up, None)


def test_missing_lower_is_not_found(tmp_path: Path) -> None:
    (a,) = dirs(tmp_path, "a")
    with pytest.raises(errors.NotFoundError, match="nope"):
        overlay.prepare([a, tmp_path / "nope"])


@pytest.mark.parametrize("bad", ["a:b", "a,b", "a\\b"])
def test_separator_characters_are_refused(tmp_path: Path, bad: str) -> None:
    (good,) = dirs(tmp_path, "good")
    (tmp_path / bad).mkdir()
    with pytest.raises(errors.InvalidArgumentError) as ei:
        overlay.prepare([good, tmp_path / bad])
    assert repr(str(tmp_path / bad)) in str(ei.value)


def test_workdir_must_be_empty(tmp_path: Path) -> None:
    a, up, wk = dirs(tmp_path, "a", "up", "wk")
    (wk / "junk").write_text("x")
    with pytest.raises(errors.InvalidArgumentError, match="not empty"):
        overlay.prepare([a], up, wk)


def test_workdir_may_hold_what_overlayfs_left_there(tmp_path: Path) -> None:
    a, up, wk = dirs(tmp_path, "a", "up", "wk")
    (wk / "work").mkdir()
    (wk / "index").mkdir()
    assert "workdir=" in data(overlay.prepare([a], up, wk))


def test_workdir_inside_upperdir_is_refused(tmp_path: Path) -> None:
    a, up, wk = dirs(tmp_path, "a", "up", "up/wk")
    with pytest.raises(errors.InvalidArgumentError, match="separate subtrees"):
        overlay.prepare([a], up, wk)


def test_workdir_on_another_filesystem_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, up, wk = dirs(tmp_path, "a", "up", "wk")
    real_stat = os.stat

    def fake_stat(p: object, *args: object, **kw: object) -> os.stat_result:
        st = real_stat(p, *args, **kw)  # type: ignore[arg-type]
        if os.fspath(p) == str(wk):  # type: ignore[call-overload]
            fields = list(st)
            fields[2] = st.st_dev + 1  # st_dev
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "stat", fake_stat)
    with pytest.raises(errors.InvalidArgumentError, match="same filesystem"):
        overlay.prepare([a], up, wk)


def test_long_lowerdir_is_refused_before_the_kernel_truncates_it(tmp_path: Path) -> None:
    names = [f"layer-{i:03d}-" + "x" * 90 for i in range(45)]  # ~45 * 200 bytes > 4096
    lowers = dirs(tmp_path, *names)
    with pytest.raises(errors.InvalidArgumentError, match="copies at most") as ei:
        overlay.prepare(lowers)
    assert ei.value.hint and "shorter" in ei.value.hint


def test_just_under_a_page_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = dirs(tmp_path, "a", "b")
    length = len(data(overlay.prepare([a, b])).encode())
    monkeypatch.setattr(overlay, "_page_size", lambda: length + 1)
    overlay.prepare([a, b])
    monkeypatch.setattr(overlay, "_page_size", lambda: length)
    with pytest.raises(errors.InvalidArgumentError):
        overlay.prepare([a, b])


def test_too_many_lowers(tmp_path: Path) -> None:
    (a,) = dirs(tmp_path, "a")
    with pytest.raises(errors.InvalidArgumentError, match="at most 500"):
        overlay.prepare([a] * 501)
