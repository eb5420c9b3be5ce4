"""Build and cache the VM image: debootstrap(8) a Debian 12 root, provision it in a chroot,
and pack it with mkfs.ext4 -d (mke2fs(8): populate from a directory, so no loop mount).

Atomic by construction: each stage is built under ``.tmp-*`` and renamed into place only
when complete; a flock(2) on ``.lock`` serialises concurrent builds from several clones.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labkit import errors
from labkit.vm._errors import NoSpaceError, VMError
from labkit.vm.recipe import (
    HERE,
    SUITE,
    Layout,
    Recipe,
    cache_dir,
    host_mirror,
    host_security_mirror,
)

# Free space a cold build needs: ~1.8 GiB rootfs + the same again as the ext4 image.
NEED_BYTES = 5 * 1024**3
# Stages shown as progress; provision.sh prints "### <step>" markers for its part.
STEPS = ("debootstrap", "wheels", "packages", "venv", "trim", "image")
Progress = Callable[[str, int, int], None]  # (step, index, total)


@dataclass(frozen=True)
class Image:
    """A built image: what qemu boots (direct kernel boot) and how long it took to build."""

    path: Path
    kernel: Path
    initrd: Path
    rootfs: Path
    kernel_release: str
    image_hash: str
    build_seconds: float  # when it was built (cold)
    cached: bool  # True when this call found it ready-made
    seconds: float  # what this call took
    stage: str = "cached"  # what this call built: "cached", "image" (base reused) or "cold"


def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise errors.UnsupportedError(
            tool, "not installed", hint=f"apt-get install {package} (or: make setup)")


def check_space(where: Path, need: int = NEED_BYTES) -> None:
    """Raise NoSpaceError when ``where`` has less than ``need`` bytes free (statvfs(3))."""
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise NoSpaceError(
            f"no space for the VM image: {free / 1024**3:.1f} GiB free under {where}, "
            f"need {need / 1024**3:.1f} GiB",
            hint="free some space, or point LABKIT_VM_CACHE at a bigger disk")


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# The chroot gets a clean environment: none of the host's PIP_*/proxy settings leak in.
_CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"}


def _run_logged(argv: list[str], log: Path, on_line: Callable[[str], None] | None = None,
                env: dict[str, str] | None = None) -> None:
    """Run ``argv``, appending its output to ``log``; raise VMError with the log's tail."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                if on_line:
                    on_line(line.rstrip("\n"))
        except BaseException:  # Ctrl-C, a failing progress callback: stop the step too
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
        if "No space left on device" in tail:
            raise NoSpaceError(f"the disk filled up while building the VM image:\n{tail}",
                               hint="free space or set LABKIT_VM_CACHE; nothing half-built is kept")
        raise VMError(f"{argv[0]} failed (exit {rc}); last lines of {log}:\n{tail}",
                      hint="re-run `labkit vm build`; the half-built stage was discarded")


def _sources(mirror: str, security: str | None) -> str:
    """sources.list(5) for the image: the host's own mirrors (the only ones reachable)."""
    text = f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
    return text + (f"deb {security} {SUITE}-security main\n" if security else "")


