"""Boot the image with qemu, wait for the agent, run commands, and stop it again.

Two ways to use a VM:

* ephemeral: ``with VM.boot() as vm: vm.run([...])``; qemu is stopped on exit, and the
  snapshot disk means nothing the guest wrote survives (``labkit vm run`` without ``up``).
* kept: ``up()`` starts a VM that outlives the caller (its pid and socket are recorded in
  ``<cache>/run/<name>/state.json``); ``attach()`` reconnects; ``destroy()`` stops it.

Only the qemu pid this module started (or recorded) is ever signalled, and only after
/proc/<pid>/cmdline shows it is still that qemu.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from labkit import errors
from labkit.vm import image as _image
from labkit.vm import qemu
from labkit.vm._errors import BootTimeoutError, VMError
from labkit.vm.channel import Channel, Output
from labkit.vm.recipe import REPO, Layout, Recipe, cache_dir

BOOT_TIMEOUT = {"kvm": 120.0, "tcg": 300.0}
# The guest's environment: the image's venv first, labkit imported from the shared repo.
GUEST_ENV = {
    "PATH": "/opt/labkit/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH": qemu.GUEST_REPO, "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/root",
    "LABKIT_IN_VM": "1", "LANG": "C.UTF-8", "TERM": "dumb",
}


@dataclass
class RunResult:
    """One command's outcome; stdout/stderr are filled only when captured."""

    argv: list[str]
    exit_code: int
    seconds: float
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass
class Timings:
    """What ``labkit vm`` reports: image build (cold or cached) and boot-to-command."""

    image_cached: bool = True
    image_seconds: float = 0.0  # this call's image step
    image_build_seconds: float = 0.0  # the cold build that made the image
    image_stage: str = "cached"  # "cached", "image" (only the ext4 stage rebuilt) or "cold"
    accel: str = "?"
    accel_why: str = ""
    boot_seconds: float = 0.0  # qemu start -> agent answers
    commands: list[tuple[str, int, float]] = field(default_factory=list)


def _console_tail(log: Path, lines: int = 20) -> str:
    try:
        return "".join(log.read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return "(no console output)"


class VM:
    """A running VM and its agent channel."""

    def __init__(self, channel: Channel, pid: int, rundir: Path, timings: Timings,
                 proc: subprocess.Popen[bytes] | None = None) -> None:
        self.channel, self.pid, self.rundir, self.timings = channel, pid, rundir, timings
        self.proc = proc

    @property
    def kernel(self) -> str:
        return self.channel.kernel

    @classmethod
    def boot(cls, *, name: str | None = None, share: Path | None = REPO, keep: bool = False,
             timeout: float | None = None, progress: _image.Progress | None = None,
             memory_mb: int = 2048, cpus: int = 2) -> VM:
        """Build (or reuse) the image, start qemu and wait until the agent answers.

        ``keep=True`` records the VM under ``name`` for attach()/destroy() (see up()).

        Raises UnsupportedError (no qemu), NoSpaceError, BootTimeoutError (qemu is stopped
        and the console's last lines are in the message), VMError.
        """
        binary = qemu.qemu_binary()
        if name is None:  # ephemeral: a name of its own, so parallel runs never collide
            name = f"tmp-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        timings = Timings()
        img = _image.build(progress=progress)
        timings.image_cached, timings.image_seconds = img.cached, img.seconds
        timings.image_build_seconds, timings.image_stage = img.build_seconds, img.stage
        root = cache_dir()
        timings.accel, timings.accel_why = qemu.choose_accel(img.kernel, root, binary)
        _sweep_runs(root / "run")
        rundir = root / "run" / name
        if keep and (rundir / "state.json").exists() and _alive_state(rundir) is not None:
            raise errors.AlreadyExistsError("vm", name, hint="`labkit vm destroy` first")
        shutil.rmtree(rundir, ignore_errors=True)
        rundir.mkdir(parents=True)
        spec = qemu.BootSpec(kernel=img.kernel, initrd=img.initrd, rootfs=img.rootfs,
                             agent_socket=rundir / "agent.sock",
                             console_log=rundir / "console.log", name=f"labkit-vm-{name}",
                             accel=timings.accel, share=share, memory_mb=memory_mb, cpus=cpus,
                             ephemeral=not keep)
        t0 = time.monotonic()
        with open(rundir / "qemu.stderr", "wb") as errlog:
            # A session of its own: a Ctrl-C in the caller's terminal is handled by us.
            proc = subprocess.Popen(qemu.command(spec, binary), stdin=subprocess.DEVNULL,
                                    stdout=errlog, stderr=errlog, start_new_session=True)
        limit = timeout or BOOT_TIMEOUT.get(timings.accel, 300.0)
        try:
            chan = Channel.connect(spec.agent_socket, t0 + limit)
            chan.ping(t0 + limit, alive=lambda: proc.poll() is None)
        except BaseException as err:
            qemu.stop(proc)  # whatever went wrong (Ctrl-C included), no qemu is left behind
            if not isinstance(err, (VMError, OSError)):
                shutil.rmtree(rundir, ignore_errors=True)
                raise
            why = (rundir / "qemu.stderr").read_text(errors="replace").strip()
            msg = (f"VM '{name}' did not become ready ({err}); qemu stderr: {why or '-'}\n"
                   f"last console lines:\n{_console_tail(spec.console_log)}")
            cls_ = BootTimeoutError if isinstance(err, TimeoutError) else VMError
            raise cls_(msg, hint=f"full console log: {spec.console_log}") from err
        timings.boot_seconds = time.monotonic() - t0
        if keep:
            state = {"pid": proc.pid, "socket": str(spec.agent_socket), "name": name,
                     "accel": timings.accel, "kernel": chan.kernel, "image": img.image_hash,
                     "boot_seconds": round(timings.boot_seconds, 1),
                     "marker": spec.name, "share": str(share) if share else None}
            (rundir / "state.json").write_text(json.dumps(state, indent=1))
        return cls(chan, proc.pid, rundir, timings, proc)

    def run(self, argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
            on_output: Output | None = None, capture: bool = False,
            timeout: float | None = None) -> RunResult:
        """Run ``argv`` in the guest (cwd defaults to the shared repo); exit status as is."""
        if not argv:
            raise errors.InvalidArgumentError("command", "empty", hint="labkit vm run -- <cmd>")
        out, err = bytearray(), bytearray()

        def sink(stream: int, chunk: bytes) -> None:
            if capture:
                (out if stream == 1 else err).extend(chunk)
            if on_output:
                on_output(stream, chunk)

        t0 = time.monotonic()
        code = self.channel.exec(list(argv), cwd=cwd or qemu.GUEST_REPO,
                                 env={**GUEST_ENV, **(env or {})}, on_output=sink,
                                 timeout=timeout)
        dt = time.monotonic() - t0
        self.timings.commands.append((" ".join(argv), code, dt))
        return RunResult(list(argv), code, dt, bytes(out), bytes(err))

    def stop(self) -> None:
        """Stop qemu (our pid only) and remove the run directory."""
        self.channel.close()
        if self.proc is not None:
            qemu.stop(self.proc)
        else:
            _kill_recorded(self.pid, f"labkit-vm-{self.rundir.name}")
        shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sweep_runs(run: Path, older_than: float = 600.0) -> None:
    """Remove run dirs left by VMs that failed or whose client died (kept for a while so the
    console log named in the error can still be read); never one with a live qemu."""
    now = time.time()
    for d in run.glob("*"):
        try:
            if now - d.stat().st_mtime < older_than or _alive_state(d) is not None:
                continue
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)


