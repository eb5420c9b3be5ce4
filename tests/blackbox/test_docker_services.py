"""The real Docker CLI drives labkit's swarm services: network create -d overlay / ls /
inspect / rm, service create / ls / ps / inspect --pretty / scale / logs / rm, secret create /
ls / inspect / rm, stack deploy / ls / services / ps / rm, node inspect self --pretty
(the commands of ../shared/reference/docker-api.md).

Commands whose requests differ between CLI versions (service create and scale, stack deploy)
run with every CLI installed: Docker 28 at /usr/local/bin/docker and Debian docker.io's
20.10 at /usr/bin/docker (or named in LK_DOCKER_CLIS).  The nodes are labkit daemons in network namespaces a SwarmLab
made (1 manager + 1 worker); published ports are asked from the lab's underlay namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from labkit.measure.bench_services import HTTPD_HOSTNAME, http_get
from labkit.measure.swarmlab import SwarmLab

# LK_DOCKER_CLIS (colon-separated paths) names other CLIs, e.g. a docker.io CLI unpacked
# from its .deb with `dpkg-deb -x` (nothing installed)
CLIS = [p for p in ("/usr/local/bin/docker", "/usr/bin/docker",
                    *filter(None, os.environ.get("LK_DOCKER_CLIS", "").split(":")))
        if os.access(p, os.X_OK)]
if not CLIS and shutil.which("docker"):
    CLIS = [str(shutil.which("docker"))]

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None or not CLIS,
                                 reason="needs etcd-server and the Docker CLI")]


def _cli_id(path):
    """docker20 for a 20.10 CLI (whose requests differ: see docker-api.md section 8)."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return "docker20" if " 20.10." in out.stdout else "docker"


@pytest.fixture(scope="module")
def lab():
    lab = SwarmLab(1, 1, name=f"v{os.getpid() % 100000}", subnet="10.222.0.0/24",
                   heartbeat=0.5, registry=True).up()
    try:
        yield lab
    finally:
        lab.down()


def docker(lab, node, *args, input=None, ok=True, cli=None, timeout=90):
    r = lab.exec(node, [cli or CLIS[0], *args], capture_output=True, input=input,
                 timeout=timeout)
    if ok:
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def lines(r):
    return [x for x in r.stdout.split("\n") if x.strip()]


def _until(pred, timeout=45.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last!r})")


def _gone(lab, kind, name):
    """``name`` no longer listed (False when the listing itself failed: polled again).
    A listing could fail while a node dropped a swarm network ('No such overlay network',
    fixed in 33d4c73); polled, so such a race cannot make the test flaky."""
    r = docker(lab, "m1", kind, "ls", "--format", "{{.Name}}", ok=False)
    return r.returncode == 0 and name not in lines(r)


def test_overlay_network_create_ls_inspect_rm(lab):
    r = docker(lab, "m1", "network", "create", "-d", "overlay", "--attachable", "lkd-net")
    nid = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-z]{25}|[0-9a-f]{64}", nid), nid
    ls = docker(lab, "m1", "network", "ls", "--filter", "driver=overlay", "--format",
                "{{.Name}} {{.Driver}} {{.Scope}}")
    assert "lkd-net overlay swarm" in lines(ls)
    got = json.loads(docker(lab, "m1", "network", "inspect", "lkd-net").stdout)[0]
    assert got["Scope"] == "swarm" and got["Driver"] == "overlay" and got["Attachable"]
    assert got["IPAM"]["Config"][0]["Subnet"]
    # only a manager makes swarm networks
    r = docker(lab, "w1", "network", "create", "-d", "overlay", "lkd-no", ok=False)
    assert r.returncode == 1 and "swarm manager" in r.stderr
    out = docker(lab, "m1", "network", "rm", "lkd-net").stdout
    assert out.strip() == "lkd-net"
    assert _until(lambda: _gone(lab, "network", "lkd-net"), what="lkd-net gone")


