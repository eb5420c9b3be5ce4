"""`labkit image ...` and `labkit volume ...` against a real labkit daemon, `docker import
URL` from a loopback HTTP server this file starts, and `rmi -f` of an image a stopped
container uses (deleted as Docker does; the container keeps its layers until it goes).

Every image made here is tagged lk-test/...; every volume is named lk-test-...
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from labkit.engine.images import busybox
from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged

LABKIT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin",
                      "labkit")
Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def labkit(engine: LabEngine) -> Run:
    def run(*args: str, timeout: float = 120, input: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([LABKIT, *args], env=engine.env, capture_output=True,
                              timeout=timeout, check=False, input=input)
    return run


def _ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


@pytest.fixture
def cleanup(labkit: Run) -> Iterator[list[str]]:
    """Image refs and containers (prefixed "c:") to remove at the end, whatever happens."""
    refs: list[str] = []
    yield refs
    for r in refs:
        if r.startswith("c:"):
            labkit("rm", "-f", r[2:])
    for r in refs:
        if not r.startswith("c:"):
            labkit("image", "rm", "-f", r)


def _rootfs_tar(tmp: Path, marker: str) -> Path:
    """A busybox rootfs tar with one file of its own (so its layer is shared with no image)."""
    root = busybox.build_rootfs(tmp / "rootfs")
    (root / "marker").write_text(marker)
    out = tmp / "rootfs.tar"
    with tarfile.open(out, "w") as tf:
        tf.add(root, arcname=".")
    return out


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a temp dir: (base URL, dir)."""
    d = tmp_path_factory.mktemp("lk-http")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(d)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", d
    finally:
        srv.shutdown()
        srv.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


# -- bootstrap ---------------------------------------------------------------------------------

