"""Checks of notebook 00's exercises: read what the host offers from the files the kernel gives."""

from __future__ import annotations

from labkit.lab.exercises import Namespace, defined, exercise, need

# Synthetic /proc/self/mountinfo lines (proc(5)): mount id, parent, dev, root, mount point,
# options, "-", fstype, source, super options.  Only the mount point and fstype matter here.
_LINE = "{id} 1 0:{id} / {point} rw,nosuid - {fstype} {fstype} rw"
SAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "unified": (("/sys/fs/cgroup", "cgroup2"),),
    "hybrid": (("/sys/fs/cgroup", "tmpfs"), ("/sys/fs/cgroup/unified", "cgroup2"),
               ("/sys/fs/cgroup/memory", "cgroup")),
    "legacy": (("/sys/fs/cgroup", "tmpfs"), ("/sys/fs/cgroup/memory", "cgroup"),
               ("/sys/fs/cgroup/pids", "cgroup")),
    "none": (("/proc", "proc"),),
}


def sample(mode: str) -> str:
    """A small mountinfo text whose cgroup layout is ``mode``."""
    base = [("/", "ext4"), ("/proc", "proc"), ("/sys", "sysfs")]
    lines = [_LINE.format(id=20 + i, point=p, fstype=f)
             for i, (p, f) in enumerate([*base, *SAMPLES[mode]])]
    return "\n".join(lines) + "\n"


@exercise("00.cgroup_mode")
def cgroup_mode(ns: Namespace) -> str:
    from labkit.doctor import cgroup_mode as doctor_mode

    fn = defined(ns, "cgroup_mode_from_mountinfo")
    with open("/proc/self/mountinfo") as f:
        here = f.read()
    want = doctor_mode() or "none"
    got = fn(here)
    need(isinstance(got, str), f"your function returned {got!r}; return one of the strings "
                               "'unified', 'hybrid', 'legacy' or 'none'")
    need(got == want, f"on this host's /proc/self/mountinfo you said {got!r}, labkit doctor "
                      f"says {want!r}: look at the fstype (after ' - ') of the mounts at "
                      "/sys/fs/cgroup and /sys/fs/cgroup/unified")
    for mode, mounts in SAMPLES.items():
        got = fn(sample(mode))
        need(got == mode, f"on a host whose mounts are {mounts} you said {got!r}; "
                          f"it is {mode!r}")
    return f"this host is {want!r}, and the unified/hybrid/legacy/none samples came out right"


@exercise("00.tracepoint")
def tracepoint(ns: Namespace) -> str:
    from labkit._sys import features

    fn = defined(ns, "has_tracepoint")
    cases = [("oom", "mark_victim"), ("sched", "sched_process_exec"),
             ("syscalls", "sys_enter_unshare"), ("lk", "no_such_event")]
    for cat, ev in cases:
        got, want = fn(cat, ev), features.tracepoint_exists(cat, ev)
        need(isinstance(got, bool), f"has_tracepoint({cat!r}, {ev!r}) returned {got!r}; "
                                    "return True or False")
        need(got == want, f"has_tracepoint({cat!r}, {ev!r}) said {got}, but tracefs "
                          f"{'has' if want else 'has no'} events/{cat}/{ev}: look under "
                          f"{features.tracefs() or '/sys/kernel/tracing'}/events")
    return "your has_tracepoint agrees with tracefs on all four, the made-up one included"
