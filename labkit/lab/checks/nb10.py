"""Checks of notebook 10 (eBPF observability)."""

from __future__ import annotations

from labkit.lab.exercises import Namespace, defined, exercise, fail, need


@exercise("10.count_execs")
def count_execs(ns: Namespace) -> str:
    """The learner writes a shell script for lk-one and predicts how many execve(2) the
    lifecycle probe, aimed at lk-one only, will see; the check runs it and counts."""
    from labkit.lab import observe

    obs = ns.get("obs")
    need(isinstance(obs, observe.Observatory),
         "run the notebook's set-up cells first: 'obs' should be the Observatory")
    assert isinstance(obs, observe.Observatory)  # for mypy: need() stopped otherwise
    script = defined(ns, "exec_script", "a string")
    predicted = defined(ns, "predicted_execs", "a number")
    need(isinstance(script, str) and script.strip(),
         "exec_script should be a non-empty shell script, e.g. \"ls /; /bin/date\"")
    need(isinstance(predicted, int) and not isinstance(predicted, bool),
         f"predicted_execs should be a whole number, not {predicted!r}")
    seen, files = observe.count_execs(obs, "lk-one", script)
    if seen != predicted:
        fail(f"you predicted {predicted} execs, the probe saw {seen} in lk-one: "
             f"{', '.join(files) or 'none'}.  The first is always the sh that docker exec "
             "starts; busybox runs most of its applets (ls, date, echo) inside the shell "
             "or a fork of it, with no exec, but a program named by its path (/bin/date) "
             "and some applets (sleep, env, sh) are exec'd")
    need(seen >= 3, f"your script made {seen} exec(s); write one that makes at least 3 "
                    "(so the prediction has something to get wrong)")
    return f"{seen} execs in lk-one, as predicted: {', '.join(files)}"
