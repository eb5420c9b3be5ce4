"""Pull, push and login through labkit's daemon with the real Docker CLI, docker-py and
podman, against a real registry (Debian's docker-registry, labkit.measure.registry) on
127.0.0.1: with and without htpasswd auth, and as a docker.io mirror.

Images these tests make are tagged lk-test/... or REGISTRY/lk/...; each test removes its own.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.measure.peers import docker_cli
from labkit.measure.registry import LocalRegistry
from labkit.measure.sandbox import LabEngine

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


def _ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    return r.stdout.decode()


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture
def cleanup(docker: Docker) -> Iterator[list[str]]:
    refs: list[str] = []
    yield refs
    for r in refs:
        docker("rmi", "-f", r)


def unique_image(docker: Docker, tag: str, tmp_path: Path, name: str) -> str:
    """A runnable one-layer image whose layer no other image has: busybox's filesystem
    with /lk-id holding a fresh id (docker export, then import).  Returns the id."""
    ident = uuid.uuid4().hex
    _ok(docker("run", "--name", name, "busybox", "sh", "-c", f"echo {ident} > /lk-id"))
    tar = tmp_path / "rootfs.tar"
    try:
        _ok(docker("export", name, "-o", str(tar)))
    finally:
        docker("rm", "-f", name)
    _ok(docker("import", "--change", 'CMD ["cat", "/lk-id"]', str(tar), tag))
    return ident


def test_push_pull_run_roundtrip(docker: Docker, registry: LocalRegistry, tmp_path: Path,
                                 name: str, cleanup: list[str]) -> None:
    ref = f"{registry.address}/lk/rt:1"
    cleanup += ["lk-test/rt:1", ref]
    ident = unique_image(docker, "lk-test/rt:1", tmp_path, name)
    _ok(docker("tag", "lk-test/rt:1", ref))
    out = _ok(docker("push", ref))
    assert f"The push refers to repository [{registry.address}/lk/rt]" in out
    assert "Pushed" in out and "1: digest: sha256:" in out
    digest = out.split("digest: ", 1)[1].split()[0]
    again = _ok(docker("push", ref))
    assert "Layer already exists" in again and digest in again
    # drop every local name: the layer goes too, so the pull must download it
    _ok(docker("rmi", ref))
    _ok(docker("rmi", "lk-test/rt:1"))
    out = _ok(docker("pull", ref))
    assert "Pull complete" in out and f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {ref}" in out
    assert _ok(docker("inspect", "-f", "{{json .RepoDigests}}", ref)).strip() == \
        json.dumps([f"{registry.address}/lk/rt@{digest}"]).replace(" ", "")
    assert _ok(docker("run", "--rm", ref)).strip() == ident
    assert f"Image is up to date for {ref}" in _ok(docker("pull", ref))
    # by digest
    assert f"Image is up to date for {registry.address}/lk/rt@{digest}" in _ok(
        docker("pull", f"{registry.address}/lk/rt@{digest}"))
    # run of an absent image: the CLI's implicit pull (create 404, pull, create)
    _ok(docker("rmi", ref))
    r = docker("run", "--rm", ref)
    assert _ok(r).strip() == ident and b"Unable to find image" in r.stderr


def test_pull_and_push_errors(docker: Docker, registry: LocalRegistry) -> None:
    r = docker("pull", f"{registry.address}/lk/rt:nosuch")
    assert r.returncode == 1
    assert (f"manifest for {registry.address}/lk/rt:nosuch not found: manifest unknown"
            in r.stderr.decode())
    r = docker("push", f"{registry.address}/lk/absent:1")
    assert r.returncode == 1
    assert (f"An image does not exist locally with the tag: {registry.address}/lk/absent"
            in r.stderr.decode())
    r = docker("pull", "127.0.0.1:9/lk/x:1")  # nothing listens: both URLs are named
    assert r.returncode == 1 and "http://127.0.0.1:9/v2/" in r.stderr.decode()


def test_login_then_push_and_pull_with_htpasswd(docker: Docker, engine: LabEngine,
                                                tmp_path: Path, name: str,
                                                cleanup: list[str]) -> None:
    with LocalRegistry(users={"alice": "s3cret-pw"}) as reg:
        ref = f"{reg.address}/lk/auth:1"
        cleanup += ["lk-test/auth:1", ref]
        unique_image(docker, "lk-test/auth:1", tmp_path, name)
        _ok(docker("tag", "lk-test/auth:1", ref))
        r = docker("push", ref)
        assert r.returncode == 1 and b"s3cret" not in r.stderr + r.stdout
        r = docker("login", "-u", "alice", "--password-stdin", reg.address, input=b"wrong\n")
        assert r.returncode == 1
        assert f"login attempt to http://{reg.address}/v2/ failed with status: 401" in \
            r.stderr.decode()
        out = _ok(docker("login", "-u", "alice", "--password-stdin", reg.address,
                         input=b"s3cret-pw\n"))
        assert "Login Succeeded" in out
        cfg = json.loads((Path(engine.docker_env["DOCKER_CONFIG"]) / "config.json").read_text())
        assert base64.b64decode(cfg["auths"][reg.address]["auth"]) == b"alice:s3cret-pw"
        try:
            out = _ok(docker("push", ref))
            assert "Pushed" in out
            _ok(docker("rmi", ref))
            _ok(docker("rmi", "lk-test/auth:1"))
            assert "Pull complete" in _ok(docker("pull", ref))
        finally:
            docker("logout", reg.address)
        # the daemon's log never holds the password
        assert "s3cret" not in (engine.run / "daemon.log").read_text(errors="replace")


def test_docker_py_login_push_pull(engine: LabEngine, tmp_path: Path, docker: Docker,
                                   name: str, cleanup: list[str]) -> None:
    docker_py = pytest.importorskip("docker")
    with LocalRegistry(users={"bob": "pw-bob"}) as reg:
        repo = f"{reg.address}/lk/py"
        cleanup += ["lk-test/py:1", f"{repo}:1"]
        unique_image(docker, "lk-test/py:1", tmp_path, name)
        client = docker_py.DockerClient(base_url=f"unix://{engine.socket}")
        try:
            with pytest.raises(docker_py.errors.APIError) as ei:
                client.login("bob", "nope", registry=reg.address)
            assert ei.value.status_code == 401
            assert client.login("bob", "pw-bob", registry=reg.address)["Status"] == \
                "Login Succeeded"
            client.images.get("lk-test/py:1").tag(repo, "1")
            lines = list(client.images.push(repo, "1", stream=True, decode=True))
            aux = [x["aux"] for x in lines if "aux" in x]
            assert aux and aux[0]["Tag"] == "1" and aux[0]["Digest"].startswith("sha256:")
            client.images.remove(f"{repo}:1")
            client.images.remove("lk-test/py:1")
            img = client.images.pull(repo, tag="1")
            assert f"{repo}:1" in img.tags
            assert img.attrs["RepoDigests"] == [f"{repo}@{aux[0]['Digest']}"]
        finally:
            client.close()


def test_docker_io_names_come_from_the_mirror(docker: Docker, registry: LocalRegistry,
                                              tmp_path: Path, name: str,
                                              cleanup: list[str]) -> None:
    """daemon.json registry-mirrors: `docker pull lkmirror:1` is docker.io/library/lkmirror
    and comes from the mirror (this machine has no route to Docker Hub)."""
    src = f"{registry.address}/library/lkmirror:1"
    cleanup += ["lk-test/mirror:1", src]
    ident = unique_image(docker, "lk-test/mirror:1", tmp_path, name)
    _ok(docker("tag", "lk-test/mirror:1", src))
    _ok(docker("push", src))
    hub_bb = f"{registry.address}/library/busybox:latest"
    cleanup.append(hub_bb)
    _ok(docker("tag", "busybox", hub_bb))
    bb_digest = _ok(docker("push", hub_bb)).split("digest: ", 1)[1].split()[0]
    with LabEngine("mir", config={"registry-mirrors": [registry.url]}) as other:
        env = other.docker_env

        def d(*a: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([docker_cli(), *a], env=env, capture_output=True,
                                  timeout=120, check=False)
        info = json.loads(_ok(d("info", "--format", "{{json .RegistryConfig}}")))
        assert info["Mirrors"] == [registry.url + "/"]
        out = _ok(d("pull", "lkmirror:1"))
        assert "Pulling from library/lkmirror" in out and "Pull complete" in out
        assert "Status: Downloaded newer image for lkmirror:1" in out
        assert _ok(d("run", "--rm", "lkmirror:1")).strip() == ident
        # busybox = docker.io/library/busybox:latest, from the mirror too
        out = _ok(d("pull", "busybox"))
        assert "Pulling from library/busybox" in out and f"Digest: {bb_digest}" in out
        assert f"busybox@{bb_digest}" in _ok(d("inspect", "-f", "{{.RepoDigests}}", "busybox"))
        assert _ok(d("run", "--rm", "busybox", "echo", "ok")).strip() == "ok"
        # a name the mirror lacks: the error names the mirror and Docker Hub
        r = d("pull", "lknomirror:1")
        err = r.stderr.decode()
        assert r.returncode == 1 and registry.url in err and "registry-1.docker.io" in err
        d("rmi", "lkmirror:1")


def test_podman_runs_what_labkit_pushed_and_the_other_way(
        docker: Docker, registry: LocalRegistry, tmp_path: Path, name: str,
        cleanup: list[str]) -> None:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed")
    root = Path(tempfile.mkdtemp(prefix="lk-pm-", dir="/tmp"))  # podman: runroot <= 50 chars
    base = [podman, "--root", str(root / "root"), "--runroot", str(root / "run"),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend",
            "file"]
    env = dict(os.environ, XDG_RUNTIME_DIR=str(root / "xdg"), REGISTRY_AUTH_FILE=str(
        root / "auth.json"))
    (root / "xdg").mkdir()
    (root / "auth.json").write_text("{}")

    def pm(*a: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*base, *a], env=env, capture_output=True, timeout=180,
                              check=False)
    ref = f"{registry.address}/lk/pm:1"
    cleanup += ["lk-test/pm:1", ref, f"{registry.address}/lk/frompodman:1"]
    ident = unique_image(docker, "lk-test/pm:1", tmp_path, name)
    _ok(docker("tag", "lk-test/pm:1", ref))
    _ok(docker("push", ref))
    try:
        _ok(pm("pull", "--tls-verify=false", ref))
        # crun (podman's default) refuses this hybrid-cgroup host; runc copes
        run = pm("run", "--rm", "--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024",
                 "--ulimit", "nproc=1024:1024", ref)
        assert _ok(run).strip() == ident
        # podman pushes (its own manifest and compression); labkit pulls and runs it
        _ok(pm("tag", ref, f"{registry.address}/lk/frompodman:1"))
        _ok(pm("push", "--tls-verify=false", f"{registry.address}/lk/frompodman:1"))
        out = _ok(docker("pull", f"{registry.address}/lk/frompodman:1"))
        assert "Digest: sha256:" in out
        assert _ok(docker("run", "--rm", f"{registry.address}/lk/frompodman:1")).strip() == \
            ident
    finally:
        pm("rmi", "-a", "-f")
        pm("system", "reset", "-f")
        shutil.rmtree(root, ignore_errors=True)


class TokenServer:
    """A Docker token-auth server (distribution docs/spec/auth/token.md) for one user: RS256
    JWTs signed by a key made here, whose self-signed cert the registry trusts
    (auth.token.rootcertbundle).  Runs an aiohttp app in a thread on 127.0.0.1."""

    def __init__(self, base: Path, user: str, password: str) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.user, self.password = user, password
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lk-token-test")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(hours=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.bundle = base / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.der = self.cert.public_bytes(serialization.Encoding.DER)
        self.asked: list[str] = []
        self.port = 0

    def _b64(self, b: bytes) -> str:
        return base64.urlsafe_b64encode(b).decode().rstrip("=")

    def token(self, service: str, access: list[dict[str, object]]) -> str:
        import time as _t

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        head = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.der).decode()]}
        now = int(_t.time())
        claims = {"iss": "lk-issuer", "sub": self.user, "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing = f"{self._b64(json.dumps(head).encode())}.{self._b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{self._b64(sig)}"

    def start(self) -> TokenServer:
        import asyncio
        import threading

        from aiohttp import web

        async def handle(req: web.Request) -> web.Response:
            self.asked.append(req.query_string)
            want = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if req.headers.get("Authorization") != want:
                return web.json_response({"details": "incorrect username or password"},
                                         status=401)
            access = []
            for scope in req.query.getall("scope", []):
                typ, _, rest = scope.partition(":")
                repo, _, actions = rest.rpartition(":")
                access.append({"type": typ, "name": repo, "actions": actions.split(",")})
            return web.json_response({"token": self.token(req.query.get("service", ""), access),
                                      "expires_in": 300})

        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/token", handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            self.loop.run_until_complete(serve())
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_bearer_token_flow_with_a_real_registry(docker: Docker, tmp_path: Path, name: str,
                                                cleanup: list[str]) -> None:
    pytest.importorskip("cryptography")
    ts = TokenServer(tmp_path, "carol", "tok-pw").start()
    try:
        token = {"realm": f"http://127.0.0.1:{ts.port}/token", "service": "lk-registry",
                 "issuer": "lk-issuer", "rootcertbundle": str(ts.bundle)}
        with LocalRegistry(token=token) as reg:
            ref = f"{reg.address}/lk/tok:1"
            cleanup += ["lk-test/tok:1", ref]
            ident = unique_image(docker, "lk-test/tok:1", tmp_path, name)
            _ok(docker("tag", "lk-test/tok:1", ref))
            r = docker("login", "-u", "carol", "--password-stdin", reg.address,
                       input=b"bad\n")
            assert r.returncode == 1 and b"bad" not in r.stderr
            _ok(docker("login", "-u", "carol", "--password-stdin", reg.address,
                       input=b"tok-pw\n"))
            try:
                assert "Pushed" in _ok(docker("push", ref))
                assert any("scope=repository%3Alk%2Ftok%3Apull%2Cpush" in q
                           or "scope=repository:lk/tok:pull,push" in q for q in ts.asked)
                _ok(docker("rmi", ref))
                _ok(docker("rmi", "lk-test/tok:1"))
                assert "Pull complete" in _ok(docker("pull", ref))
                assert _ok(docker("run", "--rm", ref)).strip() == ident
            finally:
                docker("logout", reg.address)
            # without credentials the token has no access: Docker's denial
            r = docker("pull", ref)
            assert r.returncode == 1
            assert "pull access denied for " + f"{reg.address}/lk/tok" in r.stderr.decode()
    finally:
        ts.stop()


LABKIT = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "labkit")


def test_labkit_cli_shares_the_docker_cli_login(docker: Docker, engine: LabEngine,
                                                tmp_path: Path, name: str,
                                                cleanup: list[str]) -> None:
    """`labkit login` writes the config.json `auths` entry the Docker CLI reads, and `labkit
    pull/push` use the one `docker login` wrote."""
    env = dict(engine.docker_env)

    def lk(*a: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([LABKIT, *a], env=env, input=input, capture_output=True,
                              timeout=120, check=False)
    with LocalRegistry(users={"dave": "dave-pw"}) as reg:
        ref = f"{reg.address}/lk/cli:1"
        cleanup += ["lk-test/cli:1", ref]
        ident = unique_image(docker, "lk-test/cli:1", tmp_path, name)
        _ok(docker("tag", "lk-test/cli:1", ref))
        r = lk("login", "-u", "dave", "--password-stdin", reg.address, input=b"nope\n")
        assert r.returncode == 1 and b"401" in r.stderr and b"nope" not in r.stderr
        r = lk("login", "-u", "dave", "--password-stdin", reg.address, input=b"dave-pw\n")
        assert "Login Succeeded" in _ok(r)
        conf = Path(env["DOCKER_CONFIG"]) / "config.json"
        assert oct(conf.stat().st_mode & 0o777) == "0o600"
        # the Docker CLI pushes with the entry labkit wrote
        assert "Pushed" in _ok(docker("push", ref))
        _ok(docker("rmi", ref))
        _ok(docker("rmi", "lk-test/cli:1"))
        _ok(lk("logout", reg.address))
        r = lk("pull", ref)
        assert r.returncode == 1 and b"pull access denied" in r.stderr
        # docker login writes it; labkit pulls with it
        _ok(docker("login", "-u", "dave", "--password-stdin", reg.address, input=b"dave-pw\n"))
        out = _ok(lk("pull", ref))
        assert "Pull complete" in out and f"Status: Downloaded newer image for {ref}" in out
        assert _ok(docker("run", "--rm", ref)).strip() == ident
        _ok(docker("tag", ref, f"{reg.address}/lk/cli:2"))
        cleanup.append(f"{reg.address}/lk/cli:2")
        out = _ok(lk("push", f"{reg.address}/lk/cli:2"))
        assert "Layer already exists" in out and "2: digest: sha256:" in out
        docker("logout", reg.address)


def test_dockerd_runs_what_labkit_pushed_and_the_other_way(tmp_path: Path) -> None:
    """dockerd (Debian's docker.io), a registry and a labkit daemon share one test-made
    netns: each engine pulls and runs the image the other pushed."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    from labkit.measure.bench_engine import _Dockerd
    short = Path(tempfile.mkdtemp(prefix="lk-dk-", dir="/tmp"))  # containerd's socket path
    dockerd = _Dockerd(short)                                   # must fit sun_path (108)
    cli = docker_cli()
    try:
        dockerd.start()
        with LocalRegistry(netns=dockerd.netns) as reg, \
                LabEngine("dkr", netns=dockerd.netns) as lab:
            lab_env = lab.docker_env
            dk_env = dict(os.environ, DOCKER_HOST=f"unix://{dockerd.sock}",
                          DOCKER_CONFIG=str(tmp_path / "dk-config"))

            def on(env: dict[str, str], *a: str) -> subprocess.CompletedProcess[bytes]:
                return subprocess.run([cli, *a], env=env, capture_output=True, timeout=180,
                                      check=False)

            def lab_d(*a: str) -> subprocess.CompletedProcess[bytes]:
                return on(lab_env, *a)
            ident = unique_image(lab_d, "lk-test/dk:1", tmp_path, "lk-dkr-src")
            ref = f"{reg.address}/lk/fromlabkit:1"
            _ok(lab_d("tag", "lk-test/dk:1", ref))
            _ok(lab_d("push", ref))
            _ok(on(dk_env, "pull", ref))
            assert _ok(on(dk_env, "run", "--rm", "--network", "none", ref)).strip() == ident
            # dockerd pushes its own import of the same files; labkit pulls and runs it
            tar = tmp_path / "rootfs2.tar"
            _ok(lab_d("create", "--name", "lk-dkr-exp", ref))
            _ok(lab_d("export", "lk-dkr-exp", "-o", str(tar)))
            lab_d("rm", "-f", "lk-dkr-exp")
            with tarfile.open(tar, "a") as tf:  # one more file: a layer labkit lacks
                ti = tarfile.TarInfo("lk-from-dockerd")
                ti.size = 3
                tf.addfile(ti, io.BytesIO(b"dk\n"))
            back = f"{reg.address}/lk/fromdockerd:1"
            _ok(on(dk_env, "import", "--change", 'CMD ["cat", "/lk-id"]', str(tar), back))
            _ok(on(dk_env, "push", back))
            out = _ok(lab_d("pull", back))
            assert "Pull complete" in out
            assert _ok(lab_d("run", "--rm", back)).strip() == ident
    finally:
        dockerd.stop()
        shutil.rmtree(short, ignore_errors=True)


class HoldingRegistry:
    """A two-layer image served from a thread (aiohttp on 127.0.0.1): the second layer's
    blob stops half way until ``release`` is set, so a test can kill the daemon mid-pull."""

    def __init__(self) -> None:
        import gzip as _gz
        import hashlib
        import threading

        def sha(b: bytes) -> str:
            return "sha256:" + hashlib.sha256(b).hexdigest()

        def layer(name: str, data: bytes) -> tuple[bytes, bytes]:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            return buf.getvalue(), _gz.compress(buf.getvalue(), mtime=0)
        p1, g1 = layer("one", b"1\n")
        p2, g2 = layer("two", os.urandom(1 << 20))  # incompressible: the cut is mid-blob
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                                  "rootfs": {"type": "layers",
                                             "diff_ids": [sha(p1), sha(p2)]}}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(self.config), "digest": sha(self.config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(g), "digest": sha(g)} for g in (g1, g2)]}).encode()
        self.blobs = {sha(g1): g1, sha(g2): g2, sha(self.config): self.config}
        self.held, self.half_sent, self.release = sha(g2), threading.Event(), threading.Event()
        self.image_id, self.diff_ids = sha(self.config), (sha(p1), sha(p2))
        self.port = 0

    def start(self) -> HoldingRegistry:
        import asyncio
        import threading

        from aiohttp import web

        async def handle(req: web.Request) -> web.StreamResponse:
            if req.path == "/v2/":
                return web.Response()
            if "/manifests/" in req.path:
                return web.Response(body=self.manifest, headers={
                    "Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
            digest = req.path.rsplit("/", 1)[1]
            blob = self.blobs.get(digest)
            if blob is None:
                return web.Response(status=404)
            if digest != self.held or self.release.is_set():
                return web.Response(body=blob)
            resp = web.StreamResponse(headers={"Content-Length": str(len(blob))})
            await resp.prepare(req)
            await resp.write(blob[:len(blob) // 2])
            self.half_sent.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return resp  # the rest never comes: the daemon is gone by now

        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            self.loop.run_until_complete(serve())
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self.release.set()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_daemon_killed_mid_pull_leaves_nothing_and_a_retry_completes() -> None:
    reg = HoldingRegistry().start()
    ref = f"127.0.0.1:{reg.port}/lk/held:1"
    try:
        with LabEngine("kil") as lab:
            store = lab.root / "images"
            pull = subprocess.Popen([docker_cli(), "pull", ref], env=lab.docker_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                assert reg.half_sent.wait(60), "the pull never reached the held layer"
                lab.crash()  # SIGKILL: no cleanup code of the daemon runs
            finally:
                pull.communicate(timeout=60)
            # the first layer was complete in staging; nothing of it may be published
            assert not (store / "configs" / f"{reg.image_id[7:]}.json").exists()
            for d in reg.diff_ids:
                assert not (store / "layers" / d[7:]).exists()
            lab.start()  # the store sweeps its staging dir at start
            assert not (store / "tmp").exists() or os.listdir(store / "tmp") == []
            r = subprocess.run([docker_cli(), "inspect", ref], env=lab.docker_env,
                               capture_output=True, check=False)
            assert r.returncode == 1 and b"No such" in r.stderr
            reg.release.set()
            out = _ok(subprocess.run([docker_cli(), "pull", ref], env=lab.docker_env,
                                     capture_output=True, timeout=120, check=False))
            assert "Pull complete" in out
            assert (store / "layers" / reg.diff_ids[0][7:] / "one").read_bytes() == b"1\n"
            _ok(subprocess.run([docker_cli(), "rmi", ref], env=lab.docker_env,
                               capture_output=True, check=False))
    finally:
        reg.stop()


def test_plain_http_only_for_insecure_registries(tmp_path: Path, name: str) -> None:
    """A registry on a non-loopback address (10.77.0.1 on a test-made netns's lo) is reached
    over https only, unless daemon.json lists it in insecure-registries (here as a CIDR)."""
    ns = f"lk-regi-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        # no dummy links on this kernel: the address goes on the netns's own lo
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", "10.77.0.1/24", "dev", "lo"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True, capture_output=True)
        reg = LocalRegistry(netns=ns)
        reg.host = "10.77.0.1"
        with reg, LabEngine("ins", config={"insecure-registries": ["10.77.0.0/24"]},
                            netns=ns) as lab:
            def d(*a: str) -> subprocess.CompletedProcess[bytes]:
                return subprocess.run([docker_cli(), *a], env=lab.docker_env,
                                      capture_output=True, timeout=120, check=False)
            ref = "10.77.0.1:5000/lk/ins:1"
            info = json.loads(_ok(d("info", "--format", "{{json .RegistryConfig}}")))
            assert "10.77.0.0/24" in info["InsecureRegistryCIDRs"]
            _ok(d("tag", "busybox", ref))
            assert "digest: sha256:" in _ok(d("push", ref))
            lab.crash()
            lab.set_config({})
            lab.start()
            r = d("pull", ref)
            err = r.stderr.decode()
            assert r.returncode == 1 and "https://10.77.0.1:5000/v2/" in err
            assert "http://10.77.0.1:5000" not in err
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)


def _self_signed(base: Path, ip: str) -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address(ip))]), False)
            .sign(key, hashes.SHA256()))
    c, k = base / "reg.crt", base / "reg.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


