"""Notebooks 13-16's helpers that need no swarm (parsers of ip/bridge/xfrm/nslookup/
mountinfo output, the spread summary, the compose pieces) and their exercise checks: each
check passes the worked answer and gives a hint, never a pass, for each wrong one (on fake
labs that answer what a live one would)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from labkit import errors
from labkit.lab import exercises, overlay_demo, secrets_demo, services_demo, stack_demo


@pytest.fixture(autouse=True)
def _lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)


# -- overlay_demo --------------------------------------------------------------------------

def test_mac_of_is_0242_and_the_address() -> None:
    assert overlay_demo.mac_of("10.0.1.3") == "02:42:0a:00:01:03"
    assert overlay_demo.mac_of("10.0.1.3/24") == "02:42:0a:00:01:03"
    for bad in ("10.0.1", "10.0.1.256", "a.b.c.d", ""):
        with pytest.raises(errors.InvalidArgumentError):
            overlay_demo.mac_of(bad)


IP_LINK = [
    {"ifname": "lkvx4097", "mtu": 1450, "master": "lkov4097", "operstate": "UNKNOWN",
     "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 4097, "local": "10.216.0.2",
                                                      "port": 4789, "learning": False}}},
    {"ifname": "eth0", "mtu": 1500, "linkinfo": {"info_kind": "veth"}},
    {"ifname": "lo", "mtu": 65536},
]


def test_parse_vxlan_links_keeps_vxlan_only() -> None:
    rows = overlay_demo.parse_vxlan_links(IP_LINK)
    assert rows == [{"device": "lkvx4097", "vni": 4097, "local": "10.216.0.2", "dstport": 4789,
                     "learning": False, "mtu": 1450, "master": "lkov4097",
                     "state": "UNKNOWN"}]


def test_parse_fdb_keeps_entries_that_send_somewhere() -> None:
    fdb = [{"mac": "5a:e1:f6:e4:8d:31", "flags": [], "master": "lkov4097",
            "state": "permanent"},
           {"mac": "02:42:0a:00:01:03", "dst": "10.216.0.3", "flags": ["self"],
            "state": "permanent"},
           {"mac": "00:00:00:00:00:00", "dst": "10.216.0.3", "flags": ["self"],
            "state": "permanent"}]
    rows = overlay_demo.parse_fdb(fdb)
    assert [(r["mac"], r["dst"], r["kind"].split()[0]) for r in rows] == [
        ("02:42:0a:00:01:03", "10.216.0.3", "endpoint"),
        ("00:00:00:00:00:00", "10.216.0.3", "flood")]


KEY = "0x0102030405060708090a0b0c0d0e0f1011121314"
XFRM = f"""src 10.216.0.2 dst 10.216.0.3
\tproto esp spi 0x1a2b3c4d(439041101) reqid 0(0x00000000) mode transport
\treplay-window 0 seq 0x00000000 flag  (0x00000000)
\taead rfc4106(gcm(aes)) {KEY} 128
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\tlifetime current:
\t  4876(bytes), 23(packets)
\t  add 2026-12-04 17:00:00 use 2026-12-04 17:00:05
src 10.216.0.3 dst 10.216.0.2
\tproto esp spi 0x00000101(257) reqid 0(0x00000000) mode transport
\taead rfc4106(gcm(aes)) {KEY} 128
\tlifetime current:
\t  0(bytes), 0(packets)
"""


def test_parse_xfrm_states_keeps_counters_and_drops_the_key() -> None:
    rows = overlay_demo.parse_xfrm_states(XFRM)
    assert [(r["src"], r["dst"], r["proto"], r["spi"], r["mode"], r["algorithm"],
             r["bytes"], r["packets"]) for r in rows] == [
        ("10.216.0.2", "10.216.0.3", "esp", "0x1a2b3c4d", "transport", "rfc4106(gcm(aes))",
         4876, 23),
        ("10.216.0.3", "10.216.0.2", "esp", "0x00000101", "transport", "rfc4106(gcm(aes))",
         0, 0)]
    assert KEY[2:] not in repr(rows) and "0102030405" not in repr(rows)


def test_parse_xfrm_states_of_nothing() -> None:
    assert overlay_demo.parse_xfrm_states("") == []


def test_parse_ping() -> None:
    text = ("--- 10.0.1.4 ping statistics ---\n23 packets transmitted, 22 packets received, "
            "4% packet loss\nround-trip min/avg/max = 0.101/0.254/0.880 ms\n")
    assert overlay_demo.parse_ping(text) == {"sent": 23, "received": 22, "avg_ms": 0.254}
    assert overlay_demo.parse_ping("ping: bad address 'x'") == {"sent": 0, "received": 0,
                                                                 "avg_ms": None}


def test_plot_throughput_draws_a_bar_per_run() -> None:
    import matplotlib
    from matplotlib.patches import Rectangle

    matplotlib.use("Agg")
    rows = [overlay_demo.Throughput("lk-net", False, 2.0, 3.5, 0),
            overlay_demo.Throughput("lk-secure", True, 2.0, 1.25, 4)]
    ax = overlay_demo.plot_throughput(rows)
    assert sorted(round(p.get_height(), 2) for p in ax.patches if isinstance(p, Rectangle)) \
        == [1.25, 3.5]
    assert "encrypted" in ax.get_xticklabels()[1].get_text()


# -- services_demo -------------------------------------------------------------------------

NSLOOKUP = """Server:\t\t127.0.0.11
Address:\t127.0.0.11:53

