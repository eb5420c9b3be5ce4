"""``docker build`` (classic builder, DOCKER_BUILDKIT=0), ``docker commit`` and docker-py's
``images.build`` against labkit's daemon; every result is checked from INSIDE a container of
the built image.  Images made here are tagged lk-test/...; every test removes its own.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.lab.engine import LabEngine
from labkit.measure.peers import docker_cli

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE}
ARG GREETING=hello
ENV APP_HOME=/app \\
    MODE=test
WORKDIR $APP_HOME
COPY --chown=nobody hello.txt ./
ADD files.tar.gz /opt/
RUN echo "$GREETING from run" > /app/run.txt && rm /bin/true \\
 && echo "$MODE" > /app/mode.txt
USER 1000:1000
EXPOSE 8080
LABEL org.example.k="v 1"
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/run.txt"]
"""


def _ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


@pytest.fixture
def build(engine: LabEngine) -> Iterator[Docker]:
    """The Docker CLI with the legacy builder (DOCKER_BUILDKIT=0)."""
    cli = docker_cli()
    env = dict(engine.docker_env, DOCKER_BUILDKIT="0")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([cli, "build", *args], env=env, capture_output=True,
                              timeout=timeout, check=False)
    yield run


@pytest.fixture
def cleanup(docker: Docker) -> Iterator[list[str]]:
    refs: list[str] = []
    yield refs
    for r in refs:
        docker("rmi", "-f", r)


def _context(d: Path, dockerfile: str = DOCKERFILE) -> Path:
    d.mkdir(exist_ok=True)
    (d / "Dockerfile").write_text(dockerfile)
    (d / "hello.txt").write_text("hello-file\n")
    (d / "secret.log").write_text("must not be sent\n")
    (d / ".dockerignore").write_text("*.log\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ti = tarfile.TarInfo("extracted/inner.txt")
        ti.size, ti.uid = 6, 42
        tf.addfile(ti, io.BytesIO(b"inner\n"))
    (d / "files.tar.gz").write_bytes(buf.getvalue())
    return d


def _step_containers(docker: Docker) -> list[str]:
    return _ok(docker("ps", "-aq", "--filter", "label=labkit.build.step")).split()


def test_build_applies_every_instruction(docker: Docker, build: Docker, tmp_path: Path,
                                         cleanup: list[str]) -> None:
    cleanup.append("lk-test/build:1")
    ctx = _context(tmp_path / "ctx")
    r = build("-t", "lk-test/build:1", "--build-arg", "GREETING=hey", "--build-arg", "UNUSED=1",
              str(ctx))
    out = _ok(r)
    assert "Step 1/12 : FROM ${BASE}" in out and " ---> Running in " in out
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out
    assert "Successfully tagged lk-test/build:1" in out
    assert _ok(docker("run", "--rm", "lk-test/build:1")) == "hey from run\n"  # ENTRYPOINT+CMD
    inside = _ok(docker("run", "--rm", "--entrypoint", "sh", "lk-test/build:1", "-c",
                        "id -u; id -g; pwd; echo $MODE $APP_HOME; cat /app/mode.txt; "
                        "stat -c '%U %n' /app/hello.txt; cat /opt/extracted/inner.txt; "
                        "stat -c '%u' /opt/extracted/inner.txt; "
                        "test -e /bin/true && echo true-still-there || echo whiteout-applied; "
                        "ls /app"))
    assert inside.split("\n") == ["1000", "1000", "/app", "test /app", "test",
                                  "nobody /app/hello.txt", "inner", "42", "whiteout-applied",
                                  "hello.txt", "mode.txt", "run.txt", ""]
    insp = _ok(docker("inspect", "-f", "{{json .Config.ExposedPorts}} {{index .Config.Labels "
                      "\"org.example.k\"}} {{.Config.User}}", "lk-test/build:1"))
    assert insp.strip() == '{"8080/tcp":{}} v 1 1000:1000'
    hist = _ok(docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "lk-test/build:1"))
    assert '/bin/sh -c #(nop)  CMD ["cat /app/run.txt"]' in hist
    assert '|1 GREETING=hey /bin/sh -c echo "$GREETING from run"' in hist
    assert _step_containers(docker) == []  # rm=1: the step containers are gone
    # the second build is served from the cache; --no-cache is not
    again = _ok(build("-t", "lk-test/build:1", "--build-arg", "GREETING=hey", str(ctx)))
    assert again.count(" ---> Using cache") == 10 and " ---> Running in" not in again
    fresh = _ok(build("--no-cache", "-q", "--build-arg", "GREETING=hey", str(ctx)))
    assert "Using cache" not in fresh
    cleanup.append(fresh.strip())
    # a changed COPY source is a cache miss from that step on
    (ctx / "hello.txt").write_text("changed\n")
    changed = _ok(build("-t", "lk-test/build:1", "--build-arg", "GREETING=hey", str(ctx)))
    assert changed.count(" ---> Using cache") == 2
    # docker builder prune empties the cache: the next build runs every step again
    pruned = docker("builder", "prune", "-f")
    assert pruned.returncode == 0, pruned.stderr
    after = _ok(build("-t", "lk-test/build:1", "--build-arg", "GREETING=hey", str(ctx)))
    assert "Using cache" not in after


