"""labkit.engine.swarm.seal: the data key, unlock keys, sealed key files."""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import stat
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.swarm import seal


def test_seal_round_trip_and_nonce() -> None:
    k = seal.DataKey.new()
    a, b = k.seal(b"value", b"/lk/swarm/cluster"), k.seal(b"value", b"/lk/swarm/cluster")
    assert a != b and a[0] == 1 and len(a) == 1 + 12 + len(b"value") + 16
    assert k.open(a, b"/lk/swarm/cluster") == b"value"
    assert k.open(k.seal(b"", b""), b"") == b""
    assert "32 bytes" in repr(k) and k.raw.hex() not in repr(k)


def test_every_flipped_bit_is_refused() -> None:
    k = seal.DataKey.new()
    blob = k.seal(b"secret payload", b"aad")
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(errors.ForbiddenError):
            k.open(bytes(bad), b"aad")


def test_wrong_key_wrong_aad_truncated() -> None:
    k = seal.DataKey.new()
    blob = k.seal(b"x", b"/lk/swarm/nodes/a")
    msg = "sealed value failed authentication (wrong key or tampered)"
    with pytest.raises(errors.ForbiddenError, match=re.escape(msg)):
        seal.DataKey.new().open(blob, b"/lk/swarm/nodes/a")
    with pytest.raises(errors.ForbiddenError, match=re.escape(msg)):
        k.open(blob, b"/lk/swarm/nodes/b")  # moved to another etcd key
    with pytest.raises(errors.ForbiddenError, match=re.escape(msg)):
        k.open(blob[:20], b"/lk/swarm/nodes/a")
    with pytest.raises(errors.ForbiddenError, match="unknown format version 2"):
        k.open(b"\x02" + blob[1:], b"/lk/swarm/nodes/a")
    with pytest.raises(errors.InvalidArgumentError, match="32 bytes"):
        seal.DataKey(b"short")


def test_unlock_key_shape() -> None:
    u = seal.new_unlock_key()
    assert u.startswith("SWMKEY-1-") and len(u) == 9 + 43 and "=" not in u
    raw = seal.parse_unlock_key(u)
    assert len(raw) == 32 and base64.b64encode(raw).decode().rstrip("=") == u[9:]
    assert seal.parse_unlock_key(f"  {u}\n") == raw
    assert seal.new_unlock_key() != u


@pytest.mark.parametrize("mangle", [
    lambda u: u[:-1],
    lambda u: u + "A",
    lambda u: u + "=",
    lambda u: u.replace("SWMKEY-1-", "SWMKEY-2-"),
    lambda u: u.replace("SWMKEY-1-", ""),
    lambda u: u[:20] + "*" + u[21:],
    lambda u: u[:20] + " " + u[21:],
    lambda u: "SWMKEY-1-" + "A" * 42 + "B",  # non-canonical: the last char's spare bits set
    lambda u: "",
    lambda u: u * 10,
])
def test_unlock_key_refused(mangle: object) -> None:
    u = seal.new_unlock_key()
    bad = mangle(u)  # type: ignore[operator]
    with pytest.raises(errors.InvalidArgumentError, match="invalid unlock key") as exc:
        seal.parse_unlock_key(bad)
    assert u[9:] not in str(exc.value)


def test_kek_is_deterministic_and_distinct() -> None:
    u = seal.new_unlock_key()
    a, b = seal.kek(u), seal.kek(u + "\n")
    assert a.raw == b.raw and a.raw != seal.parse_unlock_key(u)
    assert seal.kek(seal.new_unlock_key()).raw != a.raw
    blob = a.seal(b"dek", b"")
    assert b.open(blob, b"") == b"dek"


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_material_clear_and_sealed(tmp_path: Path) -> None:
    p = tmp_path / "swarm" / "node.key"
    seal.write_material(p, b"-----BEGIN PRIVATE KEY-----", None)
    assert _mode(p) == 0o600 and _mode(p.parent) == 0o700
    assert not seal.is_sealed(p)
    assert seal.read_material(p, None) == b"-----BEGIN PRIVATE KEY-----"
    k = seal.kek(seal.new_unlock_key())
    seal.write_material(p, b"key bytes", k)
    assert _mode(p) == 0o600 and seal.is_sealed(p)
    assert b"key bytes" not in p.read_bytes()
    assert seal.read_material(p, k) == b"key bytes"
    assert [x.name for x in p.parent.iterdir()] == ["node.key"]  # no temp file left


