"""`docker cp` both ways, `docker diff`, `docker export`: the real CLI (the first `docker` on
PATH) and docker-py against labkit's daemon (GET/PUT/HEAD /containers/{id}/archive)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def cli(engine: LabEngine) -> Iterator[Docker]:
    exe = shutil.which("docker")
    if exe is None:
        pytest.fail("no docker CLI on PATH (make setup installs Debian's docker.io)")

    def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([exe, *args], env=engine.docker_env, input=input,
                              capture_output=True, timeout=60, check=False)
    yield run


@pytest.fixture
def box(cli: Docker, name: str) -> Iterator[str]:
    """A running busybox container (removed afterwards)."""
    r = cli("run", "-d", "--name", name, "busybox", "sleep", "600")
    assert r.returncode == 0, r.stderr
    yield name
    cli("rm", "-f", name)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def _sh(cli: Docker, ctr: str, script: str) -> bytes:
    r = cli("exec", ctr, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cp_file_out_of_running_container(cli: Docker, box: str, tmp: Path) -> None:
    _sh(cli, box, "printf 'from inside\\n' > /tmp/f; chmod 640 /tmp/f")
    r = cli("cp", f"{box}:/tmp/f", str(tmp / "out"))
    assert r.returncode == 0, r.stderr
    assert (tmp / "out").read_bytes() == b"from inside\n"
    assert (tmp / "out").stat().st_mode & 0o777 == 0o640


def test_cp_directory_and_its_contents(cli: Docker, box: str, tmp: Path) -> None:
    _sh(cli, box, "mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && ln -s a /d/l")
    assert cli("cp", f"{box}:/d", str(tmp / "whole")).returncode == 0
    assert (tmp / "whole/a").read_text() == "a\n"
    assert (tmp / "whole/sub/b").read_text() == "b\n"
    assert os.readlink(tmp / "whole/l") == "a"
    (tmp / "into").mkdir()
    assert cli("cp", f"{box}:/d/.", str(tmp / "into")).returncode == 0
    assert sorted(os.listdir(tmp / "into")) == ["a", "l", "sub"]


def test_cp_into_running_container(cli: Docker, box: str, tmp: Path) -> None:
    (tmp / "hello").write_text("hello labkit\n")
    (tmp / "dir").mkdir()
    (tmp / "dir/x").write_text("x\n")
    assert cli("cp", str(tmp / "hello"), f"{box}:/tmp/").returncode == 0
    assert cli("cp", str(tmp / "dir"), f"{box}:/tmp/newdir").returncode == 0
    assert _sh(cli, box, "cat /tmp/hello /tmp/newdir/x") == b"hello labkit\nx\n"


def test_cp_both_ways_on_a_stopped_container(cli: Docker, name: str, tmp: Path) -> None:
    r = cli("create", "--name", name, "busybox", "cat", "/tmp/in")
    assert r.returncode == 0, r.stderr
    try:
        (tmp / "in").write_text("copied before start\n")
        r = cli("cp", str(tmp / "in"), f"{name}:/tmp/in")
        assert r.returncode == 0, r.stderr
        r = cli("cp", f"{name}:/tmp/in", str(tmp / "back"))
        assert r.returncode == 0, r.stderr
        assert (tmp / "back").read_text() == "copied before start\n"
        r = cli("start", "-a", name)
        assert (r.returncode, r.stdout) == (0, b"copied before start\n"), r.stderr
        # exited now: still readable, and no mount of ours is left behind
        assert cli("cp", f"{name}:/tmp/in", str(tmp / "again")).returncode == 0
        # (the CLI may exit once it has the tar, before the daemon's unmount completes)
        deadline = time.monotonic() + 20
        while "lk-view" in Path("/proc/self/mountinfo").read_text() and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert "lk-view" not in Path("/proc/self/mountinfo").read_text()
    finally:
        cli("rm", "-f", name)


def test_cp_missing_path_is_docker_404(cli: Docker, box: str, tmp: Path) -> None:
    r = cli("cp", f"{box}:/no/such/file", str(tmp / "x"))
    assert r.returncode == 1
    assert f"Could not find the file /no/such/file in container {box}".encode() in r.stderr


def test_cp_symlinks_in_the_container_never_reach_the_host(cli: Docker, box: str) -> None:
    host_dir = Path(tempfile.mkdtemp(prefix="lk-cp-host-"))
    secret = host_dir / "secret"
    secret.write_text("host secret\n")
    try:
        _sh(cli, box, f"ln -s {host_dir} /abs; ln -s ../../../../../..{host_dir} /rel; "
                      f"ln -s {secret} /leak")
        with tempfile.NamedTemporaryFile("w", prefix="lk-cp-payload-") as f:
            f.write("payload\n")
            f.flush()
            for dest in ("/abs/", "/rel/", "/abs/evil", "/rel/evil"):
                cli("cp", f.name, f"{box}:{dest}")
            assert sorted(os.listdir(host_dir)) == ["secret"]
            # following the link resolves it inside the container, where it does not exist
            r = cli("cp", "-L", f"{box}:/leak", "-")
            assert r.returncode != 0 and b"host secret" not in r.stdout
            # made inside the container, the same path now takes the copy there
            _sh(cli, box, f"mkdir -p {host_dir}")
            assert cli("cp", f.name, f"{box}:/abs/").returncode == 0
            assert _sh(cli, box, f"ls {host_dir}").strip() == os.path.basename(f.name).encode()
        assert sorted(os.listdir(host_dir)) == ["secret"]
        assert secret.read_text() == "host secret\n"
    finally:
        shutil.rmtree(host_dir)


def test_cp_no_overwrite_dir_with_file(cli: Docker, box: str, tmp: Path) -> None:
    _sh(cli, box, "mkdir -p /target/thing/inner")
    (tmp / "thing").write_text("a file\n")
    r = cli("cp", str(tmp / "thing"), f"{box}:/target/")
    assert r.returncode == 1
    assert b"cannot overwrite directory" in r.stderr
    assert _sh(cli, box, "ls /target/thing") == b"inner\n"


def _docker_py(engine: LabEngine):  # type: ignore[no-untyped-def]
    docker = pytest.importorskip("docker")
    return docker.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")


def test_docker_py_archive_stat_and_put(engine: LabEngine, box: str) -> None:
    client = _docker_py(engine)
    ctr = client.containers.get(box)
    ctr.exec_run(["sh", "-c", "echo 12345 > /tmp/s; ln -s /tmp/s /tmp/link"])
    bits, st = ctr.get_archive("/tmp/s")
    assert (st["name"], st["size"], st["linkTarget"]) == ("s", 6, "")
    assert st["mode"] == 0o644
    data = b"".join(bits)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getnames() == ["s"]
    _, st = ctr.get_archive("/tmp/link")
    assert st["mode"] & (1 << 27) and st["linkTarget"] == "/tmp/s"
    _, st = ctr.get_archive("/tmp")
    assert st["mode"] & (1 << 31)
    # HEAD carries the same header
    resp = client.api.head(client.api._url("/containers/{0}/archive", box),
                           params={"path": "/tmp/s"})
    got = json.loads(base64.b64decode(resp.headers["X-Docker-Container-Path-Stat"]))
    assert got["name"] == "s" and got["size"] == 6
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("put/file")
        ti.size, ti.uid, ti.gid, ti.mode = 3, 123, 456, 0o600
        tf.addfile(ti, io.BytesIO(b"hi\n"))
    assert ctr.put_archive("/tmp", buf.getvalue())
    out = ctr.exec_run(["sh", "-c", "cat /tmp/put/file; stat -c '%u %g %a' /tmp/put/file"])
    assert out.output == b"hi\n123 456 600\n"


def test_put_archive_refuses_a_hostile_tar(engine: LabEngine, box: str) -> None:
    docker = pytest.importorskip("docker")
    client = _docker_py(engine)
    ctr = client.containers.get(box)
    for member in ("../../escape", "/abs/escape"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo(member)
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
        with pytest.raises(docker.errors.APIError) as exc:
            ctr.put_archive("/tmp", buf.getvalue())
        assert exc.value.status_code == 400
    # a symlink then a file through it: refused before anything is written
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ln = tarfile.TarInfo("hop")
        ln.type, ln.linkname = tarfile.SYMTYPE, "/"
        tf.addfile(ln)
        ti = tarfile.TarInfo("hop/tmp/lk-cp-through")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    with pytest.raises(docker.errors.APIError):
        ctr.put_archive("/tmp", buf.getvalue())
    assert ctr.exec_run(["ls", "/tmp"]).output == b""
    assert not os.path.exists("/tmp/lk-cp-through")
    with pytest.raises(docker.errors.NotFound):
        ctr.put_archive("/no/such/dir", b"")
    with pytest.raises(docker.errors.APIError) as exc:
        ctr.put_archive("/bin/sh", b"")
    assert "extraction point is not a directory" in str(exc.value)


def test_diff_lists_docker_kinds(cli: Docker, box: str, name: str) -> None:
    _sh(cli, box, "echo x > /etc/new; echo y >> /etc/passwd; rm /bin/ls; mkdir -p /tmp/a/b")
    r = cli("diff", box)
    assert r.returncode == 0, r.stderr
    # runtime mount points (/etc/hosts, /etc/hostname, /etc/resolv.conf) are not changes
    assert r.stdout.decode().splitlines() == [
        "C /bin", "D /bin/ls", "C /etc", "A /etc/new", "C /etc/passwd", "C /tmp", "A /tmp/a",
        "A /tmp/a/b"]
    assert cli("stop", "-t", "0", box).returncode == 0
    assert cli("diff", box).stdout.decode().splitlines()[:2] == ["C /bin", "D /bin/ls"]
    r = cli("create", "--name", f"{name}-fresh", "busybox", "true")
    try:
        assert (cli("diff", f"{name}-fresh").stdout, r.returncode) == (b"", 0)
    finally:
        cli("rm", f"{name}-fresh")


def test_export_is_the_whole_filesystem(cli: Docker, box: str) -> None:
    _sh(cli, box, "echo exported > /marker; rm /bin/ls")
    r = cli("export", box)
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        names = tf.getnames()
        marker = tf.extractfile("marker")
        assert marker is not None and marker.read() == b"exported\n"
    assert "bin/sh" in names and "bin/ls" not in names and "etc/passwd" in names
    assert not any(n.startswith(("/", "./")) for n in names)


def test_system_df_and_prune_space_reclaimed(engine: LabEngine, cli: Docker,
                                             name: str) -> None:
    r = cli("run", "--name", name, "--label", f"lk-df={name}", "busybox", "sh", "-c",
            "head -c 100000 /dev/zero > /blob")
    assert r.returncode == 0, r.stderr
    client = _docker_py(engine)
    df = client.df()
    row = next(c for c in df["Containers"] if c["Names"] == [f"/{name}"])
    assert row["SizeRw"] >= 100000 and row["SizeRootFs"] > row["SizeRw"]
    busybox = next(i for i in df["Images"] if "busybox:latest" in i["RepoTags"])
    assert busybox["Containers"] >= 1 and df["LayersSize"] >= busybox["Size"] > 0
    assert (df["Volumes"], df["BuildCache"]) == ([], [])
    r = cli("system", "df")
    assert r.returncode == 0 and b"Containers" in r.stdout, r.stderr
    import docker as dockerpy
    with pytest.raises(dockerpy.errors.APIError) as exc:
        client.containers.prune(filters={"nosuch": "x"})
    assert exc.value.status_code == 400 and "invalid filter 'nosuch'" in str(exc.value)
    got = client.containers.prune(filters={"label": f"lk-df={name}"})
    assert len(got["ContainersDeleted"]) == 1 and got["SpaceReclaimed"] >= 100000


def test_cp_archive_flag_takes_the_containers_user(cli: Docker, name: str, tmp: Path) -> None:
    r = cli("create", "--name", name, "--user", "123:456", "busybox", "true")
    assert r.returncode == 0, r.stderr
    try:
        (tmp / "owned").write_text("x\n")
        os.chown(tmp / "owned", 7, 8)
        assert cli("cp", "-a", str(tmp / "owned"), f"{name}:/tmp/a").returncode == 0
        assert cli("cp", str(tmp / "owned"), f"{name}:/tmp/plain").returncode == 0
        out = cli("export", name).stdout
        with tarfile.open(fileobj=io.BytesIO(out)) as tf:
            a, plain = tf.getmember("tmp/a"), tf.getmember("tmp/plain")
        assert (a.uid, a.gid) == (123, 456)
        assert (plain.uid, plain.gid) == (7, 8)  # moby's default: the tar's owner
    finally:
        cli("rm", "-f", name)


def _all_clis() -> list[str]:
    """Every distinct docker CLI on PATH (e.g. 28.x in /usr/local/bin, Debian's 20.10)."""
    seen: dict[str, str] = {}
    for d in os.environ.get("PATH", "").split(":"):
        exe = os.path.join(d, "docker")
        if os.access(exe, os.X_OK):
            seen.setdefault(os.path.realpath(exe), exe)
    return list(seen.values()) or ["docker"]


@pytest.mark.parametrize("exe", _all_clis())
def test_cp_round_trip_with_each_cli(engine: LabEngine, box: str, tmp: Path, exe: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([exe, *args], env=engine.docker_env, capture_output=True,
                              timeout=60, check=False)
    (tmp / "src").mkdir()
    (tmp / "src/f").write_text("round trip\n")
    assert run("cp", str(tmp / "src"), f"{box}:/rt").returncode == 0
    r = run("cp", f"{box}:/rt/.", str(tmp / "back"))
    assert r.returncode == 0, r.stderr
    assert (tmp / "back/f").read_text() == "round trip\n"
    r = run("cp", f"{box}:/rt/nope", str(tmp / "x"))
    assert r.returncode == 1 and b"/rt/nope" in r.stderr


def test_cp_into_a_read_only_rootfs_is_refused(cli: Docker, name: str, tmp: Path) -> None:
    assert cli("create", "--read-only", "--name", name, "busybox", "true").returncode == 0
    try:
        (tmp / "f").write_text("x\n")
        r = cli("cp", str(tmp / "f"), f"{name}:/tmp/")
        assert r.returncode == 1
        assert b"container rootfs is marked read-only" in r.stderr
        assert cli("cp", f"{name}:/tmp/f", "-").returncode == 1  # nothing was written
    finally:
        cli("rm", "-f", name)
