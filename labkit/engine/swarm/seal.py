"""Encryption at rest: the data key (DEK), unlock keys, and sealed key files.

Two layers, as swarmkit's manager/encryption and autolock:

* The DEK (32 random bytes) seals every value in the cluster store with AES-256-GCM; the
  AAD is the etcd key, so a sealed value moved to another key fails to open. etcd only
  ever holds ciphertext.
* Under autolock the node's TLS key and the DEK are stored on disk sealed with a key
  encryption key (KEK) derived from the unlock key (``SWMKEY-1-...``), which the cluster
  keeps and the node does not: a restarted manager cannot read its own keys, and so serves
  nothing, until a user gives the unlock key back. Without autolock they are stored in
  clear, 0600, in the same envelope.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from labkit import errors

__all__ = [
    "UNLOCK_PREFIX",
    "DataKey",
    "LockedError",
    "is_sealed",
    "kek",
    "new_unlock_key",
    "parse_unlock_key",
    "read_material",
    "reseal",
    "write_material",
]

_VERSION = 1
_NONCE = 12  # AES-GCM's 96-bit nonce (NIST SP 800-38D 8.2); random, so ~2**32 seals per key
_TAG = 16
_FAILED = "sealed value failed authentication (wrong key or tampered)"
UNLOCK_PREFIX = "SWMKEY-1-"
_KEK_INFO = b"labkit swarm kek"
_FORMAT = "labkit-swarm-material"
_MAX_FILE = 1 << 20


class LockedError(errors.InvalidStateError):
    """Key material is sealed and no unlock key was given (a locked swarm manager)."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        super().__init__("sealed", "unsealed", what, hint)
        self.args = (f"{what} is locked: unlock the swarm with `docker swarm unlock`",)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.what, self.hint))


class DataKey:
    """A 32-byte AES-256-GCM key. Used as the DEK and as the KEK; never shown in repr."""

    __slots__ = ("_aead", "_raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise errors.InvalidArgumentError("data key", "must be exactly 32 bytes")
        self._raw = raw
        self._aead = AESGCM(raw)

    @classmethod
    def new(cls) -> DataKey:
        return cls(secrets.token_bytes(32))

    @property
    def raw(self) -> bytes:
        """The key bytes (to store the DEK itself, sealed with the KEK)."""
        return self._raw

    def __repr__(self) -> str:
        return "DataKey(<32 bytes>)"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """version (1 byte) + random nonce (12) + AES-GCM ciphertext and tag. The version
        byte is authenticated too (it is part of the AAD)."""
        nonce = secrets.token_bytes(_NONCE)
        head = bytes([_VERSION])
        return head + nonce + self._aead.encrypt(nonce, plaintext, head + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of ``blob``; ForbiddenError when the key is wrong, the AAD differs
        (a value moved to another key) or any byte was changed."""
        if not isinstance(blob, bytes) or len(blob) < 1 + _NONCE + _TAG:
            raise errors.ForbiddenError(_FAILED)
        if blob[0] != _VERSION:
            raise errors.ForbiddenError(
                f"sealed value has unknown format version {blob[0]} (tampered, or newer labkit)")
        try:
            return self._aead.decrypt(blob[1:1 + _NONCE], blob[1 + _NONCE:], blob[:1] + aad)
        except InvalidTag:
            raise errors.ForbiddenError(_FAILED) from None


# --- unlock keys ---------------------------------------------------------------------------


def new_unlock_key() -> str:
    """``SWMKEY-1-`` + base64 (standard alphabet, no padding) of 32 random bytes."""
    return UNLOCK_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def parse_unlock_key(s: str) -> bytes:
    """The 32 key bytes of an unlock key. Surrounding whitespace (a newline from stdin) is
    dropped; anything else off the exact shape is refused without echoing the input."""
    bad = errors.InvalidArgumentError(
        "unlock key", "invalid unlock key (expected SWMKEY-1- and 43 base64 characters)")
    if not isinstance(s, str) or len(s) > 256:
        raise bad
    s = s.strip()
    body = s[len(UNLOCK_PREFIX):]
    if not s.startswith(UNLOCK_PREFIX) or len(body) != 43:
        raise bad
    try:
        raw = base64.b64decode(body + "=", validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
    # The last character carries 2 unused bits; only the canonical form is a key we made.
    if len(raw) != 32 or base64.b64encode(raw).decode().rstrip("=") != body:
        raise bad
    return raw


def kek(unlock_key: str) -> DataKey:
    """The key encryption key: HKDF-SHA256 of the unlock key's bytes (RFC 5869; the unlock
    key is already uniformly random, so no salt is needed, info binds the purpose)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=_KEK_INFO).derive(parse_unlock_key(unlock_key))
    return DataKey(derived)


