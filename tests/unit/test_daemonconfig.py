"""daemon.json: the keys labkit applies are parsed; every other key is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.daemonconfig import DaemonConfig, load, parse


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_CONFIG", raising=False)
    monkeypatch.setattr("labkit.engine.daemonconfig.DEFAULT_PATH", tmp_path / "none.json")
    assert load() == DaemonConfig()


def test_reads_known_keys(tmp_path: Path) -> None:
    p = tmp_path / "daemon.json"
    p.write_text(json.dumps({"log-driver": "local", "log-opts": {"max-size": "1m"},
                             "registry-mirrors": ["http://127.0.0.1:5000"],
                             "insecure-registries": ["127.0.0.1:5000"]}))
    cfg = load(p)
    assert (cfg.log_driver, cfg.log_opts) == ("local", {"max-size": "1m"})
    assert cfg.registry_mirrors == ("http://127.0.0.1:5000",)
    assert cfg.insecure_registries == ("127.0.0.1:5000",)
    assert cfg.source == str(p)


def test_unknown_key_named() -> None:
    with pytest.raises(errors.UnsupportedError, match="storage-driver"):
        parse({"storage-driver": "overlay2", "log-driver": "local"})


@pytest.mark.parametrize("doc, what", [
    ({"log-opts": {"max-file": 3}}, "log-opts"),
    ({"log-driver": ""}, "log-driver"),
    ({"registry-mirrors": "http://x"}, "registry-mirrors"),
    ([], "JSON object"),
])
def test_wrong_types_refused(doc: object, what: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=what):
        parse(doc)


def test_bad_json_and_missing_explicit_file(tmp_path: Path) -> None:
    p = tmp_path / "daemon.json"
    p.write_text("{not json")
    with pytest.raises(errors.InvalidArgumentError, match="not valid JSON"):
        load(p)
    with pytest.raises(errors.NotFoundError):
        load(tmp_path / "missing.json")
