"""labkit bench images: build (cold, cached) and push + pull, labkit's daemon beside dockerd.

One run starts, side by side and inside one network namespace made here (``lk-bench-<pid>``):

* dockerd (Debian's docker.io), state in a temp dir, ``--bridge=none --iptables=false``
  (labkit.measure.bench_engine's _Dockerd: nsenter --net, stopped by pid, netns deleted,
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

import csv
import hashlib
import io
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = [
    "DAEMONS",
    "ONLY",
    "OPS",
    "ImageRow",
    "ImageTarget",
    "p95",
    "print_table",
    "render_table",
    "run",
    "targets",
    "to_csv",
    "to_json",
    "write_payload_archive",
    "write_png",
]

DAEMONS = ("labkit", "dockerd")
BUILD_OPS = ("build cold", "build cached")
PUSH_PULL_OPS = ("push", "pull", "re-pull (layers present)")
OPS = BUILD_OPS + PUSH_PULL_OPS
ONLY = {"build": BUILD_OPS, "push-pull": PUSH_PULL_OPS}

BUILD_REF = "lkbench/build:latest"
PAYLOAD_REF = "lkbench/payload:latest"
PAYLOAD_BYTES = 5 * 1024 * 1024
PAYLOAD_SEED = 9
REGISTRY = "127.0.0.1:5000"
DOCKERFILE = ("FROM busybox\n"
              "RUN dd if=/dev/urandom of=/made.bin bs=1024 count=64 2>/dev/null"
              " && echo built > /made.txt\n"
              "COPY hello.txt /hello.txt\n")
CLI_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class ImageRow:
    """One (operation, daemon) pair: its samples in ms, or why it could not run."""

    op: str
    daemon: str
    samples_ms: tuple[float, ...] = ()
    error: str | None = None  # the daemon's error message: "cannot run: ..." in the table
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms and not self.error \
            else None

    @property
    def p95_ms(self) -> float | None:
        return p95(self.samples_ms) if self.samples_ms and not self.error else None

    @property
    def status(self) -> str:
        if self.error is not None:
            return f"cannot run: {self.error}"
        return "ok" if self.samples_ms else "not run"

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "daemon": self.daemon, "status": self.status, "n": self.n,
                "median_ms": self.median_ms, "p95_ms": self.p95_ms,
                "samples_ms": list(self.samples_ms), "error": self.error, "note": self.note}


@dataclass(frozen=True, slots=True)
class ImageTarget:
    """The issue's target for one operation: labkit's median no more than dockerd's."""

    op: str
    ratio: float | None  # labkit median / dockerd median; None: one side has no figure
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "ratio_labkit_over_dockerd": self.ratio, "goal": "<= 1.0",
                "met": self.met}


def p95(samples: Iterable[float]) -> float:
    """The 95th percentile, linear interpolation between closest ranks (statistics.quantiles'
    "inclusive" method, so it stays within the samples; one sample is its own p95)."""
    xs = sorted(samples)
    if not xs:
        raise errors.InvalidArgumentError("p95", "no samples")
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=20, method="inclusive")[18]


def targets(rows: list[ImageRow]) -> list[ImageTarget]:
    """Per operation, in OPS order: the ratio of medians labkit/dockerd and whether <= 1."""
    med = {(r.op, r.daemon): r.median_ms for r in rows}
    out = []
    for op in OPS:
        if (op, "labkit") not in med and (op, "dockerd") not in med:
            continue
        lab, dk = med.get((op, "labkit")), med.get((op, "dockerd"))
        ratio = lab / dk if lab is not None and dk else None
        out.append(ImageTarget(op, ratio, None if ratio is None else ratio <= 1.0))
    return out


def _met(t: ImageTarget | None) -> str:
    if t is None or t.met is None:
        return "-"
    return "met" if t.met else "not met"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def to_json(rows: list[ImageRow], goals: list[ImageTarget], *, runs: int, warmup: int) -> str:
    return json.dumps({"runs": runs, "warmup": warmup, "rows": [r.as_dict() for r in rows],
                       "targets": [g.as_dict() for g in goals]}, indent=2)


CSV_HEADER = ("operation", "daemon", "n", "median_ms", "p95_ms", "ratio_labkit_over_dockerd",
              "target_met", "status", "note")


