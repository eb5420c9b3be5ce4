"""labkit bench images, the pure parts: statistics, targets, CSV/JSON/table/PNG output, the CLI's
error lines, the pull/push output counters and the seeded payload archive."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from rich.console import Console

from labkit import errors
from labkit.cli.bench import parser
from labkit.measure import bench_images as bi


def _rows() -> list[bi.ImageRow]:
    return [
        bi.ImageRow("build cold", "labkit", error="page not found"),
        bi.ImageRow("build cold", "dockerd", (300.0, 400.0, 350.0)),
        bi.ImageRow("push", "labkit", (90.0, 110.0, 100.0)),
        bi.ImageRow("push", "dockerd", (200.0, 200.0, 200.0), note="layers pushed 2/2"),
        bi.ImageRow("pull", "labkit", (300.0,)),
        bi.ImageRow("pull", "dockerd", (200.0,)),
    ]


def test_p95_interpolates_within_the_samples() -> None:
    assert bi.p95([7.0]) == 7.0
    xs = [float(i) for i in range(1, 21)]
    assert bi.p95(xs) == pytest.approx(19.05)
    assert bi.p95(reversed(xs)) == pytest.approx(19.05)  # order of the samples is irrelevant
    assert bi.p95([1.0, 2.0]) == pytest.approx(1.95)
    assert min(xs) <= bi.p95(xs) <= max(xs)
    with pytest.raises(errors.InvalidArgumentError, match="no samples"):
        bi.p95([])


def test_row_figures_and_status() -> None:
    ok = bi.ImageRow("push", "dockerd", (3.0, 1.0, 2.0))
    assert (ok.n, ok.median_ms, ok.status) == (3, 2.0, "ok")
    assert ok.p95_ms == pytest.approx(2.9)
    bad = bi.ImageRow("push", "labkit", error="405: Method Not Allowed")
    assert bad.status == "cannot run: 405: Method Not Allowed"
    assert bad.median_ms is None and bad.p95_ms is None and bad.n == 0
    assert bi.ImageRow("pull", "labkit").status == "not run"


def test_targets_are_ratios_of_medians_labkit_over_dockerd() -> None:
    goals = {g.op: g for g in bi.targets(_rows())}
    assert list(goals) == ["build cold", "push", "pull"]  # OPS order, only ops measured
    assert goals["build cold"].ratio is None and goals["build cold"].met is None
    assert goals["push"].ratio == pytest.approx(0.5) and goals["push"].met is True
    assert goals["pull"].ratio == pytest.approx(1.5) and goals["pull"].met is False
    equal = bi.targets([bi.ImageRow("pull", "labkit", (2.0,)),
                        bi.ImageRow("pull", "dockerd", (2.0,))])
    assert equal[0].met is True  # "no slower" includes equal


def test_csv_has_one_line_per_row_with_the_ratio_on_both() -> None:
    rows = _rows()
    lines = list(csv.DictReader(io.StringIO(bi.to_csv(rows, bi.targets(rows)))))
    assert len(lines) == len(rows)
    assert tuple(lines[0]) == bi.CSV_HEADER
    cold_lab = lines[0]
    assert cold_lab["status"] == "cannot run: page not found"
    assert cold_lab["median_ms"] == "" and cold_lab["n"] == "0" and cold_lab["target_met"] == ""
    push = [ln for ln in lines if ln["operation"] == "push"]
    assert [p["ratio_labkit_over_dockerd"] for p in push] == ["0.500", "0.500"]
    assert [p["target_met"] for p in push] == ["yes", "yes"]
    assert push[1]["median_ms"] == "200.000" and push[1]["note"] == "layers pushed 2/2"
    pull = [ln for ln in lines if ln["operation"] == "pull"]
    assert pull[0]["target_met"] == "no" and pull[0]["p95_ms"] == "300.000"


def test_json_carries_rows_targets_and_runs() -> None:
    rows = _rows()
    doc = json.loads(bi.to_json(rows, bi.targets(rows), runs=3, warmup=1))
    assert (doc["runs"], doc["warmup"]) == (3, 1)
    assert doc["rows"][0]["status"] == "cannot run: page not found"
    assert doc["rows"][1]["median_ms"] == 350.0 and doc["rows"][1]["samples_ms"] == [
        300.0, 400.0, 350.0]
    assert {t["op"]: t["met"] for t in doc["targets"]} == {"build cold": None, "push": True,
                                                           "pull": False}


def test_table_shows_reasons_ratios_and_whether_met() -> None:
    rows = _rows()
    console = Console(record=True, width=200)
    console.print(bi.render_table(rows, bi.targets(rows), 3))
    text = console.export_text()
    assert "cannot run: page not found" in text
    assert "0.50" in text and "1.50" in text
    assert "not met" in text and " met " in text
    assert "350.0" in text and "layers pushed 2/2" in text


def test_png_is_written(tmp_path: Path) -> None:
    rows = _rows()
    out = bi.write_png(rows, bi.targets(rows), tmp_path / "chart.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_error_is_the_daemons_message_without_the_builder_banner() -> None:
    stderr = ("DEPRECATED: The legacy builder is deprecated and will be removed in a future "
              "release.\n            BuildKit is currently disabled; enable it by removing "
              "the DOCKER_BUILDKIT=0\n            environment-variable.\n\n"
              "Error response from daemon: page not found\n")
    assert bi.cli_error(stderr) == "page not found"
    assert bi.cli_error("") == "no message"
    assert bi.cli_error("some other failure\n") == "some other failure"


def test_layer_counters_read_the_clis_plain_output() -> None:
    pull = ("1: Pulling from x\nabc: Pulling fs layer\ndef: Already exists\n"
            "abc: Download complete\nabc: Pull complete\nDigest: sha256:00\n")
    assert bi._layers_fetched(pull) == (1, 2)
    assert bi._layers_fetched("Status: Image is up to date for x\n") == (0, 0)
    push = ("The push refers to repository [127.0.0.1:5000/x]\na1: Preparing\nb2: Preparing\n"
            "a1: Pushed\nb2: Mounted from lkbench/other\nc3: Layer already exists\n")
    assert bi._layers_pushed(push) == (1, 3)


def _base_archive(path: Path, member: str = "abc/layer.tar") -> bytes:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = tarfile.TarInfo("bin/sh")
        info.size = 3
        t.addfile(info, io.BytesIO(b"elf"))
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:x"]},
                      "history": [{"created_by": "base"}]}).encode()
    with tarfile.open(path, "w") as t:
        for name, blob in (("cfg.json", cfg), (member, layer.getvalue()),
                           ("manifest.json", json.dumps([{"Config": "cfg.json",
                                                          "Layers": [member]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return layer.getvalue()


def test_payload_archive_is_base_plus_one_seeded_layer(tmp_path: Path) -> None:
    base_layer = _base_archive(tmp_path / "base.tar")
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    digest = bi.write_payload_archive(tmp_path / "base.tar", a, size=4096, seed=3)
    bi.write_payload_archive(tmp_path / "base.tar", b, size=4096, seed=3)
    assert a.read_bytes() == b.read_bytes()  # deterministic
    with tarfile.open(a) as t:
        (entry,) = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert entry["RepoTags"] == [bi.PAYLOAD_REF]
        cfg_bytes = t.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [t.extractfile(p).read() for p in entry["Layers"]]  # type: ignore[union-attr]
    assert digest == "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    cfg = json.loads(cfg_bytes)
    assert len(layers) == 2 and layers[0] == base_layer
    assert cfg["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(x).hexdigest()
                                         for x in layers]
    created_by = [h.get("created_by", "") for h in cfg["history"]]
    assert created_by == ["base", "labkit bench images: 4096 bytes, seed 3"]
    with tarfile.open(fileobj=io.BytesIO(layers[1])) as t:
        (m,) = t.getmembers()
        assert (m.name, m.size, m.mtime) == ("payload.bin", 4096, 0)
    other = tmp_path / "c.tar"
    assert bi.write_payload_archive(tmp_path / "base.tar", other, size=4096, seed=4) != digest


def test_payload_archive_refuses_a_member_outside_the_archive(tmp_path: Path) -> None:
    _base_archive(tmp_path / "base.tar", member="../../etc/passwd")
    with pytest.raises(errors.InvalidArgumentError, match="escapes"):
        bi.write_payload_archive(tmp_path / "base.tar", tmp_path / "out.tar", size=16)
    assert not (tmp_path / "out.tar").exists()


def test_cli_parses_images_options() -> None:
    args = parser().parse_args(["images", "--runs", "3", "--only", "build", "--csv", "x.csv",
                                "--png", "x.png", "--json"])
    assert (args.bench, args.runs, args.warmup, args.only) == ("images", 3, 1, "build")
    assert (args.csv, args.png, args.json) == ("x.csv", "x.png", True)
    assert parser().parse_args(["images"]).runs == 5
    with pytest.raises(SystemExit):
        parser().parse_args(["images", "--only", "everything"])
    with pytest.raises(SystemExit):
        parser().parse_args(["images", "--runs", "0"])


def test_run_refuses_bad_arguments_before_starting_anything() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="runs"):
        bi.run(0)
    with pytest.raises(errors.InvalidArgumentError, match="only"):
        bi.run(1, only="everything")


class _FakeHarness:
    """The Docker CLI as the harness sees it, scripted: ``fail`` maps (daemon, verb) to the
    daemon's error message; everything else succeeds with the CLI's plain output."""

    must = bi._Harness.must

    def __init__(self, fail: dict[tuple[str, str], str] | None = None) -> None:
        self.fail = fail or {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.registries = 0
        self.present: set[tuple[str, str]] = set()

    def fresh_registry(self) -> None:
        self.registries += 1

    def docker(self, side: bi._Side, *args: str) -> bi._Result:
        self.calls.append((side.name, args))
        msg = self.fail.get((side.name, args[0]))
        if msg is not None:
            return bi._Result(False, 1.0, "", f"Error response from daemon: {msg}\n")
        out = ""
        if args[0] == "push":
            out = "The push refers to repository [x]\na1: Preparing\na1: Pushed\nb2: Pushed\n"
        elif args[0] == "pull":
            key = (side.name, args[1])
            out = ("Status: Image is up to date\n" if key in self.present
                   else "a1: Pull complete\nb2: Pull complete\n")
            self.present.add(key)
        elif args[0] == "build" and "--no-cache" not in args:
            out = " ---> Using cache\n ---> Using cache\n"
        elif args[0] == "rmi":
            self.present -= {(side.name, a) for a in args}
        return bi._Result(True, 10.0 if args[0] != "pull" else 20.0, out, "")


def _sides() -> tuple[bi._Side, bi._Side]:
    return bi._Side("labkit", {}), bi._Side("dockerd", {})


FILES = {"busybox": Path("/nonexistent/busybox.tar"), "payload": Path("/nonexistent/p.tar")}


def _rows_of(*sides: bi._Side) -> dict[tuple[str, str], bi.ImageRow]:
    return {(op, s.name): bi.ImageRow(op, s.name, tuple(s.samples.get(op, ())),
                                      s.errors.get(op), s.notes.get(op, ""))
            for op in bi.OPS for s in sides}


def test_rounds_record_every_operation_when_both_daemons_can() -> None:
    h, (lab, dk) = _FakeHarness(), _sides()
    for rnd, record in ((0, False), (1, True), (2, True)):  # a warm-up round, then two
        for s, other in ((lab, dk), (dk, lab)):
            bi._build_round(h, s, Path("/ctx"), record)  # type: ignore[arg-type]
            bi._push_pull_round(h, s, other, FILES, rnd, record)  # type: ignore[arg-type]
    rows = _rows_of(lab, dk)
    for (op, _), r in rows.items():
        assert r.status == "ok" and r.n == 2, (op, r)
    assert rows[("push", "labkit")].note == "layers pushed 2/2"
    assert rows[("pull", "dockerd")].note == "layers fetched 2/2"
    assert rows[("pull", "dockerd")].median_ms == 20.0
    assert rows[("build cached", "labkit")].note == "cache hits 2/2"
    assert h.registries == 6  # an empty registry for every push
    pushes = [a[1] for who, a in h.calls if a[0] == "push"]
    assert len(set(pushes)) == 6  # a new repository name every time
    # before each pull, the image, its tag, busybox and the build's result were removed
    for who in ("labkit", "dockerd"):
        calls = [a for w, a in h.calls if w == who]
        first_pull = next(i for i, a in enumerate(calls) if a[0] == "pull")
        removed = {x for a in calls[:first_pull] if a[0] == "rmi" for x in a[1:]}
        assert {bi.PAYLOAD_REF, "busybox:latest", bi.BUILD_REF} <= removed
        assert calls[-1] == ("load", "-q", "-i", str(FILES["busybox"]))  # put back


def test_a_daemon_without_build_and_push_gets_reasons_and_still_a_pull_try() -> None:
    h = _FakeHarness({("labkit", "build"): "page not found",
                      ("labkit", "push"): "405: Method Not Allowed",
                      ("labkit", "pull"): "No such image: x"})
    lab, dk = _sides()
    for rnd in (0, 1):
        for s, other in ((lab, dk), (dk, lab)):
            bi._build_round(h, s, Path("/ctx"), True)  # type: ignore[arg-type]
            bi._push_pull_round(h, s, other, FILES, rnd, True)  # type: ignore[arg-type]
    rows = _rows_of(lab, dk)
    assert rows[("build cold", "labkit")].status == "cannot run: page not found"
    assert rows[("build cached", "labkit")].status == "cannot run: page not found"
    assert rows[("push", "labkit")].status == "cannot run: 405: Method Not Allowed"
    pull = rows[("pull", "labkit")]
    assert pull.status == "cannot run: No such image: x"
    assert pull.note == "image pushed by dockerd (labkit's push failed)"
    assert rows[("re-pull (layers present)", "labkit")].status == \
        "cannot run: needs the pull above"
    for op in bi.OPS:
        assert rows[(op, "dockerd")].n == 2 and rows[(op, "labkit")].median_ms is None
    # labkit's failing build ran once per op, not every round (first error kept)
    assert sum(1 for w, a in h.calls if w == "labkit" and a[0] == "build") == 2
    # the image labkit pulled was pushed by dockerd under labkit's repository name
    lab_pull_ref = next(a[1] for w, a in h.calls if w == "labkit" and a[0] == "pull")
    assert ("dockerd", ("push", lab_pull_ref)) in h.calls


def test_nothing_to_pull_when_neither_daemon_can_push() -> None:
    h = _FakeHarness({("labkit", "push"): "405", ("dockerd", "push"): "denied"})
    lab, dk = _sides()
    bi._push_pull_round(h, lab, dk, FILES, 0, True)  # type: ignore[arg-type]
    assert lab.errors["pull"] == ("nothing to pull: labkit's push failed and dockerd's too "
                                  "(denied)")
    assert lab.errors["re-pull (layers present)"] == "needs the pull above"
    assert not any(a[0] == "pull" for _, a in h.calls)


def test_a_failed_set_up_step_is_the_rows_reason_and_busybox_is_put_back() -> None:
    h = _FakeHarness({("labkit", "load"): "unexpected EOF"})
    lab, dk = _sides()
    bi._push_pull_round(h, lab, dk, FILES, 0, True)  # type: ignore[arg-type]
    for op in ("push", "pull", "re-pull (layers present)"):
        assert lab.errors[op] == "set-up `docker load` failed: unexpected EOF"
    # the busybox load was tried (and failed too): the next builds say why they cannot run
    assert h.calls[-1] == ("labkit", ("load", "-q", "-i", str(FILES["busybox"])))
    assert lab.errors["build cold"].startswith("set-up `docker load` of busybox failed")


def test_cli_refuses_an_output_file_in_a_missing_directory_before_measuring(
        capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.cli import bench

    for opt in ("--csv", "--png"):
        with pytest.raises(SystemExit):
            bench.run(["images", opt, "/nonexistent-lk/x"])
        assert f"{opt} /nonexistent-lk/x: directory /nonexistent-lk does not exist" in \
            capsys.readouterr().err
