"""The classic builder: a parsed Dockerfile run step by step against the image store.

Each step starts from the image the previous one made (its config: ``config``, ``rootfs``,
``history``) and makes the next:

* RUN runs in a container (runstep.py); its upper dir becomes a new layer.
* COPY and ADD write into an overlay of the image's layers (copyfiles.py); the overlay's
  upper dir becomes the new layer.
* Every other instruction changes only the config: an ``empty_layer`` history entry
  (``/bin/sh -c #(nop) ...``), as Docker's classic builder writes it.

Before a step runs, the layer cache is asked (layerstore.cache_key: parent image, the
instruction as it will be recorded, the build args it sees, the digest of what it copies):
a hit prints " ---> Using cache" and reuses the step's result.  The final image is written
to the store once, at the end (config last, layers before it): an interrupted build leaves
layers and cache entries that a retry reuses, never a half-written image.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import posixpath
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.build import instructions as I
from labkit.engine.build import layerstore as L
from labkit.engine.build.copyfiles import Owner, content_digest, copy_sources, resolve_sources
from labkit.engine.build.errors import BuildError
from labkit.engine.build.options import BuildOptions
from labkit.engine.build.parser import Dockerfile, Instruction
from labkit.engine.build.runstep import run_step
from labkit.engine.images.archive import host_arch
from labkit.engine.images.store import DEFAULT_PATH, dir_size

__all__ = ["PREDEFINED_ARGS", "Builder"]

# Docker's predefined ARGs: usable as --build-arg without an ARG line, and never warned about
PREDEFINED_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                             "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                             "all_proxy"})
_METADATA = {"ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "VOLUME", "WORKDIR", "USER",
             "SHELL", "STOPSIGNAL", "HEALTHCHECK", "MAINTAINER", "ARG"}

Out = Callable[[str], Awaitable[None]]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + \
        f".{time.time_ns() % 10**9:09d}Z"


def _env_map(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


class Builder:
    """One build: ``await Builder(...).run()`` returns the new image ID."""

    def __init__(self, eng: Any, ctx: Path, df: Dockerfile, opts: BuildOptions,
                 out: Out) -> None:
        self.eng, self.store, self.ctx, self.df, self.opts = eng, eng.images, ctx, df, opts
        self.out = out
        self.config: dict[str, Any] = {}
        self.args: dict[str, str] = {}  # ARGs declared in this stage, with their values
        self.meta: dict[str, str] = {}  # ARGs before the first FROM
        self.used: set[str] = set()  # build args some ARG line declared
        self.stages: dict[str, dict[str, Any]] = {}  # finished stages by index and name
        self.stage_name, self.stage_count = "", 0
        self.base: tuple[str, dict[str, Any]] | None = None  # (ID, config) of FROM's image

    async def say(self, text: str) -> None:
        if not self.opts.quiet:
            await self.out(text)

    # -- state ----------------------------------------------------------------------------
    @property
    def run_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.config.setdefault("config", {})
        return cfg

    def expand_env(self) -> dict[str, str]:
        """What ``$VAR`` sees: the ARG values, then ENV (which wins, as in Docker)."""
        return {**self.args, **_env_map(self.run_config.get("Env") or [])}

    @property
    def image_id(self) -> str:
        if self.base is not None and self.config == self.base[1]:
            return self.base[0]  # unchanged since FROM: the base image itself
        return L.image_id_of(self.config)

    @property
    def shell(self) -> list[str]:
        return list(self.run_config.get("Shell") or ["/bin/sh", "-c"])

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> str:
        for ins in self.df.meta_args:
            for name, default in I.arg_decl(ins, {}, self.df.escape):
                self.meta[name] = self.opts.buildargs.get(name, default or "") \
                    if name in self.opts.buildargs or default is not None else ""
                if name in self.opts.buildargs:
                    self.used.add(name)
        steps = self._steps()
        total = len(steps)
        for n, ins in enumerate(steps, 1):
            await self.say(f"Step {n}/{total} : {ins.original}\n")
            await self.step(ins)
        self._end_stage()
        unused = sorted(k for k in self.opts.buildargs
                        if k not in self.used and k not in PREDEFINED_ARGS)
        if unused:
            await self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                           "consumed\n")
        if self.opts.labels:
            self._add_history("LABEL " + " ".join(f"{k}={v}" for k, v in
                                                  sorted(self.opts.labels.items())), empty=True)
            labels = self.run_config.setdefault("Labels", {}) or {}
            labels.update(self.opts.labels)
            self.run_config["Labels"] = labels
        if self.base is not None and self.config == self.base[1]:
            for t in self.opts.tags:  # nothing changed: the base image gets the tags
                await asyncio.to_thread(self.store.tag, self.base[0], t)
            return self.base[0]
        self.config.pop("labkit", None)
        raw = L.config_bytes(self.config)
        size = sum(dir_size(self.store.layer_dir(d)) for d in self.config["rootfs"]["diff_ids"])
        img = await asyncio.to_thread(self.store.add_raw, raw, list(self.opts.tags), size=size)
        return str(img.id)

    def _steps(self) -> list[Instruction]:
        """The instructions up to the end of the ``target`` stage (all without a target)."""
        steps = self.df.instructions
        if not self.opts.target:
            return steps
        for i, ins in enumerate(steps):
            if ins.cmd == "FROM":
                _, name = I.from_args(ins, self.meta, self.df.escape)
                if name == self.opts.target.lower():
                    end = next((j for j in range(i + 1, len(steps)) if steps[j].cmd == "FROM"),
                               len(steps))
                    return steps[:end]
        raise errors.InvalidArgumentError(
            "target", f"failed to reach build target {self.opts.target} in Dockerfile")

    async def step(self, ins: Instruction) -> None:
        if ins.cmd == "FROM":
            await self.do_from(ins)
            return
        if ins.cmd == "ONBUILD":
            raise ins.error("ONBUILD is not supported by labkit's builder",
                            hint="run the instructions in the image's own Dockerfile")
        if ins.cmd == "RUN":
            await self.do_run(ins)
        elif ins.cmd in ("COPY", "ADD"):
            await self.do_copy(ins)
        elif ins.cmd in _METADATA:
            await self.do_meta(ins)
        else:  # KNOWN lists nothing else; a new entry there must be handled here
            raise ins.error(f"{ins.cmd} is not supported by labkit's builder")

    async def do_from(self, ins: Instruction) -> None:
        image, name = I.from_args(ins, self.meta, self.df.escape)
        self._end_stage()
        self.args, self.base = {}, None
        if image.lower() in self.stages:
            self.config = copy.deepcopy(self.stages[image.lower()])
        elif image == "scratch":
            self.config = {"architecture": host_arch(), "os": "linux",
                           "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
                           "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        else:
            try:
                img = self.store.get(image)
            except errors.NotFoundError:
                raise ins.error(f"pull access denied for {image}: the image is not in the "
                                "store and the builder does not pull",
                                hint=f"docker pull {image} (or labkit image bootstrap), "
                                "then build") from None
            # kept byte-identical (labkit's own key too): the ID printed is the base's, and
            # a Dockerfile that changes nothing tags the base image itself, as Docker does
            if img.container_config.get("OnBuild"):
                raise ins.error(f"{image} has ONBUILD triggers, which labkit's builder does "
                                "not run", hint="build from an image without ONBUILD")
            self.config = copy.deepcopy(img.config)
            self.base = (img.id, copy.deepcopy(img.config))
        self.stage_name = name
        await self.say(f" ---> {self.image_id[7:19]}\n")

    def _end_stage(self) -> None:
        """Remember the stage just finished (by index and name) for FROM and COPY --from."""
        if not self.config:
            return
        self.stages[str(self.stage_count)] = self.config
        if self.stage_name:
            self.stages[self.stage_name] = self.config
        self.stage_count += 1

    # -- metadata steps ---------------------------------------------------------------------
    async def do_meta(self, ins: Instruction) -> None:
        env, esc, cfg = self.expand_env(), self.df.escape, self.run_config
        text = ins.original
        if ins.cmd == "ARG":
            for name, default in I.arg_decl(ins, env, esc):
                if name in self.opts.buildargs:
                    self.used.add(name)
                    value = self.opts.buildargs[name]
                elif default is not None:
                    value = default
                elif name in self.meta:
                    value = self.meta[name]
                else:
                    value = ""
                self.args[name] = value
            # ARG changes no config; Docker records nothing but still caches by it
            await self.say(f" ---> {self.image_id[7:19]}\n")
            return
        if ins.cmd == "ENV":
            pairs = I.name_values(ins, env, esc)
            cur = list(cfg.get("Env") or [])
            for k, v in pairs:
                cur = [e for e in cur if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = cur
            text = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        elif ins.cmd == "LABEL":
            pairs = I.name_values(ins, env, esc)
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(pairs)}
            text = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
        elif ins.cmd in ("CMD", "ENTRYPOINT"):
            argv, _ = I.command(ins, self.shell)
            cfg["Cmd" if ins.cmd == "CMD" else "Entrypoint"] = argv
            if ins.cmd == "ENTRYPOINT":
                cfg["Cmd"] = None  # Docker: a new ENTRYPOINT resets the inherited CMD
            text = f"{ins.cmd} {I.dumps(argv)}"
        elif ins.cmd == "EXPOSE":
            ports = I.exposed_ports(ins, env, esc)
            cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **{p: {} for p in ports}}
            text = "EXPOSE " + " ".join(sorted(ports))
        elif ins.cmd == "VOLUME":
            vols = I.volumes(ins, env, esc)
            cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{v: {} for v in vols}}
            text = f"VOLUME {I.dumps(vols)}"
        elif ins.cmd == "WORKDIR":
            wd = I.word(ins, ins.args, env, esc)
            if not wd:
                raise ins.error("WORKDIR requires exactly one argument")
            cfg["WorkingDir"] = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", wd))
            text = f"WORKDIR {cfg['WorkingDir']}"
        elif ins.cmd == "USER":
            user = I.word(ins, ins.args, env, esc)
            if not user:
                raise ins.error("USER requires exactly one argument")
            cfg["User"] = user
            text = f"USER {user}"
        elif ins.cmd == "SHELL":
            cfg["Shell"] = I.shell_form(ins)
            text = f"SHELL {I.dumps(cfg['Shell'])}"
        elif ins.cmd == "STOPSIGNAL":
            sig = I.word(ins, ins.args, env, esc)
            from labkit.engine.containers.createbody import parse_signal
            try:
                parse_signal(sig)
            except errors.InvalidArgumentError:
                raise ins.error(f"Invalid signal: {sig}") from None
            cfg["StopSignal"] = sig
        elif ins.cmd == "HEALTHCHECK":
            cfg["Healthcheck"] = I.healthcheck(ins, self.shell)
        elif ins.cmd == "MAINTAINER":
            self.config["author"] = ins.args
        await self.commit_meta(text)

    async def commit_meta(self, text: str) -> None:
        spaced = " " if text.startswith(("WORKDIR", "COPY", "ADD")) else "  "
        created_by = f"/bin/sh -c #(nop){spaced}{text}"
        key = self._key(created_by)
        hit = self._cached(key)
        if hit is not None:
            await self._use_cache(hit)
            return
        self._add_history(created_by, empty=True)
        self._save(key)
        await self.say(f" ---> {self.image_id[7:19]}\n")

    # -- layer steps -------------------------------------------------------------------------
    def _arg_env(self) -> list[str]:
        """The ARG values a RUN sees as environment (not kept in the image)."""
        envk = set(_env_map(self.run_config.get("Env") or []))
        return [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in envk]

    async def do_run(self, ins: Instruction) -> None:
        argv, _ = I.command(ins, self.shell)
        args = self._arg_env()
        created_by = (f"|{len(args)} {' '.join(args)} " if args else "") + " ".join(argv)
        key = self._key(created_by)
        hit = self._cached(key)
        if hit is not None:
            await self._use_cache(hit)
            return
        cfg = self.run_config
        env = list(cfg.get("Env") or []) + args
        parent = copy.deepcopy(self.config)

        async def commit(upper: Path) -> None:
            diff_id, _ = await asyncio.to_thread(L.commit_layer, self.store, upper)
            self.config = parent
            self.config["rootfs"]["diff_ids"].append(diff_id)
            self._add_history(created_by, empty=False)

        same = self.base is not None and parent == self.base[1]
        kept = [False]  # a container stays (rm=0; a failure without forcerm): so does its image
        with contextlib.nullcontext(self.image_id) if same else \
                L.step_image(self.store, parent, keep=lambda: kept[0]) as iid:
            try:
                await run_step(self.eng, iid, argv, env, cfg.get("WorkingDir") or "",
                               cfg.get("User") or "", self.opts.host, self.out_run, commit,
                               rm=self.opts.rm, forcerm=self.opts.forcerm)
                kept[0] = not self.opts.rm
            except BuildError:
                kept[0] = not self.opts.forcerm
                raise
        self._save(key)
        await self.say(f" ---> {self.image_id[7:19]}\n")

    async def out_run(self, text: str) -> None:
        await self.say(text)

    async def do_copy(self, ins: Instruction) -> None:
        env, esc = self.expand_env(), self.df.escape
        a = I.copy_args(ins, env, esc)
        src_layers = self._from_layers(ins, a.from_stage) if a.from_stage else None
        with self._source_root(src_layers) as root:
            try:
                sources = resolve_sources(root, ins.cmd, a.sources)
            except errors.LabkitError as e:
                raise errors.InvalidArgumentError(ins.cmd, f"line {ins.line}: {_msg(e)}") \
                    from None
            owner = self._owner(ins, a.chown, a.chmod)
            digest = await asyncio.to_thread(content_digest, root, sources)
            await self._copy_step(ins, a, root, sources, owner, digest)

    def _from_layers(self, ins: Instruction, ref: str) -> list[Path]:
        """COPY --from: the layer dirs (top first) of a finished stage or a stored image."""
        cfg = self.stages.get(ref.lower())
        if cfg is None:
            if ref.isdigit():
                raise ins.error(f"COPY --from={ref}: there is no stage {ref} before this one")
            try:
                cfg = self.store.get(ref).config
            except errors.NotFoundError:
                raise ins.error(f"COPY --from={ref}: no such stage or image (the builder "
                                "does not pull)") from None
        return [self.store.layer_dir(d) for d in reversed(cfg["rootfs"]["diff_ids"])]

    @contextlib.contextmanager
    def _source_root(self, layers: list[Path] | None) -> Iterator[Path]:
        """Where COPY reads: the context, or a read-only overlay view of another stage's
        layers (one layer is its own directory, never written to)."""
        if layers is None:
            yield self.ctx
            return
        if not layers:
            raise errors.InvalidArgumentError("COPY --from", "the stage has no files (scratch)")
        if len(layers) == 1:
            yield layers[0]
            return
        from labkit.engine.images.mounts import unmount
        from labkit.engine.images.overlay import mount_overlay
        with self.store.staging() as stage_s:
            view = Path(stage_s) / "from"
            view.mkdir()
            mount_overlay(layers, None, None, view, options=("ro",))
            try:
                yield view
            finally:
                unmount(view)

    async def _copy_step(self, ins: Instruction, a: I.CopyArgs, root: Path, sources: list[str],
                         owner: Owner, digest: str) -> None:
        flags = (f"--chown={a.chown} " if a.chown else "") + \
            (f"--chmod={a.chmod:o} " if a.chmod is not None else "")
        if a.from_stage:
            flags += f"--from={a.from_stage} "
        kind = "dir" if len(sources) > 1 or os.path.isdir(root / sources[0]) else "file"
        created_by = f"/bin/sh -c #(nop) {ins.cmd} {flags}{kind}:{digest[7:]} in {a.dest} "
        key = self._key(created_by)
        hit = self._cached(key)
        if hit is not None:
            await self._use_cache(hit)
            return
        diff_id = await asyncio.to_thread(self._copy_layer, root, ins.cmd, sources, a.dest, owner)
        self.config["rootfs"]["diff_ids"].append(diff_id)
        self._add_history(created_by.removeprefix("/bin/sh -c "), empty=False)
        self.config["history"][-1]["created_by"] = created_by
        self._save(key)
        await self.say(f" ---> {self.image_id[7:19]}\n")

    def _owner(self, ins: Instruction, chown: str, chmod: int | None) -> Owner:
        if not chown:
            return Owner(0, 0, chmod)
        from labkit.engine.containers.bundle import layer_lookup
        from labkit.engine.containers.ocispec import resolve_user
        layers = [self.store.layer_dir(d) for d in reversed(self.config["rootfs"]["diff_ids"])]
        try:
            u = resolve_user(chown, layer_lookup(layers))
        except errors.InvalidArgumentError as e:
            raise ins.error(f"unable to convert uid/gid chown string to host mapping: "
                            f"{e.problem}") from None
        uid, gid = int(u["uid"]), int(u["gid"])
        if ":" not in chown:
            gid = uid  # Docker: a user without a group uses the UID as the GID
        return Owner(uid, gid, chmod)

    def _copy_layer(self, src_root: Path, cmd: str, sources: list[str], dest: str,
                    owner: Owner) -> str:
        """Mount an overlay of the image's layers, copy, unmount: the upper is the layer."""
        from labkit.engine.images.mounts import unmount
        from labkit.engine.images.overlay import mount_overlay
        layers = [self.store.layer_dir(d) for d in reversed(self.config["rootfs"]["diff_ids"])]
        workdir = self.run_config.get("WorkingDir") or "/"
        with self.store.staging() as stage_s:
            stage = Path(stage_s)
            upper, work, merged = stage / "upper", stage / "work", stage / "merged"
            for d in (upper, work, merged):
                d.mkdir()
            upper.chmod(0o755)
            if not layers:  # FROM scratch: the copy is the whole layer
                copy_sources(src_root, cmd, sources, upper, dest, workdir, owner)
            else:
                mount_overlay(layers, upper, work, merged)
                try:
                    copy_sources(src_root, cmd, sources, merged, dest, workdir, owner)
                finally:
                    unmount(merged)
            diff_id, _ = L.commit_layer(self.store, upper)
        return diff_id

    # -- cache and history -----------------------------------------------------------------
    def _key(self, created_by: str) -> str:
        return L.cache_key(self.image_id, created_by, json.dumps(sorted(self.args.items())))

    def _cached(self, key: str) -> dict[str, Any] | None:
        if self.opts.nocache:
            return None
        return L.cache_get(self.store, key)

    async def _use_cache(self, hit: dict[str, Any]) -> None:
        self.config = hit
        await self.say(" ---> Using cache\n")
        await self.say(f" ---> {self.image_id[7:19]}\n")

    def _add_history(self, created_by: str, *, empty: bool) -> None:
        self.config.pop("labkit", None)  # the base's facts (its size), not this image's
        now = _now()
        self.config["created"] = now
        entry: dict[str, Any] = {"created": now, "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        self.config.setdefault("history", []).append(entry)

    def _save(self, key: str) -> None:
        L.cache_put(self.store, key, self.config)


def _msg(e: errors.LabkitError) -> str:
    return getattr(e, "problem", None) or str(e)