def to_csv(rows: list[ImageRow], goals: list[ImageTarget]) -> str:
    """One line per (operation, daemon); the operation's ratio and target on both of its lines."""
    by_op = {g.op: g for g in goals}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        g = by_op.get(r.op)
        w.writerow([r.op, r.daemon, r.n,
                    "" if r.median_ms is None else f"{r.median_ms:.3f}",
                    "" if r.p95_ms is None else f"{r.p95_ms:.3f}",
                    "" if g is None or g.ratio is None else f"{g.ratio:.3f}",
                    "" if g is None or g.met is None else ("yes" if g.met else "no"),
                    r.status, r.note])
    return buf.getvalue()


def render_table(rows: list[ImageRow], goals: list[ImageTarget], runs: int) -> Any:
    """A rich Table: one line per (operation, daemon), ratio and target on the labkit line."""
    from rich.table import Table

    by_op = {g.op: g for g in goals}
    t = Table(title=f"labkit bench images: Docker CLI wall time, fork to exit (runs={runs})",
              caption="ratio = labkit median / dockerd median; target (issue 9): labkit no "
                      "slower than dockerd, ratio <= 1.00 per operation; reported, never "
                      "asserted")
    for col, just in (("operation", "left"), ("daemon", "left"), ("median ms", "right"),
                      ("p95 ms", "right"), ("n", "right"), ("ratio", "right"),
                      ("target", "left"), ("status / note", "left")):
        t.add_column(col, justify=just,  # type: ignore[arg-type]
                     no_wrap=col not in ("operation", "status / note"))
    last = None
    for r in rows:
        g = by_op.get(r.op) if r.daemon == "labkit" else None
        ratio = "" if r.daemon != "labkit" else (
            "-" if g is None or g.ratio is None else f"{g.ratio:.2f}")
        status = r.status if r.error else "; ".join(x for x in (r.status, r.note) if x)
        if r.error and r.note:
            status += f" ({r.note})"
        t.add_row(r.op if r.op != last else "", r.daemon, _ms(r.median_ms), _ms(r.p95_ms),
                  str(r.n), ratio, _met(g) if r.daemon == "labkit" else "", status,
                  end_section=r.daemon == DAEMONS[-1])
        last = r.op
    return t


def print_table(rows: list[ImageRow], goals: list[ImageTarget], runs: int) -> None:
    from rich.console import Console

    Console().print(render_table(rows, goals, runs))


def write_png(rows: list[ImageRow], goals: list[ImageTarget], path: Path) -> Path:
    """A grouped bar chart of the medians (ms) per operation, labkit beside dockerd; an
    operation a daemon cannot run is marked on the axis instead of a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in OPS if any(r.op == op for r in rows)]
    med = {(r.op, r.daemon): r.median_ms for r in rows}
    by_op = {g.op: g for g in goals}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(ops)), 4.0))
    width = 0.38
    for k, daemon in enumerate(DAEMONS):
        xs = [i + (k - 0.5) * width for i in range(len(ops))]
        vals = [med.get((op, daemon)) for op in ops]
        bars = ax.bar(xs, [v or 0.0 for v in vals], width, label=daemon)
        for x, v, bar in zip(xs, vals, bars, strict=True):
            ax.annotate("cannot run" if v is None else f"{v:.0f}", (x, bar.get_height()),
                        ha="center", va="bottom", fontsize=8,
                        rotation=90 if v is None else 0)
    labels = []
    for op in ops:
        g = by_op.get(op)
        labels.append(op if g is None or g.ratio is None else f"{op}\n{g.ratio:.2f}x")
    ax.set_xticks(range(len(ops)), labels, fontsize=8)
    ax.set_ylabel("median wall time of the Docker CLI (ms)")
    ax.set_title("labkit bench images: labkit's daemon vs dockerd (lower is better)")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cli_error(stderr: str) -> str:
    """The daemon's error message as the CLI printed it: the last line that is not the
    classic builder's deprecation banner (docker CLI 23+ prints it on every DOCKER_BUILDKIT=0
    build)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("DEPRECATED:", "BuildKit is currently",
                                                      "environment-variable", "Install the"))]
    last = (keep or lines or ["no message"])[-1]
    # the CLI's own prefix (cli/command: "Error response from daemon: %s"): what follows is
    # the daemon's message
    return last.removeprefix("Error response from daemon: ")[:240]