def test_tls_is_verified_unless_the_registry_is_insecure(tmp_path: Path) -> None:
    """https with an untrusted (self-signed) certificate is refused for a secure registry;
    listed in insecure-registries, the same registry is used without verification."""
    pytest.importorskip("cryptography")
    ns = f"lk-regt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", "10.78.0.1/24", "dev", "lo"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True, capture_output=True)
        reg = LocalRegistry(netns=ns, tls=_self_signed(tmp_path, "10.78.0.1"))
        reg.host = "10.78.0.1"
        with reg, LabEngine("tls", config={"insecure-registries": ["10.78.0.1:5000"]},
                            netns=ns) as lab:
            def d(*a: str) -> subprocess.CompletedProcess[bytes]:
                return subprocess.run([docker_cli(), *a], env=lab.docker_env,
                                      capture_output=True, timeout=120, check=False)
            ref = "10.78.0.1:5000/lk/tls:1"
            _ok(d("tag", "busybox", ref))
            assert "digest: sha256:" in _ok(d("push", ref))  # https, unverified: insecure
            _ok(d("rmi", ref))
            lab.crash()
            lab.set_config({})
            lab.start()
            r = d("pull", ref)
            err = r.stderr.decode()
            assert r.returncode == 1 and "https://10.78.0.1:5000/v2/" in err
            assert "certificate" in err.lower(), err
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
