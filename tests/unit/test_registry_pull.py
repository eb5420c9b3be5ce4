"""The registry client against a tiny loopback HTTP registry made in the test (aiohttp):
verification before storage, refusals by name, redirects, auth challenges, interrupted
pulls.  The store is a temp dir; nothing is left behind by a refused pull."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labkit import errors
from labkit.engine.daemonconfig import DaemonConfig
from labkit.engine.images.store import ImageStore
from labkit.engine.registry import manifest as M
from labkit.engine.registry import pull, push, reference
from labkit.engine.registry.auth import AuthConfig, TokenCache
from labkit.engine.registry.client import NotFound, Unreachable, new_session
from labkit.engine.registry.metadata import DigestMap


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class Image:
    """One image as a registry holds it: a gzip layer, a config, a schema2 manifest."""

    def __init__(self, members: list[tuple[str, bytes]], arch: str = "amd64") -> None:
        plain = _tar(members)
        self.layer = gzip.compress(plain, mtime=0)
        self.config = json.dumps({"architecture": arch, "os": "linux",
                                  "config": {"Cmd": ["sh"]},
                                  "rootfs": {"type": "layers",
                                             "diff_ids": [_sha(plain)]}}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": M.DOCKER_MANIFEST,
            "config": {"mediaType": M.DOCKER_CONFIG, "size": len(self.config),
                       "digest": _sha(self.config)},
            "layers": [{"mediaType": M.DOCKER_LAYER, "size": len(self.layer),
                        "digest": _sha(self.layer)}]}).encode()
        self.blobs = {_sha(self.layer): self.layer, _sha(self.config): self.config}


class Fake:
    """A minimal distribution API: manifests and blobs from dicts; hooks per path."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.hook: Callable[[web.Request], Awaitable[web.StreamResponse | None]] | None = None
        self.requests: list[str] = []
        self.port = 0

    def add(self, repo: str, tag: str, img: Image) -> None:
        self.manifests[f"{repo}:{tag}"] = (M.DOCKER_MANIFEST, img.manifest)
        self.manifests[f"{repo}:{_sha(img.manifest)}"] = (M.DOCKER_MANIFEST, img.manifest)
        self.blobs.update(img.blobs)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.hook is not None and (r := await self.hook(request)) is not None:
            return r
        path = request.path
        if path == "/v2/":
            return web.Response(status=200)
        repo, _, rest = path[4:].partition("/manifests/")
        if rest:
            hit = self.manifests.get(f"{repo}:{rest}")
            if hit is None:
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN",
                                                      "message": "manifest unknown"}]}, status=404)
            return web.Response(body=hit[1], headers={"Content-Type": hit[0]})
        repo, _, digest = path[4:].partition("/blobs/")
        if digest in self.blobs:
            return web.Response(body=self.blobs[digest],
                                headers={"Content-Type": "application/octet-stream"})
        return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "x"}]},
                                 status=404)


def serve(test: Callable[[Fake, str], Awaitable[None]]) -> None:
    async def main() -> None:
        fake = Fake()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        fake.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            await test(fake, f"127.0.0.1:{fake.port}")
        finally:
            await runner.cleanup()
    asyncio.run(main())


async def do_pull(store: ImageStore, name: str, *, auth: AuthConfig | None = None,
                  want: M.Platform | None = None, tokens: TokenCache | None = None,
                  config: DaemonConfig | None = None) -> list[dict[str, Any]]:
    ref = reference.parse(name)
    async with new_session() as session:
        res = await pull.resolve(session, store, config or DaemonConfig(), tokens or TokenCache(),
                                 ref, auth or AuthConfig(), want)
        try:
            return [m async for m in pull.run(res, store, DigestMap(store))]
        finally:
            res.close()


def nothing_stored(store: ImageStore) -> None:
    assert store.ids() == []
    layers = store.root / "layers"
    assert not layers.exists() or os.listdir(layers) == []
    tmp = store.root / "tmp"
    assert not tmp.exists() or os.listdir(tmp) == []


GOOD = [("bin/hello", b"hello\n")]


