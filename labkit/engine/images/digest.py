"""Content digests as the OCI image spec writes them: ``"sha256:<64 lowercase hex>"``.

descriptor.md ("Digests") defines the grammar ``algorithm ":" encoded``; sha256 is the one
algorithm every implementation must support, so it is the only one labkit computes.  A layer
has two digests: the *digest* of the blob as stored (maybe gzip-compressed) and the *diffID*,
the digest of the uncompressed tar (config.md "rootfs.diff_ids").
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import BinaryIO

from labkit import errors

__all__ = [
    "SHA256",
    "format_digest",
    "parse_digest",
    "sha256_bytes",
    "sha256_file",
    "sha256_stream",
    "verify_bytes",
    "verify_file",
]

SHA256 = "sha256"
_CHUNK = 1 << 20
# descriptor.md: for sha256 the encoded part MUST match /[a-f0-9]{64}/.
_SHA256_RE = re.compile(r"^sha256:([a-f0-9]{64})$")


def format_digest(hexdigest: str) -> str:
    """``"sha256:" + hexdigest``, after checking it is 64 lowercase hex digits."""
    digest = f"{SHA256}:{hexdigest}"
    parse_digest(digest)
    return digest


def parse_digest(digest: str) -> str:
    """Return the hex part of ``"sha256:<hex>"``.

    Raises InvalidArgumentError for another algorithm or a malformed hex part.
    """
    m = _SHA256_RE.match(digest)
    if m is None:
        raise errors.InvalidArgumentError(
            "digest", f"{digest!r} is not 'sha256:' followed by 64 lowercase hex digits")
    return m.group(1)


def sha256_bytes(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return f"{SHA256}:{hashlib.sha256(data).hexdigest()}"


def sha256_stream(f: BinaryIO) -> str:
    """The OCI digest of everything left to read in ``f``."""
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return f"{SHA256}:{h.hexdigest()}"


def sha256_file(path: str | Path) -> str:
    """The OCI digest of the file at ``path``."""
    with open(path, "rb") as f:
        return sha256_stream(f)


def verify_bytes(data: bytes, expected: str) -> None:
    """Raise InvalidArgumentError unless ``data`` has digest ``expected``."""
    parse_digest(expected)
    got = sha256_bytes(data)
    if got != expected:
        raise errors.InvalidArgumentError(
            "content", f"digest mismatch: expected {expected}, got {got}",
            hint="the content was corrupted or substituted; fetch it again")


def verify_file(path: str | Path, expected: str) -> None:
    """Raise InvalidArgumentError unless the file at ``path`` has digest ``expected``."""
    parse_digest(expected)
    got = sha256_file(path)
    if got != expected:
        raise errors.InvalidArgumentError(
            str(path), f"digest mismatch: expected {expected}, got {got}",
            hint="the content was corrupted or substituted; fetch it again")
