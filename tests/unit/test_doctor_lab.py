"""labkit.lab: require() gates (a readable skip), show_table, plot_series."""

from __future__ import annotations

import pickle
import unittest
from dataclasses import dataclass

import pytest

import labkit
from labkit import errors, lab


def test_require_raises_a_skip_with_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(lab.REQUIREMENTS, "kprobes",
                        lambda: (False, "kernel built without CONFIG_KPROBES", "use the VM"))
    monkeypatch.setitem(lab.REQUIREMENTS, "bcc", lambda: (True, "", None))
    with pytest.raises(lab.MissingFeatureError) as info:
        labkit.require("bcc", "kprobes")
    err = info.value
    assert isinstance(err, unittest.SkipTest) and isinstance(err, errors.LabkitError)
    assert [m[0] for m in err.missing] == ["kprobes"]
    assert "kprobes (kernel built without CONFIG_KPROBES)" in str(err)
    assert err.hint == "use the VM"
    assert err._render_traceback_()[1] == "  kprobes: kernel built without CONFIG_KPROBES -> use the VM"
    assert pickle.loads(pickle.dumps(err)).missing == err.missing


def test_require_passes_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(lab.REQUIREMENTS, "bcc", lambda: (True, "", None))
    lab.require("bcc")


def test_require_unknown_name() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="unknown feature 'cgroup_v3'"):
        lab.require("cgroup_v3")


def test_require_kernel_version() -> None:
    lab.require("kernel>=2.6")
    with pytest.raises(lab.MissingFeatureError):
        lab.require("kernel>=99.0")
    with pytest.raises(errors.InvalidArgumentError):
        lab.require("kernel>=six")


@dataclass(frozen=True)
class Row:
    t: float
    memory_current: int


def test_show_table_and_plot_series() -> None:
    rows = [Row(0.0, 1), Row(0.1, 5), Row(0.2, 9)]
    df = lab.show_table(rows, columns=["memory_current"])
    assert list(df["memory_current"]) == [1, 5, 9]
    import matplotlib

    matplotlib.use("Agg")
    ax = lab.plot_series(rows, "memory_current", limit=10, title="m")
    assert [line.get_label() for line in ax.get_lines()] == ["memory_current", "limit"]
    with pytest.raises(errors.InvalidArgumentError):
        lab.show_table([object()])