def test_pull_stores_verified_image_and_reports_progress(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        msgs = await do_pull(store, f"{addr}/lk/a:1")
        statuses = [m["status"] for m in msgs]
        ident = _sha(img.layer)[7:19]
        assert statuses[0] == "Pulling from lk/a"
        for s in ("Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete",
                  "Extracting", "Pull complete"):
            assert any(m["status"] == s and m.get("id") == ident for m in msgs), s
        dl = [m for m in msgs if m["status"] == "Downloading"][-1]
        assert dl["progressDetail"] == {"current": len(img.layer), "total": len(img.layer)}
        assert statuses[-2:] == [f"Digest: {_sha(img.manifest)}",
                                 f"Status: Downloaded newer image for {addr}/lk/a:1"]
        got = store.get(f"{addr}/lk/a:1")
        assert got.id == _sha(img.config)
        assert (got.layers[0] / "bin/hello").read_bytes() == b"hello\n"
        assert store.repo_digests(got.id) == [f"{addr}/lk/a@{_sha(img.manifest)}"]
        assert store.get(f"{addr}/lk/a@{_sha(img.manifest)}").id == got.id
        # again: the layer is skipped and the image is up to date
        fake.requests.clear()
        again = await do_pull(store, f"{addr}/lk/a:1")
        assert {"status": "Already exists", "progressDetail": {}, "id": ident} in again
        assert again[-1]["status"] == f"Status: Image is up to date for {addr}/lk/a:1"
        assert not any(_sha(img.layer) in r for r in fake.requests)
        # by digest: no tag is made
        bydigest = await do_pull(store, f"{addr}/lk/a@{_sha(img.manifest)}")
        assert bydigest[-1]["status"].endswith(f"{addr}/lk/a@{_sha(img.manifest)}")
    serve(t)


def test_tampered_blob_is_refused_and_not_stored(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        bad = bytearray(img.layer)
        bad[-9] ^= 0xFF  # same size, other bytes
        fake.blobs[_sha(img.layer)] = bytes(bad)
        with pytest.raises(errors.InvalidArgumentError, match="digest mismatch"):
            await do_pull(store, f"{addr}/lk/a:1")
        nothing_stored(store)
        # a longer blob is cut off at its declared size
        fake.blobs[_sha(img.layer)] = img.layer + b"x" * 10
        with pytest.raises(errors.InvalidArgumentError, match="more than"):
            await do_pull(store, f"{addr}/lk/a:1")
        nothing_stored(store)
        # a tampered config (the manifest names its digest) is refused before any layer
        fake.blobs[_sha(img.layer)] = img.layer
        fake.blobs[_sha(img.config)] = img.config.replace(b"sh", b"ls")
        with pytest.raises(errors.InvalidArgumentError, match="digest mismatch"):
            await do_pull(store, f"{addr}/lk/a:1")
        nothing_stored(store)
    serve(t)


def test_manifest_by_digest_must_match(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img, other = Image(GOOD), Image([("x", b"y")])

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        fake.manifests[f"lk/a:{_sha(other.manifest)}"] = (M.DOCKER_MANIFEST, img.manifest)
        with pytest.raises(errors.InvalidArgumentError, match="digest mismatch"):
            await do_pull(store, f"{addr}/lk/a@{_sha(other.manifest)}")
        nothing_stored(store)
    serve(t)


def test_hostile_layer_is_refused_by_the_safe_extraction(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image([("../escape", b"x")])

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        with pytest.raises(errors.InvalidArgumentError, match=r"\.\./escape"):
            await do_pull(store, f"{addr}/lk/a:1")
        nothing_stored(store)
        assert not (tmp_path / "escape").exists()
    serve(t)


def test_refusals_by_name(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")

    async def t(fake: Fake, addr: str) -> None:
        fake.manifests["lk/big:1"] = (M.DOCKER_MANIFEST, b" " * (4 << 20) + b"{}")
        with pytest.raises(errors.InvalidArgumentError, match="manifest lk.*too large|too large"):
            await do_pull(store, f"{addr}/lk/big:1")
        fake.manifests["lk/odd:1"] = ("application/vnd.example.thing+json",
                                      b'{"schemaVersion": 2}')
        with pytest.raises(errors.UnsupportedError, match="vnd.example.thing"):
            await do_pull(store, f"{addr}/lk/odd:1")
        fake.manifests["lk/old:1"] = (M.SCHEMA1[1], b'{"schemaVersion": 1}')
        with pytest.raises(errors.UnsupportedError, match="schema 1 support has been removed"):
            await do_pull(store, f"{addr}/lk/old:1")
        with pytest.raises(NotFound, match=f"manifest for {addr}/lk/none:1 not found: "
                           "manifest unknown: manifest unknown"):
            await do_pull(store, f"{addr}/lk/none:1")
        nothing_stored(store)
    serve(t)


def test_manifest_list_picks_the_platform(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    amd, arm = Image(GOOD, "amd64"), Image([("bin/arm", b"arm\n")], "arm64")
    host = M.host_platform()

    async def t(fake: Fake, addr: str) -> None:
        for i in (amd, arm):
            fake.add("lk/m", _sha(i.manifest)[7:19], i)
        idx = json.dumps({"schemaVersion": 2, "mediaType": M.OCI_INDEX, "manifests": [
            {"mediaType": M.DOCKER_MANIFEST, "digest": _sha(i.manifest),
             "size": len(i.manifest), "platform": {"os": "linux", "architecture": a,
                                                   **({"variant": "v8"} if a == "arm64" else {})}}
            for i, a in ((arm, "arm64"), (amd, "amd64"))]}).encode()
        fake.manifests["lk/m:1"] = (M.OCI_INDEX, idx)
        msgs = await do_pull(store, f"{addr}/lk/m:1")
        mine = amd if host.architecture == "amd64" else arm
        assert store.get(f"{addr}/lk/m:1").id == _sha(mine.config)
        assert f"Digest: {_sha(idx)}" in [m["status"] for m in msgs]
        # platform asked for explicitly
        await do_pull(store, f"{addr}/lk/m:1", want=M.parse_platform("linux/arm64/v8"))
        assert store.get(f"{addr}/lk/m:1").id == _sha(arm.config)
        with pytest.raises(NotFound, match="no matching manifest for linux/s390x in the "
                           "manifest list entries"):
            await do_pull(store, f"{addr}/lk/m:1", want=M.parse_platform("linux/s390x"))
    serve(t)
    with pytest.raises(errors.UnsupportedError, match="windows"):
        M.parse_platform("windows/amd64")


def test_redirects_only_to_http(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        target = {"url": ""}

        async def hook(req: web.Request) -> web.StreamResponse | None:
            if "/blobs/" in req.path and not req.path.startswith("/elsewhere"):
                raise web.HTTPTemporaryRedirect(target["url"])
            if req.path.startswith("/elsewhere/"):
                assert "Authorization" not in req.headers
                return web.Response(body=fake.blobs[req.path.rsplit("/", 1)[1]])
            return None
        fake.hook = hook
        target["url"] = "ftp://127.0.0.1/x"
        with pytest.raises(errors.InvalidArgumentError, match="only http and https"):
            await do_pull(store, f"{addr}/lk/a:1")
        nothing_stored(store)
        # a relative redirect to http is followed

        async def hook2(req: web.Request) -> web.StreamResponse | None:
            if "/blobs/" in req.path:
                raise web.HTTPTemporaryRedirect(f"/elsewhere/{req.path.rsplit('/', 1)[1]}")
            return await hook(req)
        fake.hook = hook2
        await do_pull(store, f"{addr}/lk/a:1")
        assert store.get(f"{addr}/lk/a:1").id == _sha(img.config)
    serve(t)


def test_cut_connection_leaves_nothing_and_a_retry_completes(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image([("big", os.urandom(600_000))])

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        cut = {"on": True}

        async def hook(req: web.Request) -> web.StreamResponse | None:
            if cut["on"] and req.path.endswith(_sha(img.layer)):
                resp = web.StreamResponse(headers={"Content-Length": str(len(img.layer))})
                await resp.prepare(req)
                await resp.write(img.layer[:1000])
                assert req.transport is not None
                req.transport.close()  # the connection dies mid-blob
                return resp
            return None
        fake.hook = hook
        with pytest.raises((Unreachable, errors.InvalidArgumentError)):
            await do_pull(store, f"{addr}/lk/a:1")
        nothing_stored(store)
        cut["on"] = False
        await do_pull(store, f"{addr}/lk/a:1")
        assert store.get(f"{addr}/lk/a:1").id == _sha(img.config)
    serve(t)


def _basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_basic_and_bearer_challenges(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        token_asks: list[str] = []
        mode = {"scheme": "basic"}

        async def hook(req: web.Request) -> web.StreamResponse | None:
            if req.path == "/token":
                token_asks.append(req.query_string)
                if req.headers.get("Authorization") != _basic("alice", "s3cret"):
                    return web.Response(status=401)
                return web.json_response({"token": "tok-1", "expires_in": 300})
            got = req.headers.get("Authorization")
            if mode["scheme"] == "basic":
                ok, ch = got == _basic("alice", "s3cret"), 'Basic realm="lk"'
            else:
                ok = got == "Bearer tok-1"
                ch = (f'Bearer realm="http://{addr}/token",service="lk-reg",'
                      'scope="repository:lk/a:pull"')
            if not ok:
                return web.json_response({"errors": [{"code": "UNAUTHORIZED",
                                                      "message": "authentication required"}]},
                                         status=401, headers={"WWW-Authenticate": ch})
            return None
        fake.hook = hook
        with pytest.raises(NotFound, match="pull access denied for .*lk/a") as ei:
            await do_pull(store, f"{addr}/lk/a:1")
        good = AuthConfig(username="alice", password="s3cret")
        await do_pull(store, f"{addr}/lk/a:1", auth=good)
        mode["scheme"] = "bearer"
        tokens = TokenCache()
        bad = AuthConfig(username="alice", password="wrong")
        with pytest.raises(NotFound, match="incorrect username or password") as ei:
            await do_pull(store, f"{addr}/lk/a:1", auth=bad, tokens=tokens)
        assert "wrong" not in str(ei.value) and "s3cret" not in str(ei.value)
        await do_pull(store, f"{addr}/lk/a:1", auth=good, tokens=tokens)
        assert token_asks[-1] == "service=lk-reg&scope=repository:lk/a:pull" or \
            "scope=repository%3Alk%2Fa%3Apull" in token_asks[-1]
        n = len(token_asks)
        await do_pull(store, f"{addr}/lk/a:1", auth=good, tokens=tokens)
        assert len(token_asks) == n  # cached until it expires
    serve(t)
    assert "s3cret" not in repr(AuthConfig(username="alice", password="s3cret"))


def test_push_then_pull_back_skips_the_layer(tmp_path: Path) -> None:
    src = ImageStore(tmp_path / "src")
    img = Image(GOOD)
    uploads: dict[str, bytearray] = {}

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        await do_pull(src, f"{addr}/lk/a:1")
        src.tag(f"{addr}/lk/a:1", f"{addr}/lk/b:2")

        async def hook(req: web.Request) -> web.StreamResponse | None:
            p = req.path
            if req.method == "HEAD" and "/blobs/" in p:
                d = p.rsplit("/", 1)[1]
                if d in fake.blobs:
                    return web.Response(headers={"Content-Length": str(len(fake.blobs[d]))})
                return web.Response(status=404)
            if req.method == "POST" and p.endswith("/blobs/uploads/"):
                uid = f"u{len(uploads)}"
                uploads[uid] = bytearray()
                return web.Response(status=202, headers={"Location": f"/v2/up/{uid}"})
            if p.startswith("/v2/up/") and req.method in ("PATCH", "PUT"):
                uid = p.rsplit("/", 1)[1]
                uploads[uid] += await req.read()
                if req.method == "PUT":
                    d = req.query["digest"]
                    assert _sha(bytes(uploads[uid])) == d
                    fake.blobs[d] = bytes(uploads[uid])
                    return web.Response(status=201)
                return web.Response(status=202, headers={"Location": f"/v2/up/{uid}"})
            if req.method == "PUT" and "/manifests/" in p:
                repo, _, tag = p[4:].partition("/manifests/")
                fake.manifests[f"{repo}:{tag}"] = (req.headers["Content-Type"], await req.read())
                return web.Response(status=201)
            return None
        fake.hook = hook
        ref = reference.parse(f"{addr}/lk/b:2")
        async with new_session() as s:
            msgs = [m async for m in push.run(
                s, src, DaemonConfig(), TokenCache(), DigestMap(src), ref, AuthConfig(),
                push.images_to_push(src, ref, False))]
        # the layer came from this registry: HEAD found it, nothing uploaded (the config
        # is there too)
        assert any(m.get("status") == "Layer already exists" for m in msgs)
        assert uploads == {}
        aux = msgs[-1]["aux"]
        assert aux["Tag"] == "2" and aux["Digest"].startswith("sha256:")
        assert msgs[-2]["status"] == f"2: digest: {aux['Digest']} size: {aux['Size']}"
        dst = ImageStore(tmp_path / "dst")
        await do_pull(dst, f"{addr}/lk/b:2")
        assert dst.get(f"{addr}/lk/b:2").id == _sha(img.config)
        with pytest.raises(NotFound, match="An image does not exist locally with the tag: "
                           f"{addr}/lk/nope"):
            push.images_to_push(src, reference.parse(f"{addr}/lk/nope:1"), False)
    serve(t)


def test_push_uploads_a_new_layer_gzip_and_remembers_it(tmp_path: Path) -> None:
    from labkit.engine.images.archive import import_rootfs
    src = ImageStore(tmp_path / "src")
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(_tar([("etc/hi", os.urandom(3000))]))

    async def t(fake: Fake, addr: str) -> None:
        img = import_rootfs(src, rootfs, f"{addr}/lk/new:1")
        uploads: dict[str, bytearray] = {}

        async def hook(req: web.Request) -> web.StreamResponse | None:
            p = req.path
            if req.method == "HEAD" and "/blobs/" in p:
                d = p.rsplit("/", 1)[1]
                return web.Response(headers={"Content-Length": str(len(fake.blobs[d]))}) \
                    if d in fake.blobs else web.Response(status=404)
            if req.method == "POST" and p.endswith("/blobs/uploads/"):
                uid = f"u{len(uploads)}"
                uploads[uid] = bytearray()
                return web.Response(status=202, headers={"Location": f"/v2/up/{uid}?_state=x"})
            if p.startswith("/v2/up/") and req.method == "PUT":
                uid = p.rsplit("/", 1)[1]
                assert req.query["_state"] == "x"
                uploads[uid] += await req.read()
                assert _sha(bytes(uploads[uid])) == req.query["digest"]
                fake.blobs[req.query["digest"]] = bytes(uploads[uid])
                return web.Response(status=201)
            if req.method == "PUT" and "/manifests/" in p:
                repo, _, tag = p[4:].partition("/manifests/")
                fake.manifests[f"{repo}:{tag}"] = (req.headers["Content-Type"], await req.read())
                return web.Response(status=201)
            return None
        fake.hook = hook
        ref = reference.parse(f"{addr}/lk/new:1")
        async with new_session() as s:
            msgs = [m async for m in push.run(
                s, src, DaemonConfig(), TokenCache(), DigestMap(src), ref, AuthConfig(),
                push.images_to_push(src, ref, False))]
        statuses = [m.get("status") for m in msgs]
        assert statuses[0] == f"The push refers to repository [{addr}/lk/new]"
        assert "Pushed" in statuses and "Pushing" in statuses
        assert len(uploads) == 2  # the layer and the config
        ctype, raw = fake.manifests["lk/new:1"]
        man = json.loads(raw)
        assert ctype == M.DOCKER_MANIFEST and man["mediaType"] == M.DOCKER_MANIFEST
        layer = fake.blobs[man["layers"][0]["digest"]]
        assert layer[:2] == b"\x1f\x8b"  # gzip
        assert _sha(gzip.decompress(layer)) == img.config["rootfs"]["diff_ids"][0]
        assert DigestMap(src).diff_id(addr, man["layers"][0]["digest"]) == \
            img.config["rootfs"]["diff_ids"][0]
        assert src.repo_digests(img.id) == [f"{addr}/lk/new@{_sha(raw)}"]
    serve(t)


def test_a_cached_token_is_never_reused_for_other_credentials(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)

        async def hook(req: web.Request) -> web.StreamResponse | None:
            if req.path == "/token":
                if req.headers.get("Authorization") == _basic("alice", "s3cret"):
                    return web.json_response({"token": "alice-tok", "expires_in": 300})
                return web.json_response({"token": "anon-tok", "expires_in": 300})
            if req.headers.get("Authorization") != "Bearer alice-tok":
                return web.json_response(
                    {"errors": [{"code": "DENIED", "message": "requested access to the "
                                 "resource is denied"}]}, status=401,
                    headers={"WWW-Authenticate": f'Bearer realm="http://{addr}/token",'
                             'service="s"'})
            return None
        fake.hook = hook
        tokens = TokenCache()
        await do_pull(store, f"{addr}/lk/a:1", auth=AuthConfig(username="alice",
                                                               password="s3cret"),
                      tokens=tokens)
        with pytest.raises(NotFound, match="pull access denied"):
            await do_pull(store, f"{addr}/lk/a:1", tokens=tokens)
    serve(t)


def test_credentials_never_leave_the_registry_host(tmp_path: Path) -> None:
    """A blob redirect (or an upload Location) to another host gets no Authorization."""
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)
    seen: list[tuple[str, str | None]] = []

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)

        async def hook(req: web.Request) -> web.StreamResponse | None:
            seen.append((req.host, req.headers.get("Authorization")))
            if req.host.startswith("localhost") and req.path.startswith("/cdn/"):
                return web.Response(body=fake.blobs[req.path.rsplit("/", 1)[1]])
            if req.headers.get("Authorization") != _basic("alice", "s3cret"):
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
            if "/blobs/" in req.path:  # served from "another host" (same server, other name)
                raise web.HTTPFound(f"http://localhost:{fake.port}/cdn/"
                                    f"{req.path.rsplit('/', 1)[1]}")
            return None
        fake.hook = hook
        await do_pull(store, f"{addr}/lk/a:1", auth=AuthConfig(username="alice",
                                                               password="s3cret"))
        assert store.get(f"{addr}/lk/a:1").id == _sha(img.config)
    serve(t)
    assert any(h.startswith("localhost") for h, _ in seen)
    assert all(a is None for h, a in seen if h.startswith("localhost"))


def test_too_many_layers_refused() -> None:
    layer = {"mediaType": M.DOCKER_LAYER, "size": 1, "digest": "sha256:" + "a" * 64}
    raw = json.dumps({"schemaVersion": 2, "mediaType": M.DOCKER_MANIFEST,
                      "config": {"mediaType": M.DOCKER_CONFIG, "size": 1,
                                 "digest": "sha256:" + "b" * 64},
                      "layers": [layer] * 126}).encode()
    with pytest.raises(errors.InvalidArgumentError, match="126 layers"):
        M.parse(M.DOCKER_MANIFEST, raw, "x")


def test_upload_location_on_another_host_gets_no_credentials(tmp_path: Path) -> None:
    from labkit.engine.images.archive import import_rootfs
    src = ImageStore(tmp_path / "src")
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(_tar([("etc/x", b"x")]))
    seen: list[tuple[str, str, str | None]] = []

    async def t(fake: Fake, addr: str) -> None:
        import_rootfs(src, rootfs, f"{addr}/lk/up:1")

        async def hook(req: web.Request) -> web.StreamResponse | None:
            seen.append((req.method, req.host, req.headers.get("Authorization")))
            if req.host.startswith("localhost"):  # the "other host" takes the upload
                if req.method == "PUT" and req.path.startswith("/up/"):
                    fake.blobs[req.query["digest"]] = await req.read()
                    return web.Response(status=201)
                return web.Response(status=404)
            if req.headers.get("Authorization") != _basic("alice", "s3cret"):
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
            if req.method == "HEAD":
                return web.Response(status=404)
            if req.method == "POST":
                return web.Response(status=202, headers={
                    "Location": f"http://localhost:{fake.port}/up/1"})
            if req.method == "PUT" and "/manifests/" in req.path:
                return web.Response(status=201)
            return None
        fake.hook = hook
        ref = reference.parse(f"{addr}/lk/up:1")
        async with new_session() as s:
            [m async for m in push.run(s, src, DaemonConfig(), TokenCache(), DigestMap(src), ref,
                                       AuthConfig(username="alice", password="s3cret"),
                                       push.images_to_push(src, ref, False))]
    serve(t)
    other = [x for x in seen if x[1].startswith("localhost")]
    assert other and all(a is None for _, _, a in other)


def test_identity_and_registry_tokens(tmp_path: Path) -> None:
    """identitytoken: an OAuth2 refresh_token POST to the realm (distribution oauth.md);
    registrytoken: used as the bearer token as it is."""
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        forms: list[dict[str, str]] = []

        async def hook(req: web.Request) -> web.StreamResponse | None:
            if req.path == "/token":
                assert req.method == "POST"
                form = dict(await req.post())  # type: ignore[arg-type]
                forms.append({k: str(v) for k, v in form.items()})
                if form.get("refresh_token") != "refresh-1":
                    return web.Response(status=401)
                return web.json_response({"access_token": "acc-1", "expires_in": 60})
            if req.headers.get("Authorization") not in ("Bearer acc-1", "Bearer reg-1"):
                return web.Response(status=401, headers={
                    "WWW-Authenticate": f'Bearer realm="http://{addr}/token",service="s"'})
            return None
        fake.hook = hook
        await do_pull(store, f"{addr}/lk/a:1", auth=AuthConfig(identitytoken="refresh-1"))
        assert forms[0]["grant_type"] == "refresh_token" and forms[0]["service"] == "s"
        assert forms[0]["scope"] == "repository:lk/a:pull"
        n = len(forms)
        await do_pull(store, f"{addr}/lk/a:1", auth=AuthConfig(registrytoken="reg-1"))
        assert len(forms) == n
    serve(t)


def test_two_pulls_of_one_image_at_once(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image([("big", os.urandom(400_000))])

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/a", "1", img)
        fake.add("lk/a", "2", img)
        a, b = await asyncio.gather(do_pull(store, f"{addr}/lk/a:1"),
                                    do_pull(store, f"{addr}/lk/a:2"))
        assert a[-1]["status"].startswith("Status: ") and b[-1]["status"].startswith("Status: ")
        assert store.get(f"{addr}/lk/a:1").id == store.get(f"{addr}/lk/a:2").id
        assert len(os.listdir(store.root / "layers")) == 1
        assert os.listdir(store.root / "tmp") == []
    serve(t)


def test_artifacts_and_foreign_os_refused(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    img = Image(GOOD)
    helm = json.loads(img.manifest)
    helm["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    with pytest.raises(errors.UnsupportedError, match="helm.config"):
        M.parse(M.DOCKER_MANIFEST, json.dumps(helm).encode(), "x")
    win = Image(GOOD)
    cfg = json.loads(win.config)
    cfg["os"] = "windows"
    win.config = json.dumps(cfg).encode()
    man = json.loads(win.manifest)
    man["config"].update(size=len(win.config), digest=_sha(win.config))
    win.manifest = json.dumps(man).encode()
    win.blobs[_sha(win.config)] = win.config

    async def t(fake: Fake, addr: str) -> None:
        fake.add("lk/w", "1", win)
        with pytest.raises(errors.UnsupportedError, match='operating system "windows"'):
            await do_pull(store, f"{addr}/lk/w:1")
        nothing_stored(store)
    serve(t)


def test_push_gzip_level_adapts_and_round_trips(tmp_path: Path) -> None:
    """Compressible layers get deflate level 1; incompressible ones stored blocks (level 0).
    Both are valid gzip whose content is the layer, with the digest of the bytes written."""
    import gzip as _gz
    import hashlib as _hl
    import random as _rnd

    from labkit.engine.registry import push as _push

    text = tmp_path / "text.tar"
    text.write_bytes(b"labkit layer line\n" * 40000)
    noise = tmp_path / "noise.tar"
    noise.write_bytes(_rnd.Random(7).randbytes(1 << 20))
    assert _push._level_for(text) == 1
    assert _push._level_for(noise) == 0
    for src in (text, noise):
        out = tmp_path / (src.name + ".gz")
        digest, size = _push._gzip(src, out)
        blob = out.read_bytes()
        assert (digest, size) == (f"sha256:{_hl.sha256(blob).hexdigest()}", len(blob))
        assert _gz.decompress(blob) == src.read_bytes()
    assert (tmp_path / "text.tar.gz").stat().st_size < text.stat().st_size // 10