# --- key files -----------------------------------------------------------------------------


def _aad(path: Path) -> bytes:
    # Bound to the file name: a sealed DEK copied over the TLS key file does not open.
    return b"labkit swarm material:" + path.name.encode()


def _atomic_write(path: Path, data: bytes) -> None:
    """temp file (O_EXCL, 0600, never a symlink) + fsync + rename(2) + fsync of the
    directory, so a crash leaves the old file or the new one, never a torn one."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
    tmp = parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may only narrow, but say it outright
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_material(path: Path, data: bytes, kek: DataKey | None) -> None:
    """Store key material at ``path`` (0600, atomic): sealed with ``kek`` under autolock,
    in clear when ``kek`` is None. The envelope is JSON that says which."""
    if not isinstance(data, bytes):
        raise errors.InvalidArgumentError("key material", "expected bytes")
    payload = data if kek is None else kek.seal(data, _aad(path))
    doc = {"format": _FORMAT, "version": _VERSION, "sealed": kek is not None,
           "data": base64.b64encode(payload).decode()}
    _atomic_write(path, json.dumps(doc).encode() + b"\n")


def _read_envelope(path: Path) -> tuple[bool, bytes]:
    # O_NONBLOCK: a FIFO planted at the path must not hang the daemon in open(2).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.NotFoundError("swarm key file", str(path)) from None
    except OSError as err:
        raise errors.InvalidArgumentError(str(path), f"cannot open: {err.strerror}") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise errors.InvalidArgumentError(str(path), "is not a regular file")
        raw = b""
        while len(raw) <= _MAX_FILE and (chunk := os.read(fd, 65536)):
            raw += chunk
    finally:
        os.close(fd)
    bad = errors.InvalidArgumentError(str(path), "is not a labkit swarm key file")
    if len(raw) > _MAX_FILE:
        raise bad
    try:
        doc: Any = json.loads(raw)
        ok = (isinstance(doc, dict) and doc.get("format") == _FORMAT
              and doc.get("version") == _VERSION and isinstance(doc.get("sealed"), bool)
              and isinstance(doc.get("data"), str))
        if not ok:
            raise bad
        return bool(doc["sealed"]), base64.b64decode(doc["data"], validate=True)
    except (ValueError, binascii.Error):
        raise bad from None


def is_sealed(path: Path) -> bool:
    """Whether the key file at ``path`` is sealed (needs the unlock key to read)."""
    return _read_envelope(path)[0]


def read_material(path: Path, kek: DataKey | None) -> bytes:
    """The key material at ``path``. A sealed file without ``kek`` raises LockedError (an
    InvalidStateError); with the wrong one, ForbiddenError("invalid unlock key"). A clear
    file is returned whatever ``kek`` is."""
    sealed, payload = _read_envelope(path)
    if not sealed:
        return payload
    if kek is None:
        raise LockedError(str(path))
    try:
        return kek.open(payload, _aad(path))
    except errors.ForbiddenError:
        raise errors.ForbiddenError("invalid unlock key") from None


def reseal(path: Path, old: DataKey | None, new: DataKey | None) -> None:
    """Rewrite ``path`` under ``new`` (autolock on: None -> key; off: key -> None; rotated
    unlock key: key -> key), atomically: the file holds the old form or the new one."""
    write_material(path, read_material(path, old), new)
