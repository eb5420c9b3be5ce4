"""``labkit vm``: build, boot and use the disposable test VM (see labkit.vm).

    labkit vm build [--rebuild]     build (or find cached) the Debian 12 image
    labkit vm up                    boot a VM that keeps running (for many `run`s)
    labkit vm run [--] CMD...       run CMD in the kept VM, or in a fresh one; exit with CMD's status
    labkit vm shell                 a root shell on the VM's serial console (Ctrl-a x quits)
    labkit vm status                image and VM state
    labkit vm destroy               stop the kept VM
    labkit vm clean                 stop it and remove the whole image cache

Each prints a short timing table (image build cold/cached, boot-to-command) on stderr, so
stdout carries only the command's own output.  Exit status 125 means the VM failed, not CMD.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from labkit.errors import LabkitError
from labkit.vm import image as _image
from labkit.vm import qemu, session
from labkit.vm.recipe import REPO, cache_dir

VM_FAILED = 125  # docker run's "the daemon failed", as opposed to the command's own status
err = Console(stderr=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Fill the ``labkit vm`` parser (called by labkit.cli.main, or by main() below)."""
    sub = p.add_subparsers(dest="vm_command", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build or find the cached VM image")
    b.add_argument("--rebuild", action="store_true", help="discard the cached image first")
    for name, text in (("up", "boot a VM that keeps running"), ("destroy", "stop the kept VM"),
                       ("shell", "root shell on the VM console"), ("status", "image + VM state"),
                       ("clean", "stop the kept VM and remove the image cache")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--name", default="default", help="VM name (default: default)")
        if name == "status":
            s.add_argument("--json", action="store_true", help="print JSON")
    r = sub.add_parser("run", help="run a command inside the VM")
    r.add_argument("--name", default="default", help="kept VM to use if it is up")
    r.add_argument("--timeout", type=float, default=None, help="command time-out in seconds")
    r.add_argument("--boot-timeout", type=float, default=None, help="boot time-out in seconds")
    r.add_argument("--cwd", default=None, help=f"directory in the VM (default {qemu.GUEST_REPO})")
    r.add_argument("--no-share", action="store_true", help="do not share the repo into the VM")
    r.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command")


def _progress() -> tuple[Progress, _image.Progress]:
    bar = Progress(TextColumn("[bold blue]VM image[/] {task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                   console=err, transient=True)
    task = bar.add_task("checking cache", total=len(_image.STEPS))

    def report(step: str, i: int, n: int) -> None:
        bar.update(task, description=step, completed=i, total=n)
    return bar, report


def _table(t: session.Timings) -> None:
    tab = Table(title="labkit vm", show_header=True, header_style="bold")
    tab.add_column("step")
    tab.add_column("seconds", justify="right")
    tab.add_column("note")
    note = {"cached": f"cached (its cold build took {t.image_build_seconds:.0f} s)",
            "image": "rebuilt the ext4 stage; debootstrap stage cached",
            "cold": "cold build"}.get(t.image_stage, t.image_stage)
    tab.add_row("image", f"{t.image_seconds:.1f}", note)
    if t.boot_seconds:
        tab.add_row("boot-to-command", f"{t.boot_seconds:.1f}", f"{t.accel}: {t.accel_why}")
    for cmd, code, secs in t.commands:
        tab.add_row("command", f"{secs:.1f}", f"exit {code}: {cmd[:50]}")
    err.print(tab)


def _write(stream: int, chunk: bytes) -> None:
    out = sys.stdout.buffer if stream == 1 else sys.stderr.buffer
    out.write(chunk)
    out.flush()


def _run(a: argparse.Namespace) -> int:
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    if not argv:
        err.print("labkit vm run: give a command, e.g. labkit vm run -- uname -r")
        return 2
    vm = session.attach(a.name)
    kept = vm is not None
    if vm is None:
        bar, report = _progress()
        with bar:
            vm = session.VM.boot(share=None if a.no_share else REPO, progress=report,
                                 timeout=a.boot_timeout)
    try:
        res = vm.run(argv, cwd=a.cwd, on_output=_write, timeout=a.timeout)
    finally:
        if kept:
            vm.channel.close()
        else:
            vm.stop()
    _table(vm.timings)
    return res.exit_code


def _build(a: argparse.Namespace) -> int:
    bar, report = _progress()
    with bar:
        img = _image.build(progress=report, rebuild=a.rebuild)
    t = session.Timings(image_cached=img.cached, image_seconds=img.seconds,
                        image_build_seconds=img.build_seconds, image_stage=img.stage)
    _table(t)
    err.print(f"image {img.image_hash}: kernel {img.kernel_release}, {img.path}")
    return 0


def _shell(a: argparse.Namespace) -> int:
    binary = qemu.qemu_binary()
    img = _image.build()
    accel, _ = qemu.choose_accel(img.kernel, cache_dir(), binary)
    rundir = cache_dir() / "run" / f"shell-{time.time_ns()}"
    rundir.mkdir(parents=True)
    spec = qemu.BootSpec(kernel=img.kernel, initrd=img.initrd, rootfs=img.rootfs,
                         agent_socket=rundir / "agent.sock", console_log=rundir / "console.log",
                         name=f"labkit-vm-{a.name}-shell", accel=accel, share=REPO, shell=True)
    err.print(f"booting ({accel}); the shell is on the serial console, Ctrl-a x quits qemu")
    try:
        return subprocess.call(qemu.command(spec, binary))
    finally:
        subprocess.run(["rm", "-rf", str(rundir)], check=False)


def _status(a: argparse.Namespace) -> int:
    st = session.status()
    if a.json:
        print(json.dumps(st, indent=1))
        return 0
    tab = Table(title="labkit vm status", show_header=False)
    for k, v in st.items():
        tab.add_row(k, str(v))
    err.print(tab)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so every finally/except below runs: qemu and builds are stopped


def run_command(a: argparse.Namespace) -> int:
    """Dispatch a parsed ``labkit vm`` command; LabkitErrors become a message + 125.

    SIGTERM and SIGHUP act like Ctrl-C: the VM or the image build is stopped cleanly.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        if a.vm_command == "run":
            return _run(a)
        if a.vm_command == "build":
            return _build(a)
        if a.vm_command == "up":
            vm = session.up(a.name)
            _table(vm.timings)
            err.print(f"VM '{a.name}' is up (pid {vm.pid}, kernel {vm.kernel}); "
                      "`labkit vm destroy` stops it")
            return 0
        if a.vm_command == "destroy":
            err.print("stopped" if session.destroy(a.name) else f"no VM '{a.name}' running")
            return 0
        if a.vm_command == "clean":
            for state in session.status()["running"]:  # type: ignore[attr-defined]
                session.destroy(str(state["name"]))
            _image.clean()
            err.print(f"removed {cache_dir()}")
            return 0
        if a.vm_command == "shell":
            return _shell(a)
        return _status(a)
    except LabkitError as e:
        err.print("[bold red]labkit vm:[/]", escape(str(e)), highlight=False)
        if e.hint:
            err.print(escape(f"hint: {e.hint}"), highlight=False)
        return VM_FAILED
    except KeyboardInterrupt:
        err.print("labkit vm: interrupted; the VM (or the image build) was stopped")
        return 130


def main(argv: list[str] | None = None) -> int:
    """The `labkit vm` verbs on their own (``python -m labkit.cli vm`` reaches them too)."""
    p = argparse.ArgumentParser(prog="labkit vm", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run_command(p.parse_args(argv))
