"""The exercise checks of notebooks 05-08 against a real engine and real namespaces: the
notebooks' worked answers PASS, wrong ones get the hint that names the mistake, and every
check removes what it made (lk-chk* volumes, containers, namespaces, temp dirs)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import errors
from labkit.lab import exercises
from labkit.lab import layers as lay
from labkit.lab import net_demo as nd
from labkit.lab import volumes_demo as vd
from labkit.lab.checks.nb05 import reference_layer_of
from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged


@pytest.fixture(autouse=True)
def _lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)


@pytest.fixture(scope="module")
def eng() -> Iterator[LabEngine]:
    """A throw-away engine holding notebook 05's image lk-nb/app:1."""
    e = LabEngine("chk").start()
    try:
        ctx = lay.write_context(e.base / "app", "FROM busybox\n"
                                "RUN echo data > /data.txt && rm /bin/true\n"
                                "COPY app.txt /app/\n", {"app.txt": "the app\n"})
        assert not lay.build(e.client(), ctx, tag="lk-nb/app:1").error
        yield e
    finally:
        e.stop()
    assert not e.base.exists()


def _ns(eng: LabEngine, **answers: Any) -> dict[str, Any]:
    return {"eng": eng, "client": eng.client(), **answers}


def _passes(exercise_id: str, ns: dict[str, Any]) -> None:
    r = exercises.check(exercise_id, ns)
    assert r.passed, r


def _hint(exercise_id: str, ns: dict[str, Any]) -> str:
    r = exercises.check(exercise_id, ns)
    assert not r.passed, r
    return r.message


# -- 05 -----------------------------------------------------------------------------------------

def _diff_id(blob: Path) -> str:
    data = Path(blob).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_05_worked_answers_pass_and_wrong_ones_hint(eng: LabEngine) -> None:
    _passes("05.diff_id", _ns(eng, diff_id=_diff_id))
    _passes("05.layer_of", _ns(eng, layer_of=reference_layer_of))
    def stale(dirs: list[Path], path: str) -> int | None:
        # right on the check's own layers; on the image it misses the RUN's whiteout
        is_image = any((Path(d) / "data.txt").exists() for d in dirs)
        return 0 if is_image and path == "bin/true" else reference_layer_of(dirs, path)
    assert "lk-nb/app:1" in _hint("05.layer_of", _ns(eng, layer_of=stale))
    assert not [p for p in os.listdir("/tmp") if p.startswith("lk-chk05-")]


# -- 06 -----------------------------------------------------------------------------------------

def _keep(client: Any, volume: str, text: str) -> None:
    cid = vd.start(client, "lk-chk-keeper", [{"Type": "volume", "Source": volume,
                                             "Target": "/data"}],
                   cmd=("sh", "-c", f"echo '{text}' > /data/note"))
    client.containers.wait(cid).read()
    client.containers.remove(cid)


def _keep_running(client: Any, volume: str, text: str) -> None:
    vd.start(client, "lk-chk-keeper", [{"Type": "volume", "Source": volume, "Target": "/data"}],
             cmd=("sh", "-c", f"echo '{text}' > /data/note; sleep 600"))


def _lk_chk(eng: LabEngine) -> tuple[list[str], list[str]]:
    client = eng.client()
    return ([v["Name"] for v in client.volumes.list() if v["Name"].startswith("lk-chk")],
            [c["Names"][0] for c in client.containers.list(all=True)])


def test_06_worked_answers_pass_and_wrong_ones_hint(eng: LabEngine) -> None:
    _passes("06.volume_dir", _ns(eng, volume_dir=lambda c, n: c.volumes.inspect(n)["Mountpoint"]))
    _passes("06.keep_data", _ns(eng, keep_data=_keep))
    parent = {"volume_dir": lambda c, n: str(Path(c.volumes.inspect(n)["Mountpoint"]).parent)}
    assert "_data" in _hint("06.volume_dir", _ns(eng, **parent))
    assert "not a directory" in _hint("06.volume_dir", _ns(eng, volume_dir=lambda c, n: "/nope"))
    assert "still use" in _hint("06.keep_data", _ns(eng, keep_data=_keep_running))
    assert "no volume named" in _hint("06.keep_data", _ns(eng, keep_data=lambda c, v, t: None))
    assert _lk_chk(eng) == ([], [])


def test_06_greeting_reads_the_notebooks_volume(eng: LabEngine) -> None:
    client = eng.client()
    assert "no volume 'lk-nb-ex'" in _hint("06.greeting", _ns(eng))
    cid = vd.start(client, "lk-chk-writer", [{"Type": "volume", "Source": "lk-nb-ex",
                                             "Target": "/data"}],
                   cmd=("sh", "-c", "echo hello volumes > /data/greeting; sleep 600"))
    try:
        assert "still use it" in _hint("06.greeting", _ns(eng))
        client.containers.remove(cid, force=True)
        _passes("06.greeting", _ns(eng))
    finally:
        with contextlib.suppress(errors.NotFoundError):
            client.containers.remove(cid, force=True)
        client.volumes.remove("lk-nb-ex")


