"""Notebook 05's experiments as library calls: an image's layer directories, a container's
upper dir, a build step by step, layer sizes plotted, build against commit, the exercise.

Everything goes through the engine's API (labkit.engine.client) and reads the store's
directories on disk (a LabEngine's root); no logic the library lacks.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.engine.client import Client
from labkit.engine.client.buildctx import pack_context
from labkit.engine.images.diff import changes
from labkit.engine.images.store import ImageStore, dir_size

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["BuildRun", "LayerRow", "build", "check_exercise", "commit_run", "file_rows",
           "image_layers", "plot_layer_sizes", "upper_dir"]


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One layer of an image: its place, digest, directory on disk, size, the instruction
    that made it (the config's history), and how many entries it holds."""

    n: int
    diff_id: str
    created_by: str
    bytes: int
    entries: int
    path: str


def image_layers(root: Path, ref: str) -> list[LayerRow]:
    """The layers of ``ref`` base first, read from the store under an engine's ``root``,
    each matched with the history entry that made it (entries with empty_layer made none)."""
    img = ImageStore(Path(root) / "images").get(ref)
    made = [str(h.get("created_by", "")) for h in img.config.get("history") or []
            if not h.get("empty_layer")]
    rows = []
    for i, (d, path) in enumerate(zip(img.config["rootfs"]["diff_ids"], img.layers,
                                      strict=True)):
        rows.append(LayerRow(i, d[7:19], made[i][:70] if i < len(made) else "",
                             dir_size(path), len(changes(path)), str(path)))
    return rows


def file_rows(directory: str | Path, limit: int = 20) -> list[dict[str, str]]:
    """The entries of a layer or upper dir as a layer sees them (whiteouts, opaque dirs)."""
    return [{"path": c.path, "kind": c.kind} for c in changes(directory)[:limit]]


def upper_dir(root: Path, client: Client, container: str) -> Path:
    """A container's overlay upper dir under the engine's root (containers/<id>/upper)."""
    cid = str(client.containers.inspect(container)["Id"])
    return root / "containers" / cid / "upper"


@dataclass
class BuildRun:
    """One build: the image ID, every streamed line, and per step: its text and whether
    the cache served it."""

    image: str
    lines: list[str]
    steps: list[dict[str, Any]]
    error: str = ""


def build(client: Client, directory: str | Path, tag: str | None = None, *,
          nocache: bool = False, buildargs: dict[str, str] | None = None) -> BuildRun:
    """Build ``directory`` (its Dockerfile) through the API, as `labkit build` does."""
    context, name = pack_context(directory)
    run = BuildRun("", [], [])
    for msg in client.images.build(context, tag=tag, dockerfile=name, nocache=nocache,
                                   buildargs=buildargs):
        if "error" in msg:
            run.error = str(msg["error"])
        elif "aux" in msg:
            run.image = str(msg["aux"]["ID"])
        else:
            text = str(msg.get("stream", ""))
            run.lines.append(text)
            if text.startswith("Step "):
                run.steps.append({"step": text.split(" : ", 1)[-1].strip(), "cached": False,
                                  "id": ""})
            elif text.startswith(" ---> Using cache") and run.steps:
                run.steps[-1]["cached"] = True
            elif text.startswith(" ---> ") and run.steps and "Running in" not in text:
                run.steps[-1]["id"] = text[6:].strip()
    return run


def commit_run(client: Client, script: str, tag: str) -> str:
    """The same change made by hand: run ``script`` in a busybox container, then commit it
    (as `docker commit`); the container is removed.  Returns the image ID."""
    c = client.containers.create({"Image": "busybox", "Cmd": ["sh", "-c", script],
                                  "HostConfig": {"NetworkMode": "none"}})
    try:
        client.containers.start(c["Id"])
        client.containers.wait(c["Id"]).read()
        repo, _, t = tag.rpartition(":")
        return client.images.commit(c["Id"], repo, t)
    finally:
        client.containers.remove(c["Id"], force=True)


def plot_layer_sizes(rows: list[LayerRow], title: str = "", ax: Axes | None = None) -> Axes:
    """Bytes per layer (log scale: a base layer dwarfs a RUN's few bytes)."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    labels = [f"{r.n}: {r.created_by[:28]}" for r in rows]
    ax.barh(labels, [max(r.bytes, 1) for r in rows], color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("bytes in the layer directory (log)")
    ax.invert_yaxis()
    ax.set_title(title or "layer sizes")
    return ax


def check_exercise(root: Path, docker_env: dict[str, str], ref: str) -> bool:
    """The exercise: an image ``ref`` built from a Dockerfile where /greeting holds "hi",
    /bin/true is deleted (a whiteout), and the default command prints the greeting.
    Prints PASS or a hint; returns whether it passed."""
    from labkit.measure.peers import docker_cli
    try:
        layers = image_layers(root, ref)
    except Exception:  # noqa: BLE001 - any failure to find it is the hint below
        print(f"hint: no image {ref!r} yet: write exercise/Dockerfile and run "
              "layers.build(client, workdir / 'exercise', tag=...)")
        return False
    out = subprocess.run([docker_cli(), "run", "--rm", ref], env=docker_env,
                         capture_output=True, timeout=60, check=False)
    probe = subprocess.run([docker_cli(), "run", "--rm", "--entrypoint", "sh", ref, "-c",
                            "cat /greeting; test -e /bin/true && echo still-there || true"],
                           env=docker_env, capture_output=True, timeout=60, check=False)
    whiteouts = [f for r in layers for f in file_rows(r.path, 10_000)
                 if f["kind"] == "whiteout" and f["path"] == "bin/true"]
    if probe.stdout.split() != [b"hi"]:
        print("hint: /greeting must hold exactly 'hi' and /bin/true must be gone "
              f"(got {probe.stdout!r}); a RUN like `echo hi > /greeting && rm /bin/true`")
        return False
    if out.stdout.strip() != b"hi":
        print(f"hint: the default command must print the greeting (got {out.stdout!r}): "
              'CMD ["cat", "/greeting"]')
        return False
    if not whiteouts:
        print("hint: /bin/true must be deleted in a layer of this image (a whiteout)")
        return False
    print("PASS")
    return True


def write_context(directory: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    """A build context: ``directory`` with its Dockerfile and ``files`` (name -> text)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (directory / name).write_text(text)
    return directory


def start_writer(client: Client, script: str) -> str:
    """A busybox container running ``script`` (no network), started; returns its ID."""
    c = client.containers.create({"Image": "busybox", "Cmd": ["sh", "-c", script],
                                  "HostConfig": {"NetworkMode": "none"}})
    client.containers.start(c["Id"])
    return str(c["Id"])


def build_vs_commit(client: Client, root: Path, built: str, committed: str,
                    same_build: bool, same_commit: bool, stray: str = "tmp/notes"
                    ) -> dict[str, dict[str, Any]]:
    """One table: layers, the stray file, the last history entry (the recipe, or only a
    command line), reproducibility, the default command."""
    def facts(ref: str, same: bool) -> dict[str, Any]:
        rows = image_layers(root, ref)
        top = {f["path"] for f in file_rows(rows[-1].path, 10_000)}
        hist = ImageStore(Path(root) / "images").get(ref).config.get("history") or []
        return {"layers": len(rows), "stray /" + stray: stray in top,
                "last history entry": str(hist[-1].get("created_by", ""))[:50] if hist else "",
                "same ID twice": same,
                "default command": client.images.inspect(ref)["Config"].get("Cmd")}
    return {"build": facts(built, same_build), "commit": facts(committed, same_commit)}
