"""The registry client in-process against the real docker-registry (labkit.measure.registry):
chunked uploads (PATCH with Content-Range, spec.md "Pushing a blob in chunks"), cross-repo
mounts, and a pull back into a second store."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import pytest

from labkit.engine.daemonconfig import DaemonConfig
from labkit.engine.images.archive import import_rootfs
from labkit.engine.images.store import ImageStore
from labkit.engine.registry import client as C
from labkit.engine.registry import pull, push, reference
from labkit.engine.registry.auth import AuthConfig, TokenCache
from labkit.engine.registry.metadata import DigestMap
from labkit.measure.registry import LocalRegistry

pytestmark = pytest.mark.privileged


def _rootfs(path: Path, size: int) -> None:
    with tarfile.open(path, "w") as tf:
        data = os.urandom(size)
        ti = tarfile.TarInfo("blob.bin")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))


async def _push(store: ImageStore, name: str) -> list[dict[str, object]]:
    ref = reference.parse(name)
    async with C.new_session() as s:
        return [m async for m in push.run(s, store, DaemonConfig(), TokenCache(),
                                          DigestMap(store), ref, AuthConfig(),
                                          push.images_to_push(store, ref, False))]


async def _pull(store: ImageStore, name: str) -> list[dict[str, object]]:
    ref = reference.parse(name)
    async with C.new_session() as s:
        res = await pull.resolve(s, store, DaemonConfig(), TokenCache(), ref, AuthConfig(),
                                 None)
        try:
            return [m async for m in pull.run(res, store, DigestMap(store))]
        finally:
            res.close()


def test_chunked_upload_mount_and_pull_back(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "CHUNKED_UPLOAD", 64 << 10)  # 64 KiB chunks for a ~300 KiB blob
    methods: list[str] = []
    real = C.Repository.request

    async def counting(self: C.Repository, method: str, *a: object, **kw: object) -> object:
        methods.append(method)
        return await real(self, method, *a, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(C.Repository, "request", counting)
    src = ImageStore(tmp_path / "src")
    tar = tmp_path / "rootfs.tar"
    _rootfs(tar, 300_000)
    with LocalRegistry() as reg:
        name = f"{reg.address}/lk/chunked:1"
        img = import_rootfs(src, tar, name)
        msgs = asyncio.run(_push(src, name))
        assert any(m.get("status") == "Pushed" for m in msgs)
        assert methods.count("PATCH") == 5  # ceil(300 KiB / 64 KiB), then one closing PUT
        # another repository on the same registry: the layer is mounted, not uploaded
        src.tag(name, f"{reg.address}/lk/other:1")
        msgs = asyncio.run(_push(src, f"{reg.address}/lk/other:1"))
        assert any(m.get("status") == "Mounted from lk/chunked" for m in msgs), msgs
        dst = ImageStore(tmp_path / "dst")
        out = asyncio.run(_pull(dst, f"{reg.address}/lk/other:1"))
        assert any(m.get("status") == "Pull complete" for m in out)
        got = dst.get(f"{reg.address}/lk/other:1")
        assert got.id == img.id
        with tarfile.open(tar) as tf:
            want = tf.extractfile("blob.bin").read()  # type: ignore[union-attr]
        assert (got.layers[0] / "blob.bin").read_bytes() == want