@pytest.mark.parametrize("cli", CLIS, ids=[_cli_id(c) for c in CLIS])
def test_service_lifecycle(lab, cli):
    tag = _cli_id(cli)
    svc, net = f"pinger-{tag}", f"lkd-svc-{tag}"
    docker(lab, "m1", "network", "create", "-d", "overlay", net, cli=cli)
    try:
        r = docker(lab, "m1", "service", "create", "-d", "--stop-grace-period", "1s", "--name", svc, "--replicas", "2",
                   "--network", net, "busybox", "sh", "-c",
                   "echo lk-hello; exec sleep 86400", cli=cli)
        assert re.fullmatch(r"[0-9a-z]{25}", r.stdout.strip()), r.stdout
        _until(lambda: f"{svc} replicated 2/2" in lines(docker(
            lab, "m1", "service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}",
            cli=cli)), what="2/2 in service ls")
        ps = lines(docker(lab, "m1", "service", "ps", svc, "--filter", "desired-state=running",
                          "--format",
                          "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}", cli=cli))
        assert sorted(x.split()[0] for x in ps) == [f"{svc}.1", f"{svc}.2"]
        assert all(x.split()[1] in ("lk-m1", "lk-w1") and x.split()[2] == "Running"
                   and x.split()[3] == "Running" for x in ps), ps
        pretty = docker(lab, "m1", "service", "inspect", "--pretty", svc, cli=cli).stdout
        assert re.search(rf"Name:\s+{svc}\n", pretty), pretty
        assert re.search(r"Replicas:\s+2\n", pretty), pretty
        assert re.search(rf"Networks:\s+{net}", pretty), pretty
        raw = json.loads(docker(lab, "m1", "service", "inspect", svc, cli=cli).stdout)[0]
        assert raw["Spec"]["Name"] == svc and raw["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        assert raw["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith("busybox")
        # scale waits until the tasks are running and stay so (the CLI polls /tasks)
        r = docker(lab, "m1", "service", "scale", f"{svc}=3", cli=cli, timeout=120)
        assert f"{svc} scaled to 3" in r.stdout, r.stdout + r.stderr
        assert f"{svc} replicated 3/3" in lines(docker(
            lab, "m1", "service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}",
            cli=cli))
        def all_said():
            out = docker(lab, "m1", "service", "logs", svc, cli=cli).stdout
            return out if out.count("lk-hello") >= 3 else None

        logs = _until(all_said, what="a line from every task")
        for line in logs.splitlines():
            assert re.match(rf"{svc}\.[123]\.\w+@lk-(m1|w1)\s+\| lk-hello$", line), line
        assert docker(lab, "m1", "service", "rm", svc, cli=cli).stdout.strip() == svc
        assert _until(lambda: _gone(lab, "service", svc), what="service gone")
    finally:
        docker(lab, "m1", "service", "rm", svc, ok=False, cli=cli)
        _until(lambda: docker(lab, "m1", "network", "rm", net, ok=False, cli=cli).returncode
               == 0 or _gone(lab, "network", net), what="network removed")


@pytest.mark.parametrize("cli", CLIS, ids=[_cli_id(c) for c in CLIS])
def test_service_create_waits_until_converged(lab, cli):
    svc = f"conv-{_cli_id(cli)}"
    try:
        r = docker(lab, "m1", "service", "create", "--stop-grace-period", "1s", "--name", svc, "busybox", "sleep", "86400",
                   cli=cli, timeout=120)
        out = r.stdout + r.stderr
        assert "converged" in out, out
    finally:
        docker(lab, "m1", "service", "rm", svc, ok=False, cli=cli)


def test_service_image_is_pinned_to_its_registry_digest_and_pulled_on_every_node(lab):
    ref = lab.add_image("lk-pin:1")  # on m1, pushed to the lab's registry
    r = docker(lab, "m1", "service", "create", "-d", "--stop-grace-period", "1s", "--name",
               "pinned", "--mode", "global", ref, "sleep", "86400")
    assert "could not be accessed on a registry" not in r.stderr, r.stderr
    try:
        image = json.loads(docker(lab, "m1", "service", "inspect", "pinned").stdout
                           )[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert re.fullmatch(rf"{re.escape(ref)}@sha256:[0-9a-f]{{64}}", image), image
        _until(lambda: lines(docker(lab, "m1", "service", "ls", "--format",
                                    "{{.Name}} {{.Replicas}}")) == ["pinned 2/2"],
               timeout=90, what="a task on each node")
        # w1 pulled it by digest (untagged there, as Docker's nodes do)
        pulled = json.loads(docker(lab, "w1", "image", "inspect", image).stdout)[0]
        repo, digest = ref.rsplit(":", 1)[0], image.split("@", 1)[1]
        assert f"{repo}@{digest}" in pulled["RepoDigests"], pulled["RepoDigests"]
    finally:
        docker(lab, "m1", "service", "rm", "pinned", ok=False)


def test_duplicate_service_name_is_refused(lab):
    docker(lab, "m1", "service", "create", "-d", "--stop-grace-period", "1s", "--name", "twice", "busybox", "sleep",
           "86400")
    try:
        r = docker(lab, "m1", "service", "create", "-d", "--stop-grace-period", "1s", "--name", "twice", "busybox",
                   "sleep", "86400", ok=False)
        assert r.returncode == 1 and re.search("already exists|name conflicts", r.stderr)
        assert lines(docker(lab, "m1", "service", "ls", "--filter", "name=twice", "--format",
                            "{{.Name}}")) == ["twice"]
    finally:
        docker(lab, "m1", "service", "rm", "twice")


def test_secret_create_ls_inspect_rm(lab, tmp_path):
    f = tmp_path / "sec"
    f.write_bytes(b"s3cr3t-value\n")
    sid = docker(lab, "m1", "secret", "create", "lkd-sec1", str(f)).stdout.strip()
    assert re.fullmatch(r"[0-9a-z]{25}", sid), sid
    docker(lab, "m1", "secret", "create", "--label", "k=v", "lkd-sec2", "-",
           input="from-stdin")
    ls = lines(docker(lab, "m1", "secret", "ls", "--format", "{{.ID}} {{.Name}}"))
    assert f"{sid} lkd-sec1" in ls and any(x.endswith(" lkd-sec2") for x in ls)
    got = json.loads(docker(lab, "m1", "secret", "inspect", "lkd-sec1").stdout)[0]
    assert got["ID"] == sid and got["Spec"]["Name"] == "lkd-sec1"
    assert "Data" not in got["Spec"] and "s3cr3t" not in json.dumps(got)
    assert json.loads(docker(lab, "m1", "secret", "inspect", "lkd-sec2").stdout
                      )[0]["Spec"]["Labels"] == {"k": "v"}
    # too big, and in use: refused
    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 1))
    r = docker(lab, "m1", "secret", "create", "lkd-big", str(big), ok=False)
    assert r.returncode == 1 and "less than 500KB" in r.stderr
    docker(lab, "m1", "service", "create", "-d", "--stop-grace-period", "1s", "--name", "holder", "--secret", "lkd-sec1",
           "busybox", "sleep", "86400")
    try:
        r = docker(lab, "m1", "secret", "rm", "lkd-sec1", ok=False)
        assert r.returncode == 1 and "holder" in r.stderr, r.stderr
    finally:
        docker(lab, "m1", "service", "rm", "holder")
    out = docker(lab, "m1", "secret", "rm", "lkd-sec1", "lkd-sec2").stdout
    assert lines(docker(lab, "m1", "secret", "ls", "--format", "{{.Name}}")) == []
    assert "lkd-sec1" in out and "lkd-sec2" in out


