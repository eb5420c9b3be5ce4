"""`docker swarm init --external-ca protocol=cfssl,url=...`: a swarm whose node certificates
are signed by an outside CA (Debian's `cfssl serve`, run on the first manager's own loopback
in its lab namespace).  The swarm then holds no root key at all."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from labkit.engine.swarm import ca
from labkit.measure.swarmlab import SwarmLab

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(not all(shutil.which(b) for b in ("etcd", "cfssl", "docker")),
                                 reason="needs etcd-server, golang-cfssl and the Docker CLI")]


@pytest.fixture
def lab_with_cfssl(tmp_path):
    lab = SwarmLab(1, 1, name=f"x{os.getpid() % 100000}", subnet="10.216.0.0/24")
    root = ca.RootCA.create()
    d = tmp_path / "cfssl"
    d.mkdir(mode=0o700)
    (d / "ca.pem").write_bytes(root.cert_pem)
    fd = os.open(d / "ca-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, root.key_pem or b"")
    os.close(fd)
    proc = None
    try:
        lab.up(form=False)
        log = open(d / "serve.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{lab.node('m1').netns}", "cfssl", "serve",
             "-address", "127.0.0.1", "-port", "8888", "-ca", str(d / "ca.pem"),
             "-ca-key", str(d / "ca-key.pem"), "-loglevel", "1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 15
        while b"Now listening" not in (d / "serve.log").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, \
                (d / "serve.log").read_text()[-2000:]
            time.sleep(0.05)
        yield lab, root, d
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)
        lab.down()


def test_external_ca_signs_every_node_and_the_swarm_keeps_no_root_key(lab_with_cfssl):
    lab, root, d = lab_with_cfssl
    m1, w1 = lab.node("m1"), lab.node("w1")
    ext = f"protocol=cfssl,url=http://127.0.0.1:8888,cacert={d / 'ca.pem'}"
    r = lab.exec("m1", ["docker", "swarm", "init", "--advertise-addr", m1.addr,
                        "--external-ca", ext], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    tok = m1.api("GET", "/swarm")["JoinTokens"]["Worker"]
    lab.join(w1, tok)
    lab.wait_ready(30)
    for n in (m1, w1):
        cert = Path(n.base, "root/swarm/certificates/swarm-node.crt").read_bytes()
        who = root.verify(cert, role=n.role)  # signed by cfssl's CA, in the role asked
        assert who.node_id == n.node_id()
    sw = m1.api("GET", "/swarm")
    ext = sw["Spec"]["CAConfig"]["ExternalCAs"]
    assert ext[0]["Protocol"] == "cfssl" and ext[0]["URL"] == "http://127.0.0.1:8888"
    assert "SigningCAKey" not in sw["Spec"]["CAConfig"]
    assert sw["TLSInfo"]["TrustRoot"].encode() == root.cert_pem
    # one signing per node, by cfssl itself
    assert (d / "serve.log").read_bytes().count(b"signed certificate with serial number") == 2
