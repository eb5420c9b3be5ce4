"""`labkit image bootstrap busybox|debian`: base images with no registry.

The root filesystem is built here (busybox.build_rootfs, or debootstrap + debian.clean_rootfs),
packed as one layer tar (diff.write_layer) and sent to the daemon as ``docker import`` sends
a tar: ``POST /images/create?fromSrc=-``, streamed.  Why the daemon API rather than writing
the store directly: the daemon owns the store and its layout (the same import path checks
the tar with apply_layer and publishes it atomically); the command works against any daemon
(a LabEngine sandbox has its own LABKIT_ROOT); and the new image is the daemon's at once, with
the same ID and history a `docker import` of that tar would give.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from labkit import errors
from labkit.engine.client import Client

__all__ = ["DEFAULT_TAGS", "add_arguments", "bootstrap"]

err = Console(stderr=True)
DEFAULT_TAGS = {"busybox": "busybox:static", "debian": "debian:{suite}"}
_WORK = Path("/var/tmp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=("busybox", "debian"), help="which base image to build")
    p.add_argument("-t", "--tag", help="image name[:tag] (default busybox:static, "
                   "debian:SUITE)")
    p.add_argument("--force", action="store_true", help="move the tag if it exists already")
    p.add_argument("--suite", default=None, help="debian: the suite (default bookworm)")
    p.add_argument("--mirror", default=None,
                   help="debian: the mirror URL (default: the host's apt sources)")
    p.add_argument("--cache-dir", default=None, type=Path,
                   help="debian: where the .debs are kept (default /var/cache/labkit/debootstrap)")


class _Bytes(DownloadColumn):
    """Sizes only for the tasks that count bytes (the upload); phases show none."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


class _Speed(TransferSpeedColumn):
    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


@contextmanager
def _bar() -> Iterator[Progress]:
    bar = Progress(SpinnerColumn(), TextColumn("[bold blue]{task.fields[phase]:<12}[/] "
                                               "{task.description}"),
                   BarColumn(), _Bytes(), _Speed(), TimeElapsedColumn(),
                   console=err, transient=False)
    with bar:
        yield bar


def _done(bar: Progress, task: TaskID, text: str) -> None:
    bar.update(task, description=f"[green]done[/] {text}", completed=1, total=1)


def _debian_rootfs(bar: Progress, dest: Path, suite: str, mirror: str | None,
                   cache: Path | None) -> str:
    from labkit.engine.images import debian

    mirror = mirror or debian.default_mirror(suite)
    debian.check_args(suite, mirror)
    task = bar.add_task(f"{suite} from {mirror}", total=None, phase="debootstrap")
    counts: dict[str, int] = {}

    def on_line(line: str) -> None:
        ph = debian.phase_of(line)
        if ph is None:
            return
        counts[ph.name] = counts.get(ph.name, 0) + 1
        bar.update(task, phase=ph.name, description=f"{ph.detail[:50]} "
                   f"[dim]({counts[ph.name]} {ph.name})[/]")

    debian.debootstrap(dest, suite=suite, mirror=mirror, on_line=on_line,
                       cache=cache or debian.CACHE_DIR)
    _done(bar, task, f"debootstrap {suite}: " + ", ".join(
        f"{n} {k}" for k, n in counts.items() if k in ("retrieving", "extracting",
                                                        "configuring")))
    task = bar.add_task("apt lists, logs, machine-id, /dev; policy-rc.d", total=None,
                        phase="cleaning")
    debian.clean_rootfs(dest)
    _done(bar, task, "as Docker's debian images")
    return mirror


def bootstrap(client: Client, kind: str, tag: str | None = None, *, force: bool = False,
              suite: str | None = None, mirror: str | None = None,
              cache: Path | None = None) -> tuple[str, str]:
    """Build the ``kind`` base image and import it as ``tag``; returns (ID, tag).

    Refuses (AlreadyExistsError) a tag that names an image already, unless ``force``.
    """
    from labkit.engine.images import busybox, diff
    from labkit.engine.images.store import normalize_ref

    if kind == "busybox" and (suite or mirror or cache):
        raise errors.InvalidArgumentError(
            "options", "--suite, --mirror and --cache-dir are for debian, not busybox")
    suite = suite or "bookworm"
    ref = normalize_ref(tag or DEFAULT_TAGS[kind].format(suite=suite))
    try:
        client.images.inspect(ref)
        if not force:
            raise errors.AlreadyExistsError("image", ref,
                                            hint="--force moves the tag to the new image")
    except errors.NotFoundError:
        pass
    _WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lk-bootstrap-", dir=_WORK) as tmp, _bar() as bar:
        root = Path(tmp) / "rootfs"
        if kind == "busybox":
            task = bar.add_task(f"from {busybox.BUSYBOX}", total=None, phase="rootfs")
            busybox.build_rootfs(root)
            _done(bar, task, f"{len(busybox.applets())} applet links")
            changes, message = ['CMD ["sh"]'], f"labkit image bootstrap busybox ({busybox.BUSYBOX})"
        else:
            used = _debian_rootfs(bar, root, suite, mirror, cache)
            changes = ['CMD ["bash"]']
            message = f"labkit image bootstrap debian {suite} (debootstrap minbase, {used})"
        task = bar.add_task("one layer tar", total=None, phase="packing")
        blob = Path(tmp) / "rootfs.tar"
        # Timestamps kept for debian (dpkg and apt read them); busybox's are zeroed so the
        # same host busybox always gives the same layer (diff_id).
        digests = diff.write_layer(root, blob, compression="none",
                                   mtime=0 if kind == "busybox" else None)
        size = os.stat(blob).st_size
        _done(bar, task, f"{digests.diff_id[:19]}")
        task = bar.add_task(f"to the daemon as {ref}", total=size, phase="importing",
                            bytes=True)
        iid = client.images.import_file(blob, ref, changes=changes, message=message,
                                        on_sent=lambda n: bar.advance(task, n))
        bar.update(task, description=f"[green]done[/] {ref}")
    return iid, ref


def run_bootstrap(client: Client, args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise errors.UnsupportedError("labkit image bootstrap", "needs root (files owned by "
                                      "root, device-free rootfs, debootstrap)",
                                      hint="run it as root")
    iid, ref = bootstrap(client, args.kind, args.tag, force=args.force, suite=args.suite,
                         mirror=args.mirror, cache=args.cache_dir)
    print(iid)
    err.print(f"[green]bootstrapped[/] {ref}", highlight=False)
    sys.stdout.flush()
    return 0