def test_material_locked_and_wrong_key(tmp_path: Path) -> None:
    p = tmp_path / "dek"
    k = seal.kek(seal.new_unlock_key())
    seal.write_material(p, b"dek", k)
    with pytest.raises(errors.InvalidStateError,
                       match=r"dek is locked: unlock the swarm with `docker swarm unlock`") as exc:
        seal.read_material(p, None)
    again = pickle.loads(pickle.dumps(exc.value))
    assert type(again) is seal.LockedError and str(again) == str(exc.value)
    with pytest.raises(errors.ForbiddenError, match="^invalid unlock key$"):
        seal.read_material(p, seal.kek(seal.new_unlock_key()))


def test_material_bound_to_file_name(tmp_path: Path) -> None:
    k = seal.kek(seal.new_unlock_key())
    seal.write_material(tmp_path / "dek", b"dek", k)
    os.replace(tmp_path / "dek", tmp_path / "node.key")
    with pytest.raises(errors.ForbiddenError):
        seal.read_material(tmp_path / "node.key", k)


def test_material_bad_files(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFoundError):
        seal.read_material(tmp_path / "missing", None)
    junk = tmp_path / "junk"
    for content in (b"not json", b"[]", b'{"format": "x"}',
                    json.dumps({"format": "labkit-swarm-material", "version": 1,
                                "sealed": "yes", "data": ""}).encode(),
                    json.dumps({"format": "labkit-swarm-material", "version": 1,
                                "sealed": False, "data": "!!"}).encode()):
        junk.write_bytes(content)
        with pytest.raises(errors.InvalidArgumentError, match="not a labkit swarm key file"):
            seal.read_material(junk, None)
    link = tmp_path / "link"
    seal.write_material(tmp_path / "real", b"x", None)
    link.symlink_to(tmp_path / "real")
    with pytest.raises(errors.InvalidArgumentError, match="cannot open"):
        seal.read_material(link, None)  # never follows a symlink
    with pytest.raises(errors.InvalidArgumentError, match="regular file"):
        seal.read_material(tmp_path, None)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(errors.InvalidArgumentError, match="regular file"):
        seal.read_material(fifo, None)  # refused at once, not a hang in open(2)


def test_reseal_on_off_rotate(tmp_path: Path) -> None:
    p = tmp_path / "node.key"
    seal.write_material(p, b"material", None)
    k1 = seal.kek(seal.new_unlock_key())
    seal.reseal(p, None, k1)  # autolock on
    assert seal.is_sealed(p) and seal.read_material(p, k1) == b"material"
    k2 = seal.kek(seal.new_unlock_key())
    seal.reseal(p, k1, k2)  # unlock key rotated
    assert seal.read_material(p, k2) == b"material"
    with pytest.raises(errors.ForbiddenError):
        seal.read_material(p, k1)
    with pytest.raises(errors.InvalidStateError):
        seal.reseal(p, None, k1)  # locked: cannot reseal without the key
    with pytest.raises(errors.ForbiddenError):
        seal.reseal(p, k1, None)
    assert seal.read_material(p, k2) == b"material"  # a refused reseal changed nothing
    seal.reseal(p, k2, None)  # autolock off
    assert not seal.is_sealed(p) and seal.read_material(p, None) == b"material"
    assert _mode(p) == 0o600