# ---- the payload image: busybox plus one seeded 5 MiB layer, as a docker-archive ----------

def _payload_layer(size: int, seed: int) -> bytes:
    """An uncompressed layer tar holding /payload.bin: ``size`` bytes of random.Random(seed),
    every header field fixed, so the same seed always gives the same diffID."""
    data = random.Random(seed).randbytes(size)  # filler bytes, not secrets: a seeded PRNG
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def _safe_member(name: str) -> str:
    """A member name from a docker-archive we read, refused when it could leave the dir."""
    if name.startswith("/") or ".." in Path(name).parts or not name:
        raise errors.InvalidArgumentError("docker-archive", f"member {name!r} escapes the "
                                          "archive")
    return name


def write_payload_archive(base_archive: Path, out: Path, *, ref: str = PAYLOAD_REF,
                          size: int = PAYLOAD_BYTES, seed: int = PAYLOAD_SEED) -> str:
    """Write ``out``: a docker-archive (`docker save` format) of ``base_archive``'s image plus
    one layer of ``size`` seeded bytes, tagged ``ref``; returns the new config's digest.

    Raises:
        InvalidArgumentError: the base archive is not a one-image docker-archive.
    """
    with tarfile.open(base_archive) as tar:
        manifest = json.load(tar.extractfile(_safe_member("manifest.json")) or io.BytesIO())
        if not isinstance(manifest, list) or len(manifest) != 1:
            raise errors.InvalidArgumentError("docker-archive", f"{base_archive}: want one "
                                              "image in manifest.json")
        entry = manifest[0]
        base_cfg = json.load(tar.extractfile(_safe_member(entry["Config"])) or io.BytesIO())
        base_layers = [tar.extractfile(_safe_member(p)) for p in entry["Layers"]]
        layers = [f.read() for f in base_layers if f is not None]
    if len(layers) != len(entry["Layers"]):
        raise errors.InvalidArgumentError("docker-archive", f"{base_archive}: a layer is not "
                                          "a regular file")
    layers.append(_payload_layer(size, seed))
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
    history = list(base_cfg.get("history") or [])
    history.append({"created": "1970-01-01T00:00:00Z",
                    "created_by": f"labkit bench images: {size} bytes, seed {seed}"})
    cfg = {"architecture": base_cfg.get("architecture") or _arch(),
           "os": base_cfg.get("os") or "linux",
           "config": base_cfg.get("config") or {"Cmd": ["sh"]},
           "created": "1970-01-01T00:00:00Z",
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": history}
    cfg_bytes = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    cfg_hex = hashlib.sha256(cfg_bytes).hexdigest()
    files: list[tuple[str, bytes]] = [(f"{cfg_hex}.json", cfg_bytes)]
    names = []
    for d, blob in zip(diff_ids, layers, strict=True):
        names.append(f"{d.removeprefix('sha256:')}/layer.tar")
        files.append((names[-1], blob))
    files.append(("manifest.json", json.dumps([{"Config": f"{cfg_hex}.json",
                                                "RepoTags": [ref], "Layers": names}]).encode()))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(blob), 0o644, 0
            tar.addfile(info, io.BytesIO(blob))
    return "sha256:" + cfg_hex


# ---- the harness ----------------------------------------------------------------------------

@dataclass
class _Side:
    """One daemon as the Docker CLI sees it."""

    name: str
    env: dict[str, str]
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


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
        """An untimed set-up step that has to work on both daemons (load, tag, save)."""
        r = self.docker(side, *args)
        if not r.ok:
            raise errors.LabkitError(f"`docker {' '.join(args)}` against {side.name}: "
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
        h.must(other, "load", "-q", "-i", str(files["payload"]))
        h.must(other, "tag", PAYLOAD_REF, ref)
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
    h.must(side, "load", "-q", "-i", str(files["busybox"]))  # back for the next build


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
    from labkit.measure.bench_engine import _Dockerd
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
    dockerd = _Dockerd(tmp)
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