def _build_base(lay: Layout, progress: Progress) -> None:
    """debootstrap + provision.sh into ``base-<hash>/rootfs`` (atomic rename at the end)."""
    tmp = lay.root / f".tmp-base-{lay.recipe.base_hash}-{os.getpid()}"
    rootfs = tmp / "rootfs"
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        progress("debootstrap", 0, len(STEPS))
        mirror = host_mirror()
        _run_logged(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], lay.log)
        (rootfs / "etc/apt/sources.list").write_text(_sources(mirror, host_security_mirror()))
        shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        # policy-rc.d(8 of invoke-rc.d): no service may start inside the build chroot.
        rc_d = rootfs / "usr/sbin/policy-rc.d"
        rc_d.write_text("#!/bin/sh\nexit 101\n")
        rc_d.chmod(0o755)
        shutil.copyfile(HERE / "provision.sh", rootfs / "tmp/provision.sh")
        progress("wheels", STEPS.index("wheels"), len(STEPS))
        # Wheels are fetched by the host's own pip (its index, proxy and CA settings work;
        # the chroot's would not), then installed offline inside: same Python 3.11, same glibc.
        _run_logged([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                     "-d", str(rootfs / "tmp/wheels"), *lay.recipe.requirements], lay.log)

        def on_line(line: str) -> None:
            if line.startswith("### ") and line[4:] in STEPS:
                progress(line[4:], STEPS.index(line[4:]), len(STEPS))

        # Private mount and PID namespaces (unshare(1)): /proc, /sys and /dev for the chroot
        # vanish with them, and if the build is stopped, --kill-child kills the namespace's
        # init and with it every apt/dpkg inside (pid_namespaces(7)); nothing lingers.
        script = (f'R={rootfs}; mount -t proc proc $R/proc && mount -t sysfs sys $R/sys && '
                  f'mount --rbind /dev $R/dev && exec chroot $R /bin/sh /tmp/provision.sh "$0" "$1"')
        reqs = " ".join(lay.recipe.requirements)
        _run_logged(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                     "--kill-child", "sh", "-c",
                     script, reqs, " ".join(lay.recipe.packages)], lay.log, on_line,
                    env=_CHROOT_ENV)
        rc_d.unlink()
        (rootfs / "tmp/provision.sh").unlink()
        (tmp / "stamp.json").write_text(json.dumps(
            {"base_hash": lay.recipe.base_hash, "seconds": round(time.monotonic() - t0, 1)}))
        os.rename(tmp, lay.base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _base_seconds(lay: Layout) -> float:
    try:
        return float(json.loads((lay.base / "stamp.json").read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return 0.0


def _build_image(lay: Layout, progress: Progress, t0: float) -> None:
    """Install agent + PID 1 into the base rootfs and pack it as ext4 (atomic rename)."""
    progress("image", STEPS.index("image"), len(STEPS))
    rootfs = lay.base / "rootfs"
    (rootfs / "usr/local/lib/labkit").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "agent.py", rootfs / "usr/local/lib/labkit/agent.py")
    init = rootfs / "usr/local/sbin/labkit-init"
    shutil.copyfile(HERE / "init.sh", init)
    init.chmod(0o755)
    kver = (rootfs / "etc/labkit-kernel").read_text().strip()
    tmp = lay.image.parent / f".tmp-{lay.recipe.image_hash}-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        shutil.copyfile(rootfs / f"boot/vmlinuz-{kver}", tmp / "vmlinuz")
        shutil.copyfile(rootfs / f"boot/initrd.img-{kver}", tmp / "initrd.img")
        used = int(subprocess.run(["du", "-sb", str(rootfs)], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        # Room for the tests' own files; the disk is booted with snapshot=on anyway.
        size_mb = int(used * 1.25 / 1024**2) + 1024
        _run_logged(["mkfs.ext4", "-q", "-F", "-L", "labkit-vm", "-E", "root_owner=0:0",
                     "-d", str(rootfs), str(tmp / "rootfs.ext4"), f"{size_mb}M"], lay.log)
        # build_seconds is what a cold build of this image costs: both stages.
        base_seconds = _base_seconds(lay)
        stamp = {"image_hash": lay.recipe.image_hash, "base_hash": lay.recipe.base_hash,
                 "kernel_release": kver, "base_seconds": base_seconds,
                 "image_seconds": round(time.monotonic() - t0, 1),
                 "build_seconds": round(time.monotonic() - t0 + base_seconds, 1),
                 "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(tmp / "stamp.json", "w") as f:
            json.dump(stamp, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, lay.image)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(lay: Layout, *, cached: bool = True, seconds: float = 0.0) -> Image | None:
    """The image of ``lay`` if it is complete (its stamp exists), else None."""
    try:
        stamp = json.loads((lay.image / "stamp.json").read_text())
    except (OSError, ValueError):
        return None
    return Image(path=lay.image, kernel=lay.image / "vmlinuz", initrd=lay.image / "initrd.img",
                 rootfs=lay.image / "rootfs.ext4", kernel_release=stamp["kernel_release"],
                 image_hash=stamp["image_hash"], build_seconds=float(stamp["build_seconds"]),
                 cached=cached, seconds=seconds)


def _sweep(root: Path) -> None:
    """Remove half-built stages left by an interrupted build (we hold the lock)."""
    for d in [*root.glob(".tmp-*"), *(root / "images").glob(".tmp-*")]:
        shutil.rmtree(d, ignore_errors=True)


def _prune(lay: Layout) -> None:
    """Drop stages of older recipes (a changed pyproject.toml or provision.sh): they would
    only fill the disk.  A VM still running from one keeps its open files (unlink(2))."""
    for d in lay.root.glob("base-*"):
        if d != lay.base:
            shutil.rmtree(d, ignore_errors=True)
    for d in (lay.root / "images").iterdir():
        if d != lay.image:
            shutil.rmtree(d, ignore_errors=True)


def build(root: Path | None = None, *, progress: Progress | None = None,
          rebuild: bool = False) -> Image:
    """Build the VM image for the current recipe, or return the cached one.

    Raises UnsupportedError (debootstrap/mkfs.ext4 missing), NoSpaceError, VMError.
    """
    t0 = time.monotonic()
    lay = Layout(root or cache_dir(), Recipe.current())
    report: Progress = progress or (lambda step, i, n: None)
    if not rebuild and (img := load(lay, seconds=time.monotonic() - t0)) is not None:
        return img
    if os.geteuid() != 0:
        raise errors.UnsupportedError("labkit vm build", "needs root (debootstrap, chroot)",
                                      hint="run as root, or use vagrant/ on your own machine")
    for tool, pkg in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"),
                      ("unshare", "util-linux"), ("chroot", "coreutils")):
        _need(tool, pkg)
    with _locked(lay.root):
        _sweep(lay.root)
        (lay.root / "images").mkdir(exist_ok=True)
        if not rebuild and (img := load(lay)) is not None:  # another clone built it meanwhile
            return Image(**{**img.__dict__, "seconds": time.monotonic() - t0})
        if rebuild:
            shutil.rmtree(lay.image, ignore_errors=True)
        base_seconds = 0.0
        if rebuild or not (lay.base / "rootfs/etc/labkit-kernel").exists():
            shutil.rmtree(lay.base, ignore_errors=True)
            check_space(lay.root)
            lay.log.write_text("")
            _build_base(lay, report)
            base_seconds = time.monotonic() - t0
        else:
            check_space(lay.root, NEED_BYTES // 2)
        _build_image(lay, report, time.monotonic())
        _prune(lay)
    img = load(lay, cached=False, seconds=time.monotonic() - t0)
    assert img is not None
    return Image(**{**img.__dict__, "stage": "cold" if base_seconds else "image"})


def clean(root: Path | None = None) -> None:
    """Remove every cached stage and image (``make vm-clean``)."""
    shutil.rmtree(root or cache_dir(), ignore_errors=True)
