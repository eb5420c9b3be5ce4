"""qemu-system-x86_64(1) command lines and the accelerator probe.

``command()`` is pure (a list of strings, unit-tested without qemu).  The accelerator is
chosen by *booting*: /dev/kvm can exist while KVM does not work (nested virtualisation
disabled, a sandbox that forbids it), and then qemu -accel kvm aborts or hangs.  So a short
probe boot with a time-out decides, and TCG (software emulation) is the fallback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from labkit import errors

QEMU = "qemu-system-x86_64"
AGENT_PORT = "org.labkit.agent"  # virtio-serial port name; agent.py looks for it
SHARE_TAG = "labkit"  # 9p mount tag; init.sh mounts it at /mnt/labkit
GUEST_REPO = "/mnt/labkit"
PROBE_TIMEOUT = 20.0


def qemu_binary() -> str:
    """The path of qemu-system-x86_64, or UnsupportedError saying how to install it."""
    path = shutil.which(QEMU)
    if path is None:
        raise errors.UnsupportedError(
            "qemu", f"{QEMU} not found on PATH",
            hint="apt-get install qemu-system-x86 (listed in scripts/debian-packages-vm.txt; "
                 "`make setup` installs it)")
    return path


@dataclass(frozen=True)
class BootSpec:
    """One VM boot: which image, how it is accelerated, what is shared, where it talks."""

    kernel: Path
    initrd: Path
    rootfs: Path
    agent_socket: Path
    console_log: Path
    name: str = "labkit-vm"
    accel: str = "tcg"
    memory_mb: int = 2048
    cpus: int = 2
    share: Path | None = None
    shell: bool = False  # serial console on stdio with a root shell (labkit vm shell)
    ephemeral: bool = False  # the guest powers off when the host closes the agent channel


def kernel_cmdline(spec: BootSpec) -> str:
    """The guest kernel's command line (kernel-parameters.rst)."""
    args = ["console=ttyS0", "root=/dev/vda", "rootfstype=ext4", "rw", "fsck.mode=skip",
            "init=/usr/local/sbin/labkit-init", "panic=-1", "quiet", "loglevel=4",
            "net.ifnames=0"]
    if spec.shell:
        args.append("labkit.shell=1")
    if spec.ephemeral:
        args.append("labkit.ephemeral=1")
    return " ".join(args)


def command(spec: BootSpec, qemu: str = QEMU) -> list[str]:
    """The qemu argv for ``spec``: direct kernel boot, a snapshot disk, no network at all."""
    cpu = "host" if spec.accel == "kvm" else "max"
    accel = "kvm" if spec.accel == "kvm" else "tcg,thread=multi"
    argv = [
        qemu, "-name", spec.name, "-machine", "q35", "-accel", accel, "-cpu", cpu,
        "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", str(spec.kernel), "-initrd", str(spec.initrd),
        "-append", kernel_cmdline(spec),
        # snapshot=on: the guest's writes go to a temporary overlay qemu deletes on exit,
        # so every boot starts from the same pristine image (a disposable kernel).
        "-drive", f"file={spec.rootfs},format=raw,if=virtio,snapshot=on",
        # No NIC: the tests need no network, and the VM can reach nothing.
        "-nic", "none",
        "-chardev", f"socket,id=agent,path={spec.agent_socket},server=on,wait=off",
        "-device", "virtio-serial-pci",
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
    ]
    if spec.shell:
        argv += ["-serial", "mon:stdio"]
    else:
        argv += ["-serial", f"file:{spec.console_log}", "-monitor", "none"]
    if spec.share is not None:
        argv += ["-virtfs", (f"local,path={spec.share},mount_tag={SHARE_TAG},"
                            "security_model=passthrough,id=labkit")]
    return argv


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """End a qemu we started (its pid only): SIGTERM, then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _qemu_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "?"


def probe_kvm(kernel: Path, qemu: str, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM with no root disk: it panics and, with -no-reboot, qemu
    exits.  True when that happens in time with the kernel's banner on the console."""
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm"
    with tempfile.TemporaryDirectory(prefix="lk-vm-probe-") as tmp:
        log = Path(tmp) / "console.log"
        argv = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
                "-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none",
                "-serial", f"file:{log}", "-kernel", str(kernel),
                "-append", "console=ttyS0 panic=-1 root=/dev/null"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc)
            return False, f"kvm probe boot did not finish in {timeout:.0f} s"
        banner = log.exists() and "Linux version" in log.read_text(errors="replace")
        if proc.returncode == 0 and banner:
            return True, "kvm probe boot reached the kernel"
        # qemu's own complaint goes to the log of the probe (accel.json), not the table.
        why = err.decode(errors="replace").strip().splitlines()
        return False, f"kvm probe boot failed (exit {proc.returncode}): {why[-1] if why else '-'}"


def choose_accel(kernel: Path, cache: Path, qemu: str) -> tuple[str, str]:
    """'kvm' or 'tcg' and a short why (the probe's details are in accel.json).  $LABKIT_VM_ACCEL overrides; a probe result is cached per
    (host kernel, qemu version) in ``cache/accel.json`` so only the first boot pays for it."""
    forced = os.environ.get("LABKIT_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, "LABKIT_VM_ACCEL"
    key = f"{os.uname().release}|{_qemu_version(qemu)}"
    path = cache / "accel.json"
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return str(saved["accel"]), f"{saved['short']} (probed earlier)"
    except (OSError, ValueError, KeyError):
        pass
    t0 = time.monotonic()
    ok, why = probe_kvm(kernel, qemu)
    accel = "kvm" if ok else "tcg"
    short = "KVM works" if ok else "KVM probe failed, using TCG"
    try:
        path.write_text(json.dumps({"key": key, "accel": accel, "short": short, "why": why,
                                    "probe_seconds": round(time.monotonic() - t0, 1)}))
    except OSError:
        pass
    return accel, short
