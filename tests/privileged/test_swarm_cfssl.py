"""labkit.engine.swarm.cfssl: an external CA. A real ``cfssl serve`` (Debian's golang-cfssl)
on loopback signs node CSRs and we verify what it returns; an in-process fake signer plays
the dishonest or broken CA that the real one never is. Every cfssl process is ours, stopped
by pid."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labkit import errors
from labkit.engine.swarm import ca
from labkit.engine.swarm.cfssl import ExternalCA, parse_external_ca

pytestmark = pytest.mark.privileged
needs_cfssl = pytest.mark.skipif(
    shutil.which("cfssl") is None,
    reason="cfssl is not installed (Debian golang-cfssl, scripts/debian-packages-swarm.txt; "
           "make setup)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cfssl_serve(root: ca.RootCA, tmp: Path, *, tls: bool = False,
                config: str | None = None) -> Iterator[str]:
    """``cfssl serve`` signing with ``root`` on a free loopback port; yields its URL."""
    d = tmp / f"cfssl-{os.getpid()}-{root.digest()[:8]}"
    d.mkdir(mode=0o700)
    assert root.key_pem is not None
    (d / "ca.pem").write_bytes(root.cert_pem)
    fd = os.open(d / "ca-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, root.key_pem)
    os.close(fd)
    port = _free_port()
    argv = ["cfssl", "serve", "-address", "127.0.0.1", "-port", str(port),
            "-ca", str(d / "ca.pem"), "-ca-key", str(d / "ca-key.pem"), "-loglevel", "2"]
    if tls:  # the server's own TLS certificate, from the same root (IP SAN 127.0.0.1)
        key, csr = ca.new_key_and_csr("tls")
        (d / "tls.pem").write_bytes(root.issue(csr, node_id=ca.new_id(), role="manager",
                                               cluster_id=ca.new_id(), ips=["127.0.0.1"]))
        fd = os.open(d / "tls-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, key)
        os.close(fd)
        argv += ["-tls-cert", str(d / "tls.pem"), "-tls-key", str(d / "tls-key.pem")]
    if config:
        (d / "config.json").write_text(config)
        argv += ["-config", str(d / "config.json")]
    log = open(d / "serve.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (d / "serve.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "cfssl serve did not listen within 15 s"
                time.sleep(0.05)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
        shutil.rmtree(d)


@pytest.fixture(scope="module")
def root() -> ca.RootCA:
    return ca.RootCA.create()


def _sign(ext: ExternalCA, role: ca.Role = "manager", ips: tuple[str, ...] = ("127.0.0.1",)
          ) -> tuple[bytes, str, str, bytes]:
    node, cluster = ca.new_id(), ca.new_id()
    _, csr = ca.new_key_and_csr("whatever the node asks for")
    pem = asyncio.run(ext.sign(csr, node_id=node, role=role, cluster_id=cluster, ips=ips))
    return pem, node, cluster, csr


# --- a real cfssl ----------------------------------------------------------------------------


@needs_cfssl
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_cfssl_signs_what_we_ask(root: ca.RootCA, tmp_path: Path, tls: bool) -> None:
    with cfssl_serve(root, tmp_path, tls=tls) as url:
        ext = ExternalCA(url, root.cert_pem)
        pem, node, cluster, _ = _sign(ext)
        ident = root.trust_only().verify(pem, role="manager", cluster_id=cluster)
        assert ident.node_id == node
        s = ca.cert_summary(pem)
        assert s["sans"] == ["swarm-manager", node, "127.0.0.1"]
        assert s["subject"] == f"CN={node},OU=swarm-manager,O={cluster}"
        assert asyncio.run(ext.info()) == root.cert_pem
        worker, _, _, _ = _sign(ext, role="worker", ips=())
        with pytest.raises(errors.ForbiddenError, match="is for a worker, a manager is required"):
            root.verify(worker, role="manager")


@needs_cfssl
def test_cfssl_of_another_ca_is_refused(root: ca.RootCA, tmp_path: Path) -> None:
    with cfssl_serve(ca.RootCA.create(), tmp_path) as url, pytest.raises(
            errors.ForbiddenError, match="returned a bad certificate: certificate is not "
                                         "signed by this swarm's root CA"):
        _sign(ExternalCA(url, root.cert_pem))
    # over https the server's own certificate is checked against the same root first
    with cfssl_serve(ca.RootCA.create(), tmp_path, tls=True) as url, pytest.raises(
            errors.ConflictError, match="is unreachable: .*(SSL|certificate)"):
        _sign(ExternalCA(url, root.cert_pem))


@needs_cfssl
def test_cfssl_profile_and_refusal(root: ca.RootCA, tmp_path: Path) -> None:
    """A signing profile sets the lifetime (the sign API has no expiry field); a request the
    profile's policy refuses comes back as ConflictError with cfssl's own words."""
    usages = ["signing", "key encipherment", "server auth", "client auth"]
    config = json.dumps({"signing": {
        "default": {"expiry": "8760h", "usages": usages},
        "profiles": {"short": {"expiry": "2h", "usages": usages},
                     "strict": {"expiry": "2h", "usages": usages,
                                "name_whitelist": "^nomatch$"}}}})
    with cfssl_serve(root, tmp_path, config=config) as url:
        pem, *_ = _sign(ExternalCA(url, root.cert_pem, profile="short"))
        ident = ca.identity(pem)
        assert ident.not_after - ident.not_before <= ca.dt.timedelta(hours=2, minutes=6)
        with pytest.raises(errors.ConflictError,
                           match=f"external CA {url}/api/v1/cfssl/sign refused: Request does "
                                 "not match policy whitelist"):
            _sign(ExternalCA(url, root.cert_pem, profile="strict"))


def test_unreachable_is_conflict(root: ca.RootCA) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(errors.ConflictError, match=f"external CA {url}/api/v1/cfssl/sign is "
                                                   "unreachable"):
        _sign(ExternalCA(url, root.cert_pem, timeout=5))


# --- a dishonest or broken signer (in-process fake) --------------------------------------------


Handler = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


async def _with_fake(handler: Handler, fn: Callable[[str], Awaitable[Any]]) -> Any:
    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(await request.json())
    app = web.Application()
    app.router.add_post("/api/v1/cfssl/sign", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        return await fn(f"http://{host}:{port}")
    finally:
        await runner.cleanup()


def _fake_sign(root: ca.RootCA, handler: Handler) -> None:
    async def go(url: str) -> Any:
        _, csr = ca.new_key_and_csr("n")
        return await ExternalCA(url, root.cert_pem).sign(
            csr, node_id=ca.new_id(), role="worker", cluster_id=ca.new_id())
    asyncio.run(_with_fake(handler, go))


def test_fake_signer_with_another_key_is_refused(root: ca.RootCA) -> None:
    async def swap_key(req: dict[str, Any]) -> web.StreamResponse:
        _, other_csr = ca.new_key_and_csr("x")  # the signer keeps a key of its own
        s = req["subject"]
        pem = root.issue(other_csr, node_id=s["CN"], role="worker",
                         cluster_id=s["names"][0]["O"])
        return web.json_response({"success": True, "result": {"certificate": pem.decode()}})
    with pytest.raises(errors.ForbiddenError, match="certificate for another public key"):
        _fake_sign(root, swap_key)


def test_fake_signer_with_another_identity_is_refused(root: ca.RootCA) -> None:
    async def as_manager(req: dict[str, Any]) -> web.StreamResponse:
        s = req["subject"]
        pem = root.issue(req["certificate_request"].encode(), node_id=s["CN"], role="manager",
                         cluster_id=s["names"][0]["O"])
        return web.json_response({"success": True, "result": {"certificate": pem.decode()}})
    with pytest.raises(errors.ForbiddenError, match="is for a manager, a worker is required"):
        _fake_sign(root, as_manager)

    async def other_node(req: dict[str, Any]) -> web.StreamResponse:
        pem = root.issue(req["certificate_request"].encode(), node_id=ca.new_id(), role="worker",
                         cluster_id=req["subject"]["names"][0]["O"])
        return web.json_response({"success": True, "result": {"certificate": pem.decode()}})
    with pytest.raises(errors.ForbiddenError, match="returned a certificate for node"):
        _fake_sign(root, other_node)


@pytest.mark.parametrize("answer,match", [
    (web.Response(text="<html>proxy error</html>", status=502),
     "answered HTTP 502 without a cfssl JSON response"),
    (web.json_response({"success": False, "errors": [{"code": 1, "message": "no way"}]},
                       status=400), "refused: no way"),
    (web.json_response({"success": True, "result": None}), "success with no result"),
    (web.json_response({"success": True, "result": {"certificate": 3}}), "no certificate"),
    (web.json_response([1, 2]), "without a cfssl JSON response"),
])
def test_fake_signer_broken_answers(root: ca.RootCA, answer: web.Response, match: str) -> None:
    async def broken(req: dict[str, Any]) -> web.StreamResponse:
        return answer
    with pytest.raises(errors.ConflictError, match=match):
        _fake_sign(root, broken)


def test_sign_needs_ca_and_checks_arguments(root: ca.RootCA) -> None:
    _, csr = ca.new_key_and_csr("n")
    with pytest.raises(errors.InvalidArgumentError, match="cacert"):
        asyncio.run(ExternalCA("http://127.0.0.1:1").sign(
            csr, node_id=ca.new_id(), role="worker", cluster_id=ca.new_id()))
    ext = ExternalCA("http://127.0.0.1:1", root.cert_pem)
    with pytest.raises(errors.InvalidArgumentError, match="not an IP"):
        asyncio.run(ext.sign(csr, node_id=ca.new_id(), role="worker", cluster_id=ca.new_id(),
                             ips=["evil.example"]))
    with pytest.raises(errors.InvalidArgumentError, match="node id"):
        asyncio.run(ext.sign(csr, node_id="x", role="worker", cluster_id=ca.new_id()))
    for bad in ("ftp://x", "http://", "http://u:p@h/", "http://h/?q=1", "nourl"):
        with pytest.raises(errors.InvalidArgumentError, match="external CA url"):
            ExternalCA(bad)


# --- the --external-ca flag and Docker's ExternalCA JSON ---------------------------------------


def test_parse_external_ca(root: ca.RootCA, tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(root.cert_pem)
    assert parse_external_ca(f"protocol=cfssl,url=https://127.0.0.1:8888/,cacert={cafile}") == {
        "Protocol": "cfssl", "URL": "https://127.0.0.1:8888", "CACert": root.cert_pem.decode(),
        "Options": {}}
    assert parse_external_ca("url=http://h:1,protocol=CFSSL")["CACert"] == ""
    assert parse_external_ca('"protocol=cfssl","url=http://h:1/a,b"')["URL"] == "http://h:1/a,b"
    cases = [
        ("protocol=acme,url=http://h", errors.UnsupportedError, "'acme'"),
        ("url=http://h", errors.InvalidArgumentError, "protocol is required"),
        ("protocol=cfssl", errors.InvalidArgumentError, "url is required"),
        ("protocol=cfssl,url=http://h,color=red", errors.InvalidArgumentError,
         "unknown key 'color'"),
        ("protocol=cfssl,url=http://h,url=http://i", errors.InvalidArgumentError, "twice"),
        ("protocol=cfssl,url", errors.InvalidArgumentError, "not key=value"),
        (f"protocol=cfssl,url=http://h,cacert={tmp_path}/none.pem", errors.InvalidArgumentError,
         "none.pem"),
        ("protocol=cfssl,url=file:///etc/passwd", errors.InvalidArgumentError, "http"),
    ]
    for spec, exc, match in cases:
        with pytest.raises(exc, match=match):
            parse_external_ca(spec)
    notca = tmp_path / "leaf.pem"
    _, csr = ca.new_key_and_csr("n")
    notca.write_bytes(root.issue(csr, node_id=ca.new_id(), role="worker", cluster_id=ca.new_id()))
    with pytest.raises(errors.InvalidArgumentError, match="not a CA"):
        parse_external_ca(f"protocol=cfssl,url=http://h,cacert={notca}")


def test_from_spec(root: ca.RootCA) -> None:
    spec = {"Protocol": "cfssl", "URL": "http://127.0.0.1:9/", "CACert": "",
            "Options": {"profile": "short"}}
    ext = ExternalCA.from_spec(spec, root_pem=root.cert_pem)
    assert (ext.url, ext.ca_cert_pem, ext.profile) == (
        "http://127.0.0.1:9", root.cert_pem, "short")
    with pytest.raises(errors.InvalidArgumentError, match="unknown option"):
        ExternalCA.from_spec({**spec, "Options": {"auth": "x"}})
    with pytest.raises(errors.UnsupportedError):
        ExternalCA.from_spec({**spec, "Protocol": "vault"})
