"""Options Docker refuses get Docker's status and words through the real Docker CLI (the
first `docker` on PATH): moby's texts, printed as "Error response from daemon: ..."."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged


@pytest.mark.parametrize(("flags", "words"), [
    (["--log-driver", "nosuch"], "logger: no log driver named 'nosuch' is registered"),
    (["--log-opt", "mode=weird"], "logger: logging mode not supported: weird"),
    (["--log-opt", "nosuch=1"], "unknown log opt 'nosuch' for json-file log driver"),
    (["--log-opt", "max-file=0"], "max-file cannot be less than 1"),
    (["--stop-signal", "bad"], "Invalid signal: bad"),
    (["--network", "nosuch"], "network nosuch not found"),
])
def test_create_refusals_in_dockers_words(engine: LabEngine, name: str, flags: list[str],
                                          words: str) -> None:
    exe = shutil.which("docker")
    if exe is None:
        pytest.fail("no docker CLI on PATH (make setup installs Debian's docker.io)")
    # --pull never: the CLI answers any 404 from create (moby's "network nosuch not found"
    # is one) by pulling the image and trying again; with no registry reachable the pull's
    # error would hide the words under test
    r = subprocess.run([exe, "create", "--pull", "never", "--name", name, *flags, "busybox",
                        "true"],
                       env=engine.docker_env, capture_output=True, timeout=60, check=False)
    assert r.returncode != 0
    assert f"Error response from daemon: {words}".encode() in r.stderr, r.stderr
    ps = subprocess.run([exe, "ps", "-aq", "--filter", f"name={name}"], env=engine.docker_env,
                        capture_output=True, timeout=60, check=False)
    assert ps.stdout == b""  # nothing was created


def test_attach_and_exec_refusals_in_dockers_words(engine: LabEngine, name: str) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")
    ctr = client.containers.run("busybox", ["sleep", "600"], name=name, detach=True)
    try:
        ctr.pause()
        with pytest.raises(docker.errors.APIError) as exc:
            ctr.attach_socket(params={"stdin": 1, "stream": 1})
        assert exc.value.status_code == 409
        assert "You cannot attach to a paused container, unpause it first" in str(exc.value)
        with pytest.raises(docker.errors.APIError) as exc:
            ctr.exec_run("true")
        assert exc.value.status_code == 409 and "is paused, unpause the container" in \
            str(exc.value)
    finally:
        ctr.remove(force=True)
