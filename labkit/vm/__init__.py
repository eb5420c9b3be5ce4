"""A disposable Linux kernel: labkit's test VM, booted with qemu (KVM if it works, else TCG).

The host this lab runs on may lack what labkit teaches (cgroup v2 with all controllers,
kprobes, ipvlan).  ``labkit.vm`` builds a Debian 12 image once (cached outside the repo),
boots it in seconds with the repo shared over virtio-9p, and runs commands inside through a
small agent, returning their exit status and output faithfully::

    from labkit import vm
    with vm.VM.boot() as machine:
        r = machine.run(["uname", "-r"], capture=True)

Command line: ``labkit vm build|up|run|shell|status|destroy|clean`` (labkit.cli.vm).
"""

from __future__ import annotations

from labkit.vm._errors import BootTimeoutError, NoSpaceError, VMError
from labkit.vm.compare import doctor_frame, doctor_rows, side_by_side
from labkit.vm.image import Image, build, clean
from labkit.vm.recipe import Recipe, cache_dir
from labkit.vm.session import VM, RunResult, Timings, attach, destroy, status, up

__all__ = [
    "VM",
    "BootTimeoutError",
    "Image",
    "NoSpaceError",
    "Recipe",
    "RunResult",
    "Timings",
    "VMError",
    "attach",
    "build",
    "cache_dir",
    "clean",
    "destroy",
    "doctor_frame",
    "doctor_rows",
    "run",
    "side_by_side",
    "status",
    "up",
]


def run(argv: list[str], *, capture: bool = True, timeout: float | None = None) -> RunResult:
    """Run ``argv`` in the kept VM if one is up, else in a fresh VM that is then stopped."""
    kept = attach()
    if kept is not None:
        try:
            return kept.run(argv, capture=capture, timeout=timeout)
        finally:
            kept.channel.close()
    with VM.boot() as machine:
        return machine.run(argv, capture=capture, timeout=timeout)
