"""labkit bench images: build (cold, cached) and push + pull, labkit's daemon beside dockerd.

One run starts, side by side and inside one network namespace made here (``lk-bench-<pid>``):

* dockerd (Debian's docker.io), state in a temp dir, ``--bridge=none --iptables=false``
  (labkit.measure.peer_daemons.Dockerd: nsenter --net, stopped by pid, netns deleted,
  mounts under its dir unmounted);
* labkit's daemon (labkit.measure.sandbox.LabEngine with ``netns=``);
* a real registry (Debian's docker-registry, labkit.measure.registry.LocalRegistry) on that
  netns's 127.0.0.1:5000, so both daemons push to and pull from the same address.

Both are driven by the same Docker CLI (labkit.measure.peers.docker_cli) with the same argv;
only DOCKER_HOST (and a DOCKER_CONFIG of each one's own) differs.  Every sample is the
wall time of one CLI process, fork to exit (time.perf_counter_ns).  Operations:

* ``build cold``: ``docker build --no-cache -t lkbench/build`` of a three-step Dockerfile
  (FROM busybox, RUN writing a file, COPY a small file from the context) after removing the
  previous result; ``build cached``: the same build again (every step a cache hit; the hits
  seen in the CLI's output are put in the note).  DOCKER_BUILDKIT=0 for both daemons: the
  classic builder (POST /build) on each, so the comparison is like for like.
* ``push``: a ~5 MiB image (labkit's busybox layer plus one layer holding 5 MiB of bytes from
  a seeded PRNG, written here as a docker-archive and ``docker load``-ed into each daemon) to a
  registry started empty for that push, under a new repository name per round, so no blob is
  already there and nothing can be cross-mounted.
* ``pull``: the pushed image back after removing it and busybox (so no layer is present
  locally; the layers fetched are counted from the CLI's output into the note).
* ``re-pull (layers present)``: the same pull again while the image is present.

Both daemons start from the identical busybox image: labkit's built-in one, ``docker save``-d
from labkit and ``docker load``-ed into dockerd.  Rounds interleave the daemons (the first one
rotates each round; warm-up rounds are dropped).  An operation a daemon cannot do is a row
"cannot run: <the daemon's error message as the CLI printed it>", never a figure.  If one
daemon's push fails, its pull is tried against the same image pushed by the other daemon
(said in the note), so a daemon that can pull but not push still gets pull figures.
The issue's target, labkit no slower than dockerd on each operation (ratio of medians
labkit/dockerd <= 1), is reported per row, never asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.measure.bench_images_report import (
    BUILD_OPS,
    CSV_HEADER,
    DAEMONS,
    OPS,
    PUSH_PULL_OPS,
    ImageRow,
    ImageTarget,
    cli_error,
    p95,
    print_table,
    render_table,
    targets,
    to_csv,
    to_json,
    write_png,
)
from labkit.measure.payload_image import PAYLOAD_REF, write_payload_archive
from labkit.measure.peer_daemons import Dockerd

__all__ = [
    "CSV_HEADER",
    "DAEMONS",
    "ONLY",
    "OPS",
    "PAYLOAD_REF",
    "ImageRow",
    "ImageTarget",
    "cli_error",
    "p95",
    "print_table",
    "render_table",
    "run",
    "steps",
    "targets",
    "to_csv",
    "to_json",
    "write_payload_archive",
    "write_png",
]

ONLY = {"build": BUILD_OPS, "push-pull": PUSH_PULL_OPS}
BUILD_REF = "lkbench/build:latest"
REGISTRY = "127.0.0.1:5000"
DOCKERFILE = ("FROM busybox\n"
              "RUN dd if=/dev/urandom of=/made.bin bs=1024 count=64 2>/dev/null"
              " && echo built > /made.txt\n"
              "COPY hello.txt /hello.txt\n")
CLI_TIMEOUT = 300.0


@dataclass
class _Side:
    """One daemon as the Docker CLI sees it."""

    name: str
    env: dict[str, str]
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class _SetUpFailed(errors.LabkitError):
    """An untimed step of a round failed: the round's remaining operations cannot run."""


@dataclass(frozen=True, slots=True)
class _Result:
    ok: bool
    ms: float
    out: str
    err: str