def test_dockerfile_errors_name_their_line(build: Docker, tmp_path: Path) -> None:
    ctx = tmp_path / "bad"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n\nRUN true\nFOOBAR x\n")
    r = build(str(ctx))
    assert r.returncode != 0
    assert b"Dockerfile parse error line 4: unknown instruction: FOOBAR" in r.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY ../etc/passwd /x\n")
    r = build(str(ctx))
    assert r.returncode != 0 and b"forbidden path outside the build context" in r.stdout + r.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nONBUILD RUN true\n")
    r = build(str(ctx))
    assert r.returncode != 0 and b"line 2: ONBUILD is not supported" in r.stdout + r.stderr


def test_failing_run_reports_code_and_leaves_nothing(docker: Docker, build: Docker,
                                                     tmp_path: Path) -> None:
    ctx = tmp_path / "fail"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo before; exit 3\n")
    r = build("--force-rm", "-t", "lk-test/fail:1", str(ctx))
    assert r.returncode == 3  # the CLI exits with the step's code (errorDetail.code)
    assert b"The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3" in r.stderr
    assert b"before" in r.stdout
    assert _step_containers(docker) == []
    assert docker("image", "inspect", "lk-test/fail:1").returncode != 0
    # without --force-rm the failed step's container stays (Docker's rm applies to
    # successes), and so does the image it was made from, so it can be inspected and run
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo x > /x\nRUN exit 5\n")
    r = build(str(ctx))
    assert r.returncode == 5
    left = _step_containers(docker)
    assert len(left) == 1
    image = _ok(docker("inspect", "-f", "{{.Image}}", left[0])).strip()
    try:
        assert _ok(docker("run", "--rm", image, "cat", "/x")) == "x\n"
    finally:
        docker("rm", "-f", left[0])
        docker("rmi", image)


