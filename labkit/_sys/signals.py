"""Give a process that is about to become a container default signal handling.

Ignored dispositions and the blocked mask survive execve(2) (signal(7), "Signal mask and
pending signals" / execve(2) "the dispositions of any signals that are being caught are
reset to the default; ignored signals stay ignored"). Whatever launched the engine (a shell,
a CI runner, a Python process that loaded a library which ignores a signal) would otherwise
hand its ignored signals down to every container: `docker stop` then fails on a process that
ignores SIGTERM. runc and crun reset them in their init for the same reason.

Python's signal.signal() goes through glibc, which refuses signals 32 and 33 (reserved for
its threading implementation; signal(7) "Real-time signals"), so the reset calls the raw
rt_sigaction(2) syscall for every signal number.
"""

from __future__ import annotations

import ctypes
import os
import signal

from labkit._sys.libc import libc

# struct kernel_sigaction for rt_sigaction(2) on x86_64 and aarch64:
# { handler, flags, restorer, mask } with a 64-bit mask (_NSIG / 8 == 8 bytes).
_SIG_DFL = 0
_NSIG = 65  # signals 1..64
_NR_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}


class _KSigaction(ctypes.Structure):
    _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                ("restorer", ctypes.c_void_p), ("mask", ctypes.c_uint64)]


def reset_signals() -> None:
    """Set every signal's disposition to SIG_DFL and unblock all signals (calling thread).

    Meant for a single-threaded child between fork and execve. SIGKILL and SIGSTOP cannot
    be changed and are skipped; a failure on one number is ignored, as it can only mean the
    kernel does not know it.
    """
    nr = _NR_RT_SIGACTION.get(os.uname().machine)
    lib = libc()
    act = _KSigaction(_SIG_DFL, 0, None, 0)
    for sig in range(1, _NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if nr is not None:
            lib.syscall(nr, sig, ctypes.byref(act), None, ctypes.sizeof(ctypes.c_uint64))
        else:  # unknown architecture: glibc's path covers all but its reserved signals
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    # Python's own wakeup fd (used by the shim) must not reach the container either.
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # not the main thread: no wakeup fd can be set here anyway
        pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