class _Harness:
    def __init__(self, cli: str, tmp: Path, netns: str) -> None:
        self.cli, self.tmp, self.netns = cli, tmp, netns
        self.registry: Any = None

    def docker(self, side: _Side, *args: str) -> _Result:
        t0 = time.perf_counter_ns()
        p = subprocess.run([self.cli, *args], env=side.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, check=False, timeout=CLI_TIMEOUT)
        ms = (time.perf_counter_ns() - t0) / 1e6
        return _Result(p.returncode == 0, ms, p.stdout, p.stderr)

    def must(self, side: _Side, *args: str) -> _Result:
        """An untimed set-up step that has to work (load, tag, rmi, save): _SetUpFailed if not."""
        r = self.docker(side, *args)
        if not r.ok:
            raise _SetUpFailed(f"set-up `docker {args[0]}` failed: "
                               f"{cli_error(r.err)}")
        return r

    def fresh_registry(self) -> None:
        """Stop the registry (its storage goes with it) and start an empty one on the same
        address: a push never finds a blob already there."""
        from labkit.measure.registry import LocalRegistry

        if self.registry is not None:
            self.registry.stop()
            self.registry = None
        self.registry = LocalRegistry(netns=self.netns, port=5000).start()

    def stop(self) -> None:
        if self.registry is not None:
            self.registry.stop()
            self.registry = None


def _timed(h: _Harness, side: _Side, op: str, record: bool, *args: str) -> _Result | None:
    """Run one timed CLI call unless ``op`` already failed on this side; keep the sample (or
    the first error)."""
    if op in side.errors:
        return None
    r = h.docker(side, *args)
    if not r.ok:
        side.errors[op] = cli_error(r.err)
        return None
    if record:
        side.samples.setdefault(op, []).append(r.ms)
    return r


def _build_round(h: _Harness, side: _Side, ctx: Path, record: bool) -> None:
    h.docker(side, "rmi", "-f", BUILD_REF)  # the previous round's result; absent is fine
    _timed(h, side, "build cold", record, "build", "--no-cache", "-t", BUILD_REF, str(ctx))
    r = _timed(h, side, "build cached", record, "build", "-t", BUILD_REF, str(ctx))
    if r is not None:
        hits = len(re.findall(r"Using cache", r.out))
        _note(side, "build cached", f"cache hits {hits}/{DOCKERFILE.count(chr(10)) - 1}")


def _note(side: _Side, op: str, note: str) -> None:
    """Keep each distinct note once (the same note every round is said once)."""
    if note and note not in side.notes.get(op, "").split(" | "):
        side.notes[op] = " | ".join(x for x in (side.notes.get(op), note) if x)


def _layers_fetched(out: str) -> tuple[int, int]:
    """(layers fetched, layers) from `docker pull`'s plain output: "<id>: Pull complete" for
    a fetched layer, "<id>: Already exists" for one that was present."""
    done = len(set(re.findall(r"^(\w+): Pull complete", out, re.MULTILINE)))
    there = len(set(re.findall(r"^(\w+): Already exists", out, re.MULTILINE)))
    return done, done + there


def _layers_pushed(out: str) -> tuple[int, int]:
    """(layers sent, layers) from `docker push`'s plain output: "<id>: Pushed" for a layer
    uploaded, "Layer already exists" / "Mounted from <repo>" for one the registry had."""
    sent = len(set(re.findall(r"^(\w+): Pushed", out, re.MULTILINE)))
    skipped = len(set(re.findall(r"^(\w+): (?:Layer already exists|Mounted from)", out,
                                 re.MULTILINE)))
    return sent, sent + skipped


def _push_pull_round(h: _Harness, side: _Side, other: _Side, files: dict[str, Path],
                     rnd: int, record: bool) -> None:
    """push, pull, re-pull on ``side``; a failed set-up step becomes the reason of every
    operation still without one (a row, not a crash), and busybox is put back either way."""
    try:
        _push_pull(h, side, other, files, rnd, record)
    except _SetUpFailed as err:
        for op in PUSH_PULL_OPS:
            side.errors.setdefault(op, str(err))
    finally:
        r = h.docker(side, "load", "-q", "-i", str(files["busybox"]))  # for the next build
        if not r.ok:
            for op in BUILD_OPS:
                side.errors.setdefault(op, f"set-up `docker load` of busybox failed: "
                                           f"{cli_error(r.err)}")


