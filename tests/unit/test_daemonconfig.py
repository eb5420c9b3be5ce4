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


@pytest.mark.parametrize("mirror, words", [
    ("ftp://m.example", 'invalid mirror: unsupported scheme \'ftp\' in \'ftp://m.example\''),
    ("m.example:5000", "invalid mirror: unsupported scheme"),
    ("http://m.example/v2/", "invalid mirror: path, query, or fragment at end of the URI"),
    ("https://m.example/?x=1", "invalid mirror: path, query, or fragment"),
    ("http://bob:pw@m.example", ("invalid mirror: username/password not allowed in URI "
     "'http://bob:xxxxx@m.example'")),
    ("http://m.example:99999", "is not a valid URI"),
])
def test_mirror_urls_validated_as_dockerd(mirror: str, words: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="registry-mirrors") as ei:
        parse({"registry-mirrors": [mirror]})
    assert words in str(ei.value)
    assert "pw@" not in str(ei.value)


def test_good_mirrors_and_insecure_entries() -> None:
    cfg = parse({"registry-mirrors": ["http://127.0.0.1:5000", "https://m.example/"],
                 "insecure-registries": ["reg.lan:5000", "10.1.0.0/16", "http://h.lan",
                                         "[::1]:5000"]})
    assert cfg.registry_mirrors == ("http://127.0.0.1:5000", "https://m.example/")
    # dockerd drops a leading http:// (with a warning); a CIDR is kept normalised
    assert cfg.insecure_registries == ("reg.lan:5000", "10.1.0.0/16", "h.lan", "[::1]:5000")


@pytest.mark.parametrize("entry, words", [
    ("ftp://reg.lan", "insecure registry ftp://reg.lan should not contain '://'"),
    ("reg.lan:port", "insecure registry reg.lan:port is not valid: invalid port 'port'"),
    ("reg.lan:70000", "invalid port '70000'"),
    ("bad_host!", "insecure registry bad_host! is not valid: invalid host"),
    ("10.0.0.0/33", "insecure registry 10.0.0.0/33 is not valid"),
])
def test_insecure_entries_validated_as_dockerd(entry: str, words: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="insecure-registries") as ei:
        parse({"insecure-registries": [entry]})
    assert words in str(ei.value)
