"""OCI digest strings: "sha256:<hex>", computed, parsed and verified."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images import digest

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ABC = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2


def test_known_vectors(tmp_path: Path) -> None:
    assert digest.sha256_bytes(b"") == EMPTY
    assert digest.sha256_bytes(b"abc") == ABC
    assert digest.sha256_stream(io.BytesIO(b"abc")) == ABC
    (tmp_path / "f").write_bytes(b"abc")
    assert digest.sha256_file(tmp_path / "f") == ABC


def test_big_file_is_hashed_in_chunks(tmp_path: Path) -> None:
    data = b"x" * (3 * (1 << 20) + 7)
    (tmp_path / "f").write_bytes(data)
    assert digest.sha256_file(tmp_path / "f") == digest.sha256_bytes(data)


def test_parse_and_format() -> None:
    hexpart = ABC.split(":")[1]
    assert digest.parse_digest(ABC) == hexpart
    assert digest.format_digest(hexpart) == ABC


@pytest.mark.parametrize("bad", [
    "sha512:" + "a" * 128, "sha256:" + "A" * 64, "sha256:" + "a" * 63, "a" * 64, "sha256:",
    "sha256:" + "g" * 64,
])
def test_malformed_digests_are_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        digest.parse_digest(bad)


def test_verify(tmp_path: Path) -> None:
    digest.verify_bytes(b"abc", ABC)
    with pytest.raises(errors.InvalidArgumentError, match="mismatch"):
        digest.verify_bytes(b"abd", ABC)
    (tmp_path / "f").write_bytes(b"abc")
    digest.verify_file(tmp_path / "f", ABC)
    with pytest.raises(errors.InvalidArgumentError, match="mismatch") as ei:
        digest.verify_file(tmp_path / "f", EMPTY)
    assert str(tmp_path / "f") in str(ei.value)
