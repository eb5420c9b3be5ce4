"""Checks of notebook 09 (startup latency): the learner's reading of a start's DataFrame."""

from __future__ import annotations

from labkit.lab.exercises import Namespace, defined, exercise, need


@exercise("09.before_exec_share")
def before_exec_share(ns: Namespace) -> str:
    """``before_exec_share``: the fraction (0..1) of one start's total spent before the
    container's program runs, i.e. up to the end of the "execve" phase, from ``df_one``."""
    df = defined(ns, "df_one", "a DataFrame (timeline.to_dataframe(tl))")
    need(hasattr(df, "columns") and {"phase", "end_ms", "total_ms"} <= set(df.columns),
         "df_one should be timeline.to_dataframe(tl): one start's phases")
    need(df["start"].nunique() == 1 if "start" in df.columns else False,
         "df_one should hold one start only (to_dataframe of one timeline)")
    rows = df.loc[df["phase"] == "execve"]
    need(len(rows) == 1, "this start has no 'execve' phase: trace it again with eBPF")
    expected = float(rows["end_ms"].iloc[0]) / float(df["total_ms"].iloc[0])
    got = defined(ns, "before_exec_share", "a number")
    need(isinstance(got, (int, float)), f"before_exec_share should be a number, not {type(got).__name__}")
    need(not (1 < got <= 100 and abs(got / 100 - expected) < 0.01),
         f"{got:.1f} looks like a percentage: give the fraction (between 0 and 1)")
    need(0 <= got <= 1, f"before_exec_share is {got}: a fraction lies between 0 and 1")
    need(abs(got - expected) < 0.01,
         f"before_exec_share is {got:.3f}: add up the 'ms' of every phase up to and including "
         "'execve' (or take its 'end_ms'), then divide by the start's total_ms")
    return f"{got:.1%} of the start passes before the container's program runs"