Non-authoritative answer:
Name:\ttasks.web
Address: 10.0.1.5
Name:\ttasks.web
Address: 10.0.1.3

"""


def test_parse_nslookup_skips_the_server_lines() -> None:
    assert services_demo.parse_nslookup(NSLOOKUP) == ["10.0.1.5", "10.0.1.3"]
    old = "Server: 127.0.0.11\nAddress 1: 127.0.0.11\n\nName: web\nAddress 1: 10.0.1.2 web\n"
    assert services_demo.parse_nslookup(old) == ["10.0.1.2"]
    assert services_demo.parse_nslookup("** server can't find web: NXDOMAIN\n") == []


def test_spread_and_evenness() -> None:
    counts = services_demo.spread(["a", "b", "a", "", "c", "b", "a\n"])
    assert counts == {"a": 3, "b": 2, "c": 1}
    even = services_demo.evenness({"a": 100, "b": 100, "c": 100}, 300)
    assert even["max_dev"] == 0 and even["answered"] == 300 and even["backends"] == 3
    assert services_demo.evenness({"a": 150, "b": 75, "c": 75}, 300)["max_dev"] == 0.5
    with pytest.raises(errors.InvalidArgumentError):
        services_demo.evenness({}, 0)


def test_nft_table_picks_one_table() -> None:
    rules = ("table inet labkit {\n\tchain x {\n\t}\n}\ntable ip lk-vip {\n\tchain out {\n"
             "\t\tip daddr 10.0.1.2 dnat to numgen inc mod 3 map { 0 : 10.0.1.3 }\n\t}\n}\n"
             "table ip other {\n}\n")
    got = services_demo.nft_table(rules, "lk-vip")
    assert got.startswith("table ip lk-vip {") and "numgen" in got and got.endswith("}")
    assert "labkit" not in got and "other" not in got
    assert services_demo.nft_table(rules, "lk-ingress") == ""


def test_task_row_is_service_ps() -> None:
    t = {"ID": "t" * 25, "Slot": 2, "NodeID": "n1", "DesiredState": "running",
         "_ServiceName": "web",
         "Status": {"State": "running", "ContainerStatus": {"ContainerID": "c" * 64}},
         "NetworksAttachments": [{"Network": {"ID": "x"}, "Addresses": ["10.0.1.3/24"]}]}
    row = services_demo.task_row(t, {"n1": "w1"})
    assert row == {"name": "web.2", "id": "t" * 12, "node": "w1", "desired": "running",
                   "state": "running", "error": "", "container": "c" * 12,
                   "addresses": "10.0.1.3/24"}


def test_fetch_many_bounds_the_count() -> None:
    lab = services_demo.ServiceLab("nbfake", "10.219.0.0/24")
    with pytest.raises(errors.InvalidArgumentError):
        lab.fetch_many({}, "http://web/", 0)
    with pytest.raises(errors.InvalidArgumentError):
        lab.set_endpoint_mode("web", "roundrobin")


# -- secrets_demo --------------------------------------------------------------------------

MOUNTINFO = """\
600 500 0:52 / / rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
601 600 0:53 / /proc rw,nosuid - proc proc rw
640 600 0:61 /db_pass /run/secrets/db_pass ro,nosuid,nodev,noexec - tmpfs tmpfs rw,size=1024k,mode=700
641 600 0:62 / /run/secretsx rw - tmpfs tmpfs rw
"""


def test_parse_mountinfo_under_run_secrets() -> None:
    rows = secrets_demo.parse_mountinfo(MOUNTINFO)
    assert rows == [{"mount point": "/run/secrets/db_pass", "fstype": "tmpfs",
                     "options": "ro,nosuid,nodev,noexec",
                     "super options": "rw,size=1024k,mode=700"}]


def test_find_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "hit").write_bytes(b"xx lk-secret-value yy")
    (tmp_path / "miss").write_bytes(b"nothing here")
    (tmp_path / "link").symlink_to(tmp_path / "a" / "hit")
    assert secrets_demo.find_bytes(tmp_path, b"lk-secret-value") == ["a/hit"]
    with pytest.raises(errors.InvalidArgumentError):
        secrets_demo.find_bytes(tmp_path, b"short")


# -- stack_demo ----------------------------------------------------------------------------

def test_build_context_has_an_executable_cgi() -> None:
    data = stack_demo.build_context(stack_demo.COUNTER_VOTE, "counter")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"Dockerfile", "vote", "index.html"}
        assert members["vote"].mode == 0o755
        df = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
    assert df.startswith("FROM busybox") and "COPY --chmod=755 vote /www/cgi-bin/vote" in df


def test_parse_votes() -> None:
    assert stack_demo.parse_votes("front 0123456789ab: cats=3 dogs=1") == {
        "front": "0123456789ab", "cats": 3, "dogs": 1}
    assert stack_demo.parse_votes("") == {"front": "", "cats": None, "dogs": None}


def test_error_lines_and_replicas_in() -> None:
    msg = "broken.yml:5: services.front.portz: unknown key\nbroken.yml:8: replicas: not a number"
    assert stack_demo.error_lines(msg, "broken.yml") == [5, 8]
    assert stack_demo.error_lines(msg, "other.yml") == []
    assert stack_demo.replicas_in(stack_demo.COMPOSE, "front") == 2
    assert stack_demo.replicas_in(stack_demo.COMPOSE, "nope") is None
    assert stack_demo.replicas_in(stack_demo.BROKEN, "front") is None  # "two"


def test_broken_compose_has_its_mistakes_on_lines_5_and_8() -> None:
    lines = stack_demo.BROKEN.splitlines()
    assert lines[4].strip() == "portz:" and lines[7].strip() == "replicas: two"


# -- the checks, on fake labs --------------------------------------------------------------

W1 = "10.216.0.3"
B_IP = "10.0.1.4"


class FakeOverlay(overlay_demo.OverlayLab):
    def __init__(self, fdb_dst: str = W1) -> None:
        super().__init__("nbfake", "10.216.0.0/24")
        self.fdb_dst = fdb_dst

    def pair(self, service: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"ID": "a"}, {"ID": "b"}

    def ip_of(self, task: Any, network: str) -> str:
        return B_IP

    def fdb(self, network: str) -> pd.DataFrame:
        return pd.DataFrame([
            {"node": "m1", "mac": "00:00:00:00:00:00", "dst": W1},
            {"node": "m1", "mac": overlay_demo.mac_of(B_IP), "dst": self.fdb_dst},
            {"node": "w1", "mac": "00:00:00:00:00:00", "dst": "10.216.0.2"}])


@pytest.mark.parametrize(("ns", "hint"), [
    ({"b_mac": "02:42:0a:00:01:04", "b_vtep": "10.216.0.2"}, "not where m1 sends"),
    ({"b_mac": "02:42:0a:00:01:04", "b_vtep": B_IP}, "overlay address"),
    ({"b_mac": "02:42:0a:00:01:03", "b_vtep": W1}, "not the MAC"),
    ({"b_mac": "0a:00:01:04", "b_vtep": W1}, "not the MAC"),
    ({"b_mac": None, "b_vtep": W1}, "define"),
    ({"b_mac": 42, "b_vtep": W1}, "strings"),
])
def test_check_13_hints(ns: dict[str, Any], hint: str) -> None:
    r = exercises.check("13.fdb_entry", {"demo": FakeOverlay(), **ns})
    assert not r.passed and hint in r.message, r


def test_check_13_passes_the_worked_answer_and_catches_a_stale_fdb() -> None:
    ns = {"b_mac": overlay_demo.mac_of(B_IP), "b_vtep": W1}
    assert exercises.check("13.fdb_entry", {"demo": FakeOverlay(), **ns}).passed
    stale = exercises.check("13.fdb_entry", {"demo": FakeOverlay("10.216.0.9"),
                                             "b_mac": ns["b_mac"], "b_vtep": "10.216.0.9"})
    assert not stale.passed and "not to w1" in stale.message
    assert not exercises.check("13.fdb_entry", {"demo": object(), **ns}).passed


TASKS = ["10.0.1.3", "10.0.1.4", "10.0.1.5"]
VIP = "10.0.1.2"


class FakeServices(services_demo.ServiceLab):
    def __init__(self, mode: str = "dnsrr", answer: list[str] | None = None) -> None:
        super().__init__("nbfake", "10.217.0.0/24")
        self.mode = mode
        self.answer = TASKS if answer is None else answer

    def endpoint_mode(self, service: str) -> str:
        return self.mode

    def task_ips(self, service: str, network: str) -> list[str]:
        return list(TASKS)

    def tasks(self, service: str, *, running: bool = False) -> list[dict[str, Any]]:
        return [{"ID": "client"}]

    def dns(self, task: Any, name: str) -> list[str]:
        return list(self.answer)


def test_check_14_passes_the_worked_answer() -> None:
    r = exercises.check("14.dnsrr", {"demo": FakeServices(), "predicted": set(TASKS)})
    assert r.passed, r


@pytest.mark.parametrize(("demo", "predicted", "hint"), [
    (FakeServices(mode="vip", answer=[VIP]), set(TASKS), "still in endpoint mode 'vip'"),
    (FakeServices(), {VIP}, "one address"),
    (FakeServices(), set(TASKS[:2]), "you predicted"),
    (FakeServices(), "10.0.1.3", "a set of address strings"),
])
def test_check_14_hints(demo: FakeServices, predicted: Any, hint: str,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("labkit.lab.checks.nb14.time.sleep", lambda _s: None)
    r = exercises.check("14.dnsrr", {"demo": demo, "predicted": predicted})
    assert not r.passed and hint in r.message, r


def test_check_14_catches_a_dns_that_still_answers_the_vip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr("labkit.lab.checks.nb14.time.monotonic", lambda: next(clock))
    monkeypatch.setattr("labkit.lab.checks.nb14.time.sleep", lambda _s: None)
    r = exercises.check("14.dnsrr", {"demo": FakeServices(answer=[VIP]),
                                     "predicted": set(TASKS)})
    assert not r.passed and "the DNS answers ['10.0.1.2']" in r.message


NEW = b"lk-nb15-new-password-0042"


class FakeSecrets(secrets_demo.SecretsLab):
    def __init__(self, refs: list[dict[str, Any]], names: list[str], content: bytes) -> None:
        super().__init__("nbfake", "10.218.0.0/24")
        self.refs, self.names, self.content = refs, names, content
        self.values = {"db_pass": b"lk-nb15-old", "db_pass_v2": NEW}

    def service_secrets(self, service: str) -> list[dict[str, Any]]:
        return self.refs

    def secrets(self) -> pd.DataFrame:
        return pd.DataFrame({"name": self.names})

    def wait_running(self, service: str, count: int, timeout: float = 90.0
                     ) -> list[dict[str, Any]]:
        return [{"ID": "t"}]

    def read_secret(self, task: Any, target: str) -> bytes:
        return self.content


def _ref(name: str, target: str = "db_pass") -> dict[str, Any]:
    return {"SecretName": name, "File": {"Name": target}}


def test_check_15_passes_the_worked_answer() -> None:
    demo = FakeSecrets([_ref("db_pass_v2")], ["db_pass_v2"], NEW)
    assert exercises.check("15.rotate", {"demo": demo}).passed


@pytest.mark.parametrize(("refs", "names", "content", "hint"), [
    ([_ref("db_pass")], ["db_pass", "db_pass_v2"], b"lk-nb15-old", "still the secret"),
    ([_ref("db_pass_v2", "db_pass_v2")], ["db_pass_v2"], NEW, "no secret at /run/secrets"),
    ([_ref("db_pass_v2")], ["db_pass", "db_pass_v2"], NEW, "still in the swarm"),
    ([_ref("db_pass_v2")], ["db_pass_v2"], b"lk-nb15-old", "does not hold"),
    ([_ref("elsewhere")], ["elsewhere"], NEW, "not made with demo.create_secret"),
])
def test_check_15_hints(refs: list[dict[str, Any]], names: list[str], content: bytes,
                        hint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10000, 7))  # the check's bounded wait runs out at once
    monkeypatch.setattr("labkit.lab.checks.nb15.time.monotonic", lambda: next(clock))
    monkeypatch.setattr("labkit.lab.checks.nb15.time.sleep", lambda _s: None)
    r = exercises.check("15.rotate", {"demo": FakeSecrets(refs, names, content)})
    assert not r.passed and hint in r.message, r


class FakeStack(stack_demo.StackLab):
    def __init__(self, replicas: int, compose_replicas: int, labelled: bool = True) -> None:
        super().__init__("nbfake", "10.219.0.0/24")
        self.replicas = replicas
        self.last_compose = stack_demo.COMPOSE.replace("replicas: 2",
                                                       f"replicas: {compose_replicas}")
        self.labels = {stack_demo.NAMESPACE: "voter"} if labelled else {}

    def service(self, ref: str) -> dict[str, Any]:
        return {"Spec": {"Name": ref, "Labels": self.labels,
                         "Mode": {"Replicated": {"Replicas": self.replicas}}}}

    def wait_running(self, service: str, count: int, timeout: float = 90.0
                     ) -> list[dict[str, Any]]:
        return [{"NodeID": f"n{i}"} for i in range(count)]

    def node_of(self, task: Any) -> Any:
        return self.lab.nodes[1]


def test_check_16_passes_the_worked_answer() -> None:
    r = exercises.check("16.scale_by_compose", {"demo": FakeStack(3, 3)})
    assert r.passed, r


@pytest.mark.parametrize(("demo", "hint"), [
    (FakeStack(3, 2), "would set it back"),      # `service scale` behind the stack's back
    (FakeStack(2, 2), "edit the text to 3"),
    (FakeStack(3, 3, labelled=False), "not part of the stack"),
    (FakeStack(4, 4), "replicas: 4"),
])
def test_check_16_hints(demo: FakeStack, hint: str) -> None:
    r = exercises.check("16.scale_by_compose", {"demo": demo})
    assert not r.passed and hint in r.message, r


def test_every_exercise_of_13_to_16_is_registered() -> None:
    assert exercises.registered("13") == ["13.fdb_entry"]
    assert exercises.registered("14") == ["14.dnsrr"]
    assert exercises.registered("15") == ["15.rotate"]
    assert exercises.registered("16") == ["16.scale_by_compose"]


class TaskListLab(services_demo.ServiceLab):
    """A ServiceLab whose tasks() answers a fixed list (settle's bookkeeping, no swarm)."""

    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        super().__init__("nbfake", "10.217.0.0/24")
        self._tasks = tasks
        self._nodes_by_id = {"n1": self.lab.nodes[0], "n2": self.lab.nodes[1]}

    def tasks(self, service: str, *, running: bool = False) -> list[dict[str, Any]]:
        return self._tasks


def _task(tid: str, node: str, state: str, desired: str, ts: str, err: str = "") -> dict[str, Any]:
    return {"ID": tid * 25, "NodeID": node, "Slot": 0, "DesiredState": desired,
            "Status": {"State": state, "Timestamp": ts, "Err": err}}


def test_settle_shows_per_node_the_running_task_or_the_refusal() -> None:
    lab = TaskListLab([
        _task("a", "n1", "rejected", "shutdown", "1", "no ESP"),
        _task("b", "n1", "running", "running", "2"),
        _task("c", "n2", "rejected", "shutdown", "1", "no ESP"),
        _task("d", "n2", "assigned", "running", "3")])
    got = lab.settle("secure", 2, timeout=1)
    assert sorted(zip(got.node, got.state, got.error, strict=True)) == [
        ("m1", "running", ""), ("w1", "rejected", "no ESP")]


def test_settle_waits_for_every_slot_bounded() -> None:
    lab = TaskListLab([_task("a", "n1", "running", "running", "1")])
    with pytest.raises(errors.UnsupportedError, match="2 tasks running or refused"):
        lab.settle("secure", 2, timeout=0.3)