STACK = """\
version: "3.8"
services:
  web:
    image: busybox:latest
    stop_grace_period: 1s
    command: ["sh", "-c", "HTTPD"]
    ports:
      - "8090:80"
    deploy:
      replicas: 2
  redis:
    image: busybox:latest
    stop_grace_period: 1s
    command: sleep 86400
""".replace("HTTPD", HTTPD_HOSTNAME)


@pytest.mark.parametrize("cli", CLIS, ids=[_cli_id(c) for c in CLIS])
def test_stack_deploy_ls_services_ps_rm(lab, cli, tmp_path):
    old = _cli_id(cli) == "docker20"
    st, port = ("lkst20", 8091) if old else ("lkst", 8090)
    f = tmp_path / "stack.yml"
    f.write_text(STACK.replace("8090:80", f"{port}:80"))
    r = docker(lab, "m1", "stack", "deploy", "-c", str(f), st, cli=cli)
    assert f"Creating network {st}_default" in r.stdout, r.stdout
    assert f"Creating service {st}_web" in r.stdout and f"Creating service {st}_redis" \
        in r.stdout
    try:
        assert f"{st} 2" in lines(docker(lab, "m1", "stack", "ls", "--format",
                                         "{{.Name}} {{.Services}}", cli=cli))
        _until(lambda: sorted(lines(docker(lab, "m1", "stack", "services", st, "--format",
                                           "{{.Name}} {{.Replicas}}", cli=cli)))
               == [f"{st}_redis 1/1", f"{st}_web 2/2"], what="the stack's services running")
        ps = lines(docker(lab, "m1", "stack", "ps", st, "--filter", "desired-state=running",
                          "--format",
                          "{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Node}} {{.Error}}",
                          cli=cli))
        assert sorted(x.split()[0] for x in ps) == [f"{st}_redis.1", f"{st}_web.1",
                                                    f"{st}_web.2"], ps
        assert all(" Running Running " in x for x in ps), ps
        # the published port answers on the worker's address too (the routing mesh)
        w1 = lab.node("w1")
        got = lab.in_underlay(lambda: _until(lambda: _try_get(w1.addr, port),
                                             what="the published port"))
        assert got
    finally:
        r = docker(lab, "m1", "stack", "rm", st, cli=cli)
    assert f"Removing service {st}_web" in r.stdout and \
        f"Removing network {st}_default" in r.stdout, r.stdout
    _until(lambda: lines(docker(lab, "m1", "stack", "ls", "--format", "{{.Name}}",
                                cli=cli)) == [], what="stack gone")
    _until(lambda: _gone(lab, "network", f"{st}_default"), what="stack network gone")


def _try_get(addr, port):
    try:
        return http_get(addr, port)
    except OSError:
        return None


def test_node_inspect_self_pretty(lab):
    out = docker(lab, "m1", "node", "inspect", "self", "--pretty").stdout
    assert re.search(r"Hostname:\s+lk-m1", out), out
    assert re.search(r"State:\s+Ready", out) and re.search(r"Availability:\s+Active", out)
    assert "Manager Status:" in out and re.search(r"Leader:\s+Yes", out)
    out = docker(lab, "w1", "node", "inspect", "self", "--pretty", ok=False)
    assert out.returncode == 1 and "swarm manager" in out.stderr