def test_bootstrap_busybox_runs_and_refuses_an_existing_tag(labkit: Run,
                                                             cleanup: list[str]) -> None:
    cleanup.append("lk-test/bbs:1")
    r = labkit("image", "bootstrap", "busybox", "-t", "lk-test/bbs:1")
    iid = _ok(r).strip()
    assert iid.startswith("sha256:") and b"bootstrapped" in r.stderr
    out = _ok(labkit("run", "--rm", "lk-test/bbs:1", "sh", "-c",
                     "stat -c %a /tmp; readlink /bin/ls; grep ^root: /etc/passwd; "
                     "grep ^nogroup: /etc/group; echo $PATH"))
    assert out.splitlines() == ["1777", "busybox", "root:x:0:0:root:/root:/bin/sh",
                                "nogroup:x:65534:", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    cfg = json.loads(_ok(labkit("image", "inspect", "lk-test/bbs:1")))[0]["Config"]
    assert cfg["Cmd"] == ["sh"]
    r = labkit("image", "bootstrap", "busybox", "-t", "lk-test/bbs:1")
    assert r.returncode == 1 and b"already exists: lk-test/bbs:1" in r.stderr
    assert b"--force" in r.stderr
    r = labkit("image", "bootstrap", "busybox", "-t", "lk-test/bbs:1", "--mirror", "http://x/")
    assert r.returncode == 1 and b"--mirror" in r.stderr
    layers = json.loads(_ok(labkit("image", "inspect", iid)))[0]["RootFS"]["Layers"]
    new = _ok(labkit("image", "bootstrap", "busybox", "-t", "lk-test/bbs:1", "--force")).strip()
    info = json.loads(_ok(labkit("image", "inspect", "lk-test/bbs:1")))[0]
    assert info["Id"] == new  # the tag moved to the new image
    assert info["RootFS"]["Layers"] == layers  # same busybox, zeroed mtimes: same layer
    cleanup.append(iid)  # the first one, now dangling


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold cache downloads ~30 MB of .debs; warm, it takes ~30 s
def test_bootstrap_debian_apt_works_inside(labkit: Run, cleanup: list[str]) -> None:
    """debootstrap minbase from the host's apt mirror (the .debs cached in
    /var/cache/labkit/debootstrap: a second run downloads no package)."""
    cleanup.append("lk-test/debian:bookworm")
    r = labkit("image", "bootstrap", "debian", "-t", "lk-test/debian:bookworm", timeout=900)
    _ok(r)
    assert b"debootstrap" in r.stderr and b"cleaning" in r.stderr
    out = _ok(labkit("run", "--rm", "lk-test/debian:bookworm", "bash", "-c",
                     "cat /etc/debian_version; apt-get --version | head -1; "
                     "ls /var/lib/apt/lists; /usr/sbin/policy-rc.d; echo rc=$?; "
                     "wc -c < /etc/machine-id; dpkg-query -W -f '${Status}' bash"))
    lines = out.splitlines()
    assert lines[0].startswith("12.") and lines[1].startswith("apt ")
    assert lines[2] == "partial" and lines[3] == "rc=101" and lines[4] == "0"
    assert lines[5] == "install ok installed"
    cfg = json.loads(_ok(labkit("image", "inspect", "lk-test/debian:bookworm")))[0]["Config"]
    assert cfg["Cmd"] == ["bash"] and cfg["Env"][0].startswith("PATH=")
    assert any(Path("/var/cache/labkit/debootstrap").glob("bookworm-*/bash_*.deb"))


# -- image verbs -------------------------------------------------------------------------------

def test_image_verbs_tag_ls_history_save_load_rm(labkit: Run, cleanup: list[str],
                                                 tmp_path: Path) -> None:
    cleanup += ["lk-test/cli:1", "lk-test/cli:2"]
    iid = _ok(labkit("image", "import", "-c", 'CMD ["cat", "/marker"]', "-m", "from a file",
                     str(_rootfs_tar(tmp_path, "cli-1\n")), "lk-test/cli:1")).strip()
    _ok(labkit("image", "tag", "lk-test/cli:1", "lk-test/cli:2"))
    ls = _ok(labkit("image", "ls"))
    assert "REPOSITORY" in ls and "lk-test/cli" in ls and iid[7:19] in ls
    assert iid[7:19] in _ok(labkit("image", "ls", "-q"))
    assert "from a file" in _ok(labkit("image", "history", "lk-test/cli:1"))
    assert _ok(labkit("run", "--rm", "lk-test/cli:2")) == "cli-1\n"
    tar = tmp_path / "out.tar"
    _ok(labkit("image", "save", "-o", str(tar), "lk-test/cli:1"))
    with tarfile.open(tar) as tf:
        assert "manifest.json" in tf.getnames()
    assert _ok(labkit("image", "rm", "lk-test/cli:2")) == "Untagged: lk-test/cli:2\n"
    assert _ok(labkit("image", "rm", "lk-test/cli:1")) == (
        f"Untagged: lk-test/cli:1\nDeleted: {iid}\n")
    assert "Loaded image: lk-test/cli:1" in _ok(labkit("image", "load", "-i", str(tar)))
    assert json.loads(_ok(labkit("image", "inspect", "lk-test/cli:1")))[0]["Id"] == iid
    piped = labkit("image", "save", "lk-test/cli:1").stdout  # to stdout, back from stdin
    assert tarfile.is_tarfile(io.BytesIO(piped))
    assert "Loaded image: lk-test/cli:1" in _ok(labkit("image", "load", input=piped))
    iid3 = _ok(labkit("image", "import", "-", "lk-test/cli:2",
                      input=(tmp_path / "rootfs.tar").read_bytes())).strip()
    assert json.loads(_ok(labkit("image", "inspect", iid3)))[0]["RootFS"]["Layers"] == \
        json.loads(_ok(labkit("image", "inspect", iid)))[0]["RootFS"]["Layers"]
    r = labkit("image", "inspect", "lk-test/nosuch:1")
    assert r.returncode == 1 and b"No such image: lk-test/nosuch:1" in r.stderr
    r = labkit("image", "import", "ftp://127.0.0.1/x.tar")
    assert r.returncode == 1 and b"http://" in r.stderr


def test_image_prune_dangling(labkit: Run, cleanup: list[str], tmp_path: Path) -> None:
    iid = _ok(labkit("image", "import", str(_rootfs_tar(tmp_path, "prune\n")))).strip()
    cleanup.append(iid)
    out = _ok(labkit("image", "prune", "-f"))
    assert f"deleted: {iid}" in out and "Total reclaimed space" in out
    assert labkit("image", "inspect", iid).returncode == 1


# -- docker import URL -------------------------------------------------------------------------

def test_docker_import_url(docker: Callable[..., subprocess.CompletedProcess[bytes]],
                           labkit: Run, http_dir: tuple[str, Path], tmp_path: Path,
                           cleanup: list[str]) -> None:
    base, d = http_dir
    cleanup += ["lk-test/url:1", "lk-test/url:2"]
    _rootfs_tar(tmp_path, "from-url\n").rename(d / "root.tar")
    r = docker("import", "--change", 'CMD ["cat", "/marker"]', f"{base}/root.tar",
               "lk-test/url:1")
    iid = _ok(r).strip()
    assert iid.startswith("sha256:")
    assert _ok(docker("run", "--rm", "lk-test/url:1")) == "from-url\n"
    assert _ok(docker("inspect", "-f", "{{.Comment}}", iid)) == f"Imported from {base}/root.tar\n"
    iid2 = _ok(labkit("image", "import", f"{base}/root.tar", "lk-test/url:2")).strip()
    layers = {json.loads(_ok(docker("image", "inspect", i)))[0]["RootFS"]["Layers"][0]
              for i in (iid, iid2)}
    assert len(layers) == 1  # the same tar fetched twice: the same layer
    r = docker("import", f"{base}/missing.tar", "lk-test/url:9")
    assert r.returncode != 0 and b"404" in r.stderr and b"missing.tar" in r.stderr
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = docker("import", f"http://127.0.0.1:{port}/x.tar", "lk-test/url:9")
    assert r.returncode != 0 and f"127.0.0.1:{port}".encode() in r.stderr
    assert docker("inspect", "lk-test/url:9").returncode != 0


# -- rmi -f of an image a stopped container uses -----------------------------------------------

def test_rmi_force_deletes_image_container_keeps_layers(
        docker: Callable[..., subprocess.CompletedProcess[bytes]], engine: LabEngine,
        labkit: Run, name: str, tmp_path: Path, cleanup: list[str]) -> None:
    layers = engine.root / "images" / "layers"
    before = len(os.listdir(layers))
    cleanup += ["lk-test/rmf:1", f"c:{name}"]
    iid = _ok(labkit("image", "import", "-c", 'CMD ["cat", "/marker"]',
                     str(_rootfs_tar(tmp_path, "kept\n")), "lk-test/rmf:1")).strip()
    assert len(os.listdir(layers)) == before + 1
    _ok(docker("create", "--name", name, "lk-test/rmf:1"))
    r = docker("rmi", "lk-test/rmf:1")
    assert r.returncode != 0 and b"must force" in r.stderr
    out = _ok(docker("rmi", "-f", "lk-test/rmf:1"))
    assert out == f"Untagged: lk-test/rmf:1\nDeleted: {iid}\n"
    assert docker("image", "inspect", iid).returncode != 0
    assert iid[7:19] not in _ok(docker("images", "-a", "-q"))
    ps = _ok(docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Image}}"))
    assert ps == f"{iid[7:19]}\n"
    assert len(os.listdir(layers)) == before + 1  # the container's lower dir stays
    assert _ok(docker("start", "-a", name)) == "kept\n"
    _ok(docker("rm", name))
    assert len(os.listdir(layers)) == before  # freed with the last container: no leak