def test_interrupted_build_leaves_no_container_and_retry_completes(
        engine: LabEngine, docker: Docker, build: Docker, tmp_path: Path,
        cleanup: list[str]) -> None:
    cleanup.append("lk-test/intr:1")
    ctx = tmp_path / "intr"
    ctx.mkdir()
    # the first build sleeps in its last step (SLEEP is declared after the step that the
    # retry must find in the cache, so that step's key does not depend on it)
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo layer > /one\nARG SLEEP=0\n"
                                    "RUN sleep $SLEEP\n")
    env = dict(engine.docker_env, DOCKER_BUILDKIT="0")
    proc = subprocess.Popen([docker_cli(), "build", "--build-arg", "SLEEP=60", "-t",
                             "lk-test/intr:1", str(ctx)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the second RUN's container
            if b"Step 4/4" in line:
                break
        while not _step_containers(docker):
            time.sleep(0.1)
    finally:
        proc.kill()  # the client goes away mid-step
        proc.wait()
    deadline = time.monotonic() + 30
    while _step_containers(docker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _step_containers(docker) == []
    assert docker("image", "inspect", "lk-test/intr:1").returncode != 0
    # the retry reuses step 2 from the cache (its layer was complete) and finishes
    out = _ok(build("-t", "lk-test/intr:1", str(ctx)))
    assert out.count("Using cache") == 1 and "Successfully tagged lk-test/intr:1" in out


def test_commit_with_changes(docker: Docker, name: str, cleanup: list[str]) -> None:
    cleanup.append("lk-test/commit:1")
    _ok(docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                "echo state > /state; rm /bin/true; sleep 60"))
    try:
        while docker("exec", name, "test", "-e", "/state").returncode != 0:
            time.sleep(0.1)
        since = str(int(time.time()) - 1)
        iid = _ok(docker("commit", "-c", "ENV COMMITTED=yes", "-c", 'CMD ["cat", "/state"]',
                         "-m", "a message", "-a", "lk", name, "lk-test/commit:1")).strip()
        assert iid.startswith("sha256:")
        assert _ok(docker("inspect", "-f", "{{.State.Status}}", name)).strip() == "running"
        # pause=true (the default): the container was paused while its upper dir was read
        acts = _ok(docker("events", "--since", since, "--until", str(time.time()), "--filter",
                          f"container={name}", "--format", "{{.Action}}")).split()
        # moby: pause, unpause, then the container's "commit" event (CreateImageFromContainer)
        assert acts[-3:] == ["pause", "unpause", "commit"], acts
        _ok(docker("commit", "--pause=false", name, "lk-test/commit:2"))
        cleanup.append("lk-test/commit:2")
        acts2 = _ok(docker("events", "--since", since, "--until", str(time.time()), "--filter",
                           f"container={name}", "--format", "{{.Action}}")).split()
        assert acts2 == [*acts, "commit"]  # --pause=false: no pause
        r = docker("commit", "-c", "RUN true", name, "lk-test/commit:3")
        assert r.returncode != 0 and b"RUN" in r.stderr
    finally:
        docker("rm", "-f", name)
    assert _ok(docker("run", "--rm", "lk-test/commit:1")) == "state\n"
    inside = _ok(docker("run", "--rm", "lk-test/commit:1", "sh", "-c",
                        "echo $COMMITTED; test -e /bin/true || echo gone"))
    assert inside == "yes\ngone\n"
    fmt = "{{.Comment}}|{{.Author}}"
    assert _ok(docker("inspect", "-f", fmt, "lk-test/commit:1")).strip() == "a message|lk"
    r = docker("commit", "lk-nosuch-container")
    assert r.returncode != 0 and b"No such container" in r.stderr


def test_docker_py_build(engine: LabEngine, docker: Docker, tmp_path: Path,
                         cleanup: list[str]) -> None:
    docker_mod = pytest.importorskip("docker")
    cleanup.append("lk-test/py:1")
    ctx = tmp_path / "py"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo py > /py.txt\nCMD [\"cat\", \"/py.txt\"]\n")
    client = docker_mod.DockerClient(base_url=f"unix://{engine.socket}")
    try:
        # gzip=True: the context arrives compressed, as docker-py can send it
        _img, logs = client.images.build(path=str(ctx), tag="lk-test/py:1", rm=True, gzip=True)
        assert any("Successfully built" in (x.get("stream") or "") for x in logs)
        assert client.containers.run("lk-test/py:1", remove=True) == b"py\n"
        with pytest.raises(docker_mod.errors.BuildError, match="non-zero code: 1"):
            (ctx / "Dockerfile").write_text("FROM busybox\nRUN false\n")
            client.images.build(path=str(ctx), forcerm=True)
        with pytest.raises(docker_mod.errors.APIError, match="pull"):
            client.images.build(path=str(ctx), pull=True)
        # a hostile context through the API: refused before anything is unpacked
        for name, kind in (("../escape", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                df = b"FROM busybox\n"
                ti = tarfile.TarInfo("Dockerfile")
                ti.size = len(df)
                tf.addfile(ti, io.BytesIO(df))
                ti = tarfile.TarInfo(name)
                ti.type = kind
                ti.linkname = str(tmp_path)
                tf.addfile(ti)
                if kind == tarfile.SYMTYPE:
                    tf.addfile(tarfile.TarInfo("link/pwned"), io.BytesIO(b""))
            buf.seek(0)
            with pytest.raises(docker_mod.errors.APIError, match="build context"):
                list(client.api.build(fileobj=buf, custom_context=True, decode=True))
        assert not (tmp_path / "pwned").exists() and not (tmp_path.parent / "escape").exists()
        # commit with a config body (docker-py's conf=): applied when well formed, else refused
        cleanup.append("lk-test/pyc:1")
        box = client.containers.create("busybox", ["true"])
        try:
            img = box.commit("lk-test/pyc", "1", conf={"Env": ["FROM_CONF=1"]})
            assert "FROM_CONF=1" in img.attrs["Config"]["Env"]
            with pytest.raises(docker_mod.errors.APIError, match="Cmd"):
                box.commit("lk-test/pyc", "2", conf={"Cmd": 5})
        finally:
            box.remove(force=True)
    finally:
        client.close()


LABKIT = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "labkit")


def test_labkit_build_and_commit_cli(engine: LabEngine, docker: Docker, tmp_path: Path,
                                     name: str, cleanup: list[str]) -> None:
    cleanup += ["lk-test/cli:1", "lk-test/cli:2", "lk-test/clicommit:1"]

    def labkit(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([LABKIT, *args], env=engine.env, capture_output=True,
                              timeout=120, check=False)
    ctx = tmp_path / "cli"
    ctx.mkdir()
    (ctx / "secret.log").write_text("x")
    (ctx / ".dockerignore").write_text("*.log\n")
    other = tmp_path / "Other.dockerfile"  # -f from outside the context
    other.write_text("FROM busybox\nARG V=1\nRUN ls /ctx 2>/dev/null; echo v=$V > /v\n"
                     "COPY . /ctx/\nCMD [\"sh\", \"-c\", \"cat /v; ls /ctx\"]\n")
    r = labkit("build", "-t", "lk-test/cli:1", "-t", "lk-test/cli:2", "-f", str(other),
               "--build-arg", "V=7", str(ctx))
    assert r.returncode == 0, r.stderr
    assert b"Step 1/5 : FROM busybox" in r.stdout and b"Successfully tagged lk-test/cli:2" in r.stdout
    assert _ok(docker("run", "--rm", "lk-test/cli:2")) == "v=7\n"  # secret.log not sent
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text("FROM busybox\nRUN exit 4\n")
    r = labkit("build", "--force-rm", str(bad))
    assert r.returncode == 4 and b"returned a non-zero code: 4" in r.stderr
    assert _step_containers(docker) == []
    _ok(docker("run", "--name", name, "busybox", "sh", "-c", "echo c > /c"))
    try:
        r = labkit("commit", "-c", "CMD cat /c", "-m", "via labkit", name, "lk-test/clicommit:1")
        assert r.returncode == 0, r.stderr
    finally:
        docker("rm", "-f", name)
    assert _ok(docker("run", "--rm", "lk-test/clicommit:1")) == "c\n"


def test_multi_stage_copy_from_and_target(docker: Docker, build: Docker, tmp_path: Path,
                                          cleanup: list[str]) -> None:
    cleanup += ["lk-test/ms:1", "lk-test/ms:build"]
    ctx = tmp_path / "ms"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS build\n"
        "RUN mkdir /out && echo built > /out/app && echo junk > /junk\n"
        "RUN echo more >> /out/app\n"
        "FROM busybox\n"
        "COPY --from=build /out/app /app/\n"
        "COPY --from=0 /out /out2\n"
        'CMD ["sh", "-c", "cat /app/app /out2/app; test -e /junk && echo junk || echo clean"]\n')
    _ok(build("-t", "lk-test/ms:1", str(ctx)))
    assert _ok(docker("run", "--rm", "lk-test/ms:1")) == "built\nmore\nbuilt\nmore\nclean\n"
    _ok(build("--target", "build", "-t", "lk-test/ms:build", str(ctx)))
    assert _ok(docker("run", "--rm", "lk-test/ms:build", "cat", "/junk")) == "junk\n"
    r = build("--target", "nosuch", str(ctx))
    assert r.returncode != 0 and b"failed to reach build target nosuch" in r.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY --from=nosuchstage /x /x\n")
    r = build(str(ctx))
    assert r.returncode != 0 and b"line 2: COPY --from=nosuchstage: no such stage" in \
        r.stdout + r.stderr


def test_daemon_killed_mid_build_leaves_nothing_and_retry_completes(tmp_path: Path) -> None:
    """SIGKILL of the daemon during a RUN: its next start removes the step's container and
    the step image; no image was written; the retry reuses the finished step."""
    ctx = tmp_path / "kill"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nARG SLEEP=0\n"
                                    "RUN sleep $SLEEP\n")
    eng = LabEngine("bdk")
    try:
        eng.start()
        env = dict(eng.docker_env, DOCKER_BUILDKIT="0")
        cli = docker_cli()

        def docker(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([cli, *args], env=env, capture_output=True, timeout=120,
                                  check=False)
        images_before = _ok(docker("images", "-aq")).split()
        proc = subprocess.Popen([cli, "build", "--build-arg", "SLEEP=60", "-t",
                                 "lk-test/kill:1", str(ctx)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if b"Step 4/4" in line:
                    break
            # running, not only created: a kill while the supervisor is still making the
            # task is a different test (the supervisor's own recovery)
            while not _ok(docker("ps", "-q", "--filter", "label=labkit.build.step")).split():
                time.sleep(0.1)
            eng.crash()
        finally:
            proc.kill()
            proc.wait()
        eng.start()
        assert _step_containers(docker) == []
        assert _ok(docker("images", "-aq")).split() == images_before  # no image, no step image
        out = _ok(docker("build", "-t", "lk-test/kill:1", str(ctx)))
        assert out.count("Using cache") == 1 and "Successfully tagged lk-test/kill:1" in out
    finally:
        eng.stop()


def test_shell_healthcheck_stopsignal_chmod_and_opaque_dirs(docker: Docker, build: Docker,
                                                            tmp_path: Path,
                                                            cleanup: list[str]) -> None:
    cleanup.append("lk-test/misc:1")
    ctx = tmp_path / "misc"
    ctx.mkdir()
    (ctx / "f.txt").write_text("f\n")
    (ctx / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        'SHELL ["/bin/sh", "-xc"]\n'
        "RUN mkdir -p /var/old\n"
        "RUN rm -rf /var && mkdir /var && echo only > /var/only && mv /usr /usr2\n"
        "COPY --chown=7:8 --chmod=640 f.txt /copied/\n"
        "COPY . /ctx/\n"
        "HEALTHCHECK --interval=5s --retries=2 CMD true\n"
        "STOPSIGNAL SIGUSR1\n")
    out = _ok(build("-t", "lk-test/misc:1", str(ctx)))
    assert "+ rm -rf /var" in out  # the SHELL's -x shows the command
    inside = _ok(docker("run", "--rm", "lk-test/misc:1", "sh", "-c",
                        "ls /var; stat -c '%a %u %g' /copied/f.txt; ls -a /ctx; "
                        "test -e /usr && echo usr || echo no-usr; ls /usr2"))
    assert inside.split("\n")[:2] == ["only", "640 7 8"], inside
    # .dockerignore excluded the Dockerfile: read by the builder, yet not in the context
    assert inside.split("\n")[2:6] == [".", "..", "f.txt", "no-usr"], inside
    fmt = "{{json .Config.Healthcheck}} {{.Config.StopSignal}} {{json .Config.Shell}}"
    hc, sig, shell = _ok(docker("inspect", "-f", fmt, "lk-test/misc:1")).split()
    assert json.loads(hc) == {"Test": ["CMD-SHELL", "true"], "Interval": 5 * 10**9,
                              "Retries": 2}
    assert sig == "SIGUSR1" and json.loads(shell) == ["/bin/sh", "-xc"]