def _is_our_qemu(pid: int, marker: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(qemu.QEMU.encode()) and marker.encode() in cmd


def _kill_recorded(pid: int, marker: str) -> None:
    if not _is_our_qemu(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(30):
        if not _is_our_qemu(pid, marker):
            return
        time.sleep(0.1)
    if _is_our_qemu(pid, marker):
        os.kill(pid, signal.SIGKILL)
    try:  # reap it if it is our own child (up() in this process), so no zombie stays
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive_state(rundir: Path) -> dict[str, object] | None:
    try:
        state = json.loads((rundir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    ok = _is_our_qemu(int(state["pid"]), str(state["marker"]))
    return state if ok else None


def up(name: str = "default", **kw: object) -> VM:
    """Boot a VM that keeps running after this process exits (``labkit vm up``)."""
    vm = VM.boot(name=name, keep=True, **kw)  # type: ignore[arg-type]
    vm.proc = None  # not ours to wait for any more: destroy() stops it by recorded pid
    return vm


def attach(name: str = "default", timeout: float = 10.0) -> VM | None:
    """Reconnect to a kept VM, or None when none is running under ``name``.

    qemu's socket takes one client at a time: close the other VM handle's channel first.
    """
    rundir = cache_dir() / "run" / name
    state = _alive_state(rundir)
    if state is None:
        return None
    chan = Channel.connect(Path(str(state["socket"])), time.monotonic() + timeout)
    try:
        chan.ping(time.monotonic() + timeout)
    except BootTimeoutError as err:
        chan.close()
        raise BootTimeoutError(f"VM '{name}' is running but its agent did not answer",
                               hint="another client may hold the channel (one at a time)"
                               ) from err
    t = Timings(accel=str(state["accel"]), accel_why="kept VM",
                boot_seconds=0.0)
    return VM(chan, int(state["pid"]), rundir, t)  # type: ignore[call-overload]


def destroy(name: str = "default") -> bool:
    """Stop the kept VM ``name`` (its recorded qemu pid only); True if one was running."""
    rundir = cache_dir() / "run" / name
    state = _alive_state(rundir)
    if state is not None:
        _kill_recorded(int(state["pid"]), str(state["marker"]))  # type: ignore[call-overload]
    shutil.rmtree(rundir, ignore_errors=True)
    return state is not None


def status() -> dict[str, object]:
    """Image and VM state for ``labkit vm status`` and notebooks."""
    lay = Layout(cache_dir(), Recipe.current())
    img = _image.load(lay)
    running = [s for d in sorted((lay.run).glob("*")) if (s := _alive_state(d)) is not None]
    return {"cache": str(lay.root), "image_hash": lay.recipe.image_hash,
            "image_ready": img is not None,
            "image_build_seconds": img.build_seconds if img else None,
            "kernel": img.kernel_release if img else None,
            "base_ready": (lay.base / "rootfs/etc/labkit-kernel").exists(),
            "running": running, "python": sys.executable}