def _push_pull(h: _Harness, side: _Side, other: _Side, files: dict[str, Path], rnd: int,
               record: bool) -> None:
    ref = f"{REGISTRY}/lkbench/payload-{side.name}-{rnd}:latest"
    h.fresh_registry()
    h.must(side, "load", "-q", "-i", str(files["payload"]))
    h.must(side, "tag", PAYLOAD_REF, ref)
    r1 = _timed(h, side, "push", record, "push", ref)
    pushed, seeded = r1 is not None, ""
    if r1 is not None:
        sent, total = _layers_pushed(r1.out)
        _note(side, "push", f"layers pushed {sent}/{total}" if total else "")
    if not pushed:
        # pull on its own: the same image pushed by the other daemon, when it can
        r = h.docker(other, "load", "-q", "-i", str(files["payload"]))
        if r.ok:
            r = h.docker(other, "tag", PAYLOAD_REF, ref)
        if r.ok:
            r = h.docker(other, "push", ref)
            h.docker(other, "rmi", ref)
        if not r.ok:
            side.errors.setdefault("pull", f"nothing to pull: {side.name}'s push failed and "
                                           f"{other.name}'s too ({cli_error(r.err)})")
        else:
            seeded = f"image pushed by {other.name} ({side.name}'s push failed)"
    # no layer of the image present locally: the image, its tag, busybox (its base) and the
    # build's result (whose chain starts with busybox's layer) all go
    h.docker(side, "rmi", "-f", BUILD_REF)
    h.must(side, "rmi", ref, PAYLOAD_REF, "busybox:latest")
    r2 = _timed(h, side, "pull", record, "pull", ref)
    if r2 is not None:
        got, total = _layers_fetched(r2.out)
        fetched = f"layers fetched {got}/{total}" if total else ""
        _note(side, "pull", "; ".join(x for x in (seeded, fetched) if x))
        _timed(h, side, "re-pull (layers present)", record, "pull", ref)
        h.docker(side, "rmi", ref)
    else:
        _note(side, "pull", seeded)
        side.errors.setdefault("re-pull (layers present)", "needs the pull above")


def _context(tmp: Path) -> Path:
    ctx = tmp / "context"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("hello from labkit bench images\n")
    return ctx


def run(runs: int = 5, warmup: int = 1, *, only: str | None = None,
        progress: Callable[[str], None] | None = None) -> list[ImageRow]:
    """Start dockerd, a registry and labkit's daemon in one netns, time every operation on
    both, interleaved round-robin, stop everything; one ImageRow per (operation, daemon).

    Raises:
        InvalidArgumentError: runs < 1, warmup < 0 or an unknown ``only``.
        UnsupportedError: no Docker CLI, no dockerd, or no docker-registry.
    """
    if runs < 1 or warmup < 0:
        raise errors.InvalidArgumentError("runs/warmup", f"{runs}/{warmup}: need runs >= 1, "
                                          "warmup >= 0")
    if only is not None and only not in ONLY:
        raise errors.InvalidArgumentError("only", f"{only!r}: one of {', '.join(ONLY)}")
    from labkit.measure.peers import docker_cli
    from labkit.measure.registry import registry_binary
    from labkit.measure.sandbox import LabEngine

    cli = docker_cli()
    if shutil.which("dockerd") is None:
        raise errors.UnsupportedError("dockerd", "not installed",
                                      hint="labkit/measure/install-docker-io.sh (Debian's "
                                           "docker.io; starts no daemon)")
    registry_binary()
    ops = ONLY[only] if only else OPS
    tmp = Path(tempfile.mkdtemp(prefix="lk-bimg-"))
    dockerd = Dockerd(tmp)
    engine: LabEngine | None = None
    h = _Harness(cli, tmp, dockerd.netns)
    try:
        dockerd.start()
        engine = LabEngine("bi", netns=dockerd.netns)
        engine.start()
        base = {"DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}
        lab = _Side("labkit", dict(engine.docker_env, **base))
        dk = _Side("dockerd", dict(os.environ, DOCKER_HOST=f"unix://{dockerd.sock}",
                                   DOCKER_CONFIG=str(tmp / "docker-config-dockerd"), **base))
        files = {"busybox": tmp / "busybox.tar", "payload": tmp / "payload.tar"}
        h.must(lab, "save", "-o", str(files["busybox"]), "busybox:latest")
        h.must(dk, "load", "-q", "-i", str(files["busybox"]))
        write_payload_archive(files["busybox"], files["payload"])
        ctx = _context(tmp)
        sides = [lab, dk]
        for i in range(warmup + runs):
            order = sides[i % 2:] + sides[:i % 2]
            record = i >= warmup
            if "build cold" in ops:
                for s in order:
                    _build_round(h, s, ctx, record)
                    if progress is not None:
                        progress(f"build, {s.name}, round {i + 1}")
            if "push" in ops:
                for s in order:
                    _push_pull_round(h, s, order[1] if s is order[0] else order[0], files,
                                     i, record)
                    if progress is not None:
                        progress(f"push-pull, {s.name}, round {i + 1}")
        return [ImageRow(op, s.name, tuple(s.samples.get(op, ())), s.errors.get(op),
                         s.notes.get(op, "")) for op in ops for s in sides]
    finally:
        h.stop()
        if engine is not None:
            engine.stop()
        dockerd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def steps(runs: int, warmup: int, only: str | None) -> int:
    """How many progress() calls run() makes: for a progress bar's total."""
    phases = 2 if only is None else 1
    return (runs + warmup) * phases * len(DAEMONS)