# -- volumes and -v / --mount ------------------------------------------------------------------

def test_volume_verbs_and_run_mounts(labkit: Run, name: str) -> None:
    vol = f"lk-test-{name}"
    try:
        assert _ok(labkit("volume", "create", "--label", "lk=1", vol)) == f"{vol}\n"
        ls = _ok(labkit("volume", "ls"))
        assert "VOLUME NAME" in ls and vol in ls
        info = json.loads(_ok(labkit("volume", "inspect", vol)))[0]
        assert info["Labels"] == {"lk": "1"} and info["Mountpoint"].endswith(f"{vol}/_data")
        _ok(labkit("run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c",
                   "echo one > /data/f"))
        out = _ok(labkit("run", "--rm", "--mount", f"type=volume,source={vol},target=/d,ro",
                         "busybox", "sh", "-c", "cat /d/f; touch /d/x 2>/dev/null || echo ro"))
        assert out == "one\nro\n"
        out = _ok(labkit("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
                         "busybox", "sh", "-c", "grep ' /t ' /proc/mounts"))
        assert out.startswith("tmpfs /t tmpfs") and "size=1024k" in out
        r = labkit("run", "--rm", "--mount", "type=volume,target=/d,bogus=1", "busybox", "true")
        assert r.returncode == 125 and b"bogus" in r.stderr
        _ok(labkit("create", "--name", name, "-v", f"{vol}:/data", "busybox", "true"))
        r = labkit("volume", "rm", vol)
        assert r.returncode == 1 and b"in use" in r.stderr
        _ok(labkit("rm", name))
        assert _ok(labkit("volume", "rm", vol)) == f"{vol}\n"
        assert labkit("volume", "inspect", vol).returncode == 1
    finally:
        labkit("rm", "-f", name)
        labkit("volume", "rm", "-f", vol)