# -- 07 -----------------------------------------------------------------------------------------

def _count(path: Path) -> dict[str, int]:
    counts = {"stdout": 0, "stderr": 0}
    for line in Path(path).read_text().splitlines():
        counts[json.loads(line)["stream"]] += 1
    return counts


def test_07_worked_answers_pass_and_wrong_ones_hint(eng: LabEngine) -> None:
    _passes("07.count_streams", _ns(eng, count_streams=_count))
    _passes("07.log_cap", _ns(eng, log_cap=lambda n: ("json-file", {"max-size": str(n // 2),
                                                                     "max-file": "2"})))
    _passes("07.log_cap", _ns(eng, log_cap=lambda n: ("local", {"max-size": str(n // 4),
                                                                 "max-file": "2"})))
    # a reader that counts every line as stdout passes no file with stderr in it
    assert "expected" in _hint("07.count_streams", _ns(eng, count_streams=lambda p: {
        "stdout": len(Path(p).read_text().splitlines()), "stderr": 0}))
    assert _lk_chk(eng) == ([], [])


# -- 08 -----------------------------------------------------------------------------------------

def _connect(ns_a: str, ns_b: str, ip_a: str, ip_b: str) -> None:
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)
    ip("link", "add", "lkva", "netns", ns_a, "type", "veth", "peer", "name", "lkvb", "netns", ns_b)
    ip("-n", ns_a, "addr", "add", f"{ip_a}/24", "dev", "lkva")
    ip("-n", ns_b, "addr", "add", f"{ip_b}/24", "dev", "lkvb")
    ip("-n", ns_a, "link", "set", "lkva", "up")
    ip("-n", ns_b, "link", "set", "lkvb", "up")


def _left_on_host() -> tuple[list[str], list[str]]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True,
                           check=True).stdout
    return ([n for n in netns.split() if n.startswith("lk-c8")],
            [ln.split()[0] for ln in links.splitlines() if ln.startswith("lkv")])


def test_08_veth_worked_answer_passes_wrong_ones_hint_nothing_left() -> None:
    before = _left_on_host()
    _passes("08.veth", {"connect": _connect})

    def on_host(ns_a: str, ns_b: str, ip_a: str, ip_b: str) -> None:  # never moved
        subprocess.run(["ip", "link", "add", "lkva", "type", "veth", "peer", "name", "lkvb"],
                       check=True)

    def down(ns_a: str, ns_b: str, ip_a: str, ip_b: str) -> None:
        _connect(ns_a, ns_b, ip_a, ip_b)
        subprocess.run(["ip", "-n", ns_b, "link", "set", "lkvb", "down"], check=True)

    def other_subnet(ns_a: str, ns_b: str, ip_a: str, ip_b: str) -> None:
        _connect(ns_a, ns_b, ip_a, ip_b)
        subprocess.run(["ip", "-n", ns_b, "addr", "flush", "dev", "lkvb"], check=True)
        subprocess.run(["ip", "-n", ns_b, "addr", "add", f"{ip_b}/32", "dev", "lkvb"],
                       check=True)

    assert "left in the namespace your function ran in" in _hint("08.veth",
                                                                  {"connect": on_host})
    assert "is down" in _hint("08.veth", {"connect": down})
    assert "cannot ping" in _hint("08.veth", {"connect": other_subnet})
    assert "raised ZeroDivisionError" in _hint("08.veth", {"connect": lambda *a: 1 // 0})
    assert _left_on_host() == before


def _dnat(rules: list[str], port: int) -> tuple[str, int] | None:
    for rule in rules:
        m = re.search(rf"\bdport {port} dnat ip to ([\d.]+):(\d+)", rule)
        if m:
            return m.group(1), int(m.group(2))
    return None


def test_08_dnat_target_on_a_live_lab_host() -> None:
    from labkit.lab.netlab import NetLab

    with NetLab("chk8") as lab:
        _passes("08.dnat_target", {"dnat_target": _dnat, "netlab": lab})
        # right on the samples only: a fixed answer for any port the samples do not have
        fixed = {"dnat_target": lambda r, p: _dnat(r, p) if p in (80, 8080, 18080, 9999)
                 else ("203.0.113.7", 80)}
        assert "on the lab host's live rules" in _hint("08.dnat_target",
                                                        {**fixed, "netlab": lab})
        assert lab.must("ps", "-aq").split() == []
        # section 7's exercises: a hint before, PASS after the notebook's worked answers
        assert "no container publishes host port 8088" in _hint("08.publish", {"netlab": lab})
        assert "no network 'lk-ex'" in _hint("08.dns", {"netlab": lab})
        nd.web(lab, "lk-chk-mine", "8088:80", page="hello networks")
        lab.must("network", "create", "lk-ex")
        lab.must("run", "-d", "--name", "lk-chk-db", "--network", "lk-ex", "--network-alias",
                 "shop", "busybox", "sleep", "600")
        _passes("08.publish", {"netlab": lab})
        _passes("08.dns", {"netlab": lab})
