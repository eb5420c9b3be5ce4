"""Join tokens: ``SWMTKN-1-<digest of the root CA>-<secret>`` (swarmkit ca/config.go).

A token does two jobs. The secret says which role the holder may join as (the manager and
the worker token differ only in it). The digest pins the root CA: a joining node fetches the
CA certificate from a manager it does not trust yet and refuses it unless its sha256 matches
the token, so a man in the middle cannot hand it another CA. Messages never echo a token:
it is a credential.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from labkit import errors
from labkit.engine.swarm import ca

__all__ = ["PREFIX", "JoinToken", "make", "matches_ca", "new_secret", "parse", "same_secret"]

PREFIX = "SWMTKN"
VERSION = 1
_DIGEST_LEN = 50  # base36 of a sha256: 36**50 > 2**256
_SECRET_LEN = 25  # base36 of 128 bits: 36**25 > 2**128
_TOKEN_RE = re.compile(r"SWMTKN-1-([0-9a-z]{50})-([0-9a-z]{25})")
_SECRET_RE = re.compile(r"[0-9a-z]{25}")
_MAX_TOKEN = 256


@dataclass(frozen=True)
class JoinToken:
    """A parsed token. ``digest`` is the pinned CA's sha256 as hex (as RootCA.digest()
    gives it); ``secret`` stays out of repr."""

    version: int
    digest: str
    secret: str = field(repr=False)

    def render(self) -> str:
        """The token text again (a method, not __str__: an f-string must not leak it)."""
        return f"{PREFIX}-{self.version}-{_hex_to_b36(self.digest)}-{self.secret}"


def _hex_to_b36(hexdigest: str) -> str:
    return ca._base36(int(hexdigest, 16), _DIGEST_LEN)


def new_secret() -> str:
    """25 characters of base36 from 128 random bits (zero padded)."""
    return ca._base36(secrets.randbits(128), _SECRET_LEN)


def _ca_digest(ca_cert_pem: bytes) -> str:
    """sha256 hex of the DER of the first certificate in ``ca_cert_pem`` (the root)."""
    cert = ca.load_pem_chain(ca_cert_pem)[0]
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def make(ca_cert_pem: bytes, secret: str | None = None) -> str:
    """A token pinning the root CA in ``ca_cert_pem``, with ``secret`` (a new one if None).

    A given secret is kept across a CA rotation: only the digest part changes.
    """
    if secret is None:
        secret = new_secret()
    elif not isinstance(secret, str) or not _SECRET_RE.fullmatch(secret) \
            or int(secret, 36) >> 128:
        raise errors.InvalidArgumentError("join token secret", "must be 25 base36 characters")
    return JoinToken(VERSION, _ca_digest(ca_cert_pem), secret).render()


def parse(token: str) -> JoinToken:
    """Split and check a token; InvalidArgumentError naming the shape for anything else.

    Surrounding whitespace (a pasted newline) is dropped; anything inside must be exact.
    """
    m = _TOKEN_RE.fullmatch(token.strip()) if isinstance(token, str) and \
        len(token) <= _MAX_TOKEN else None
    if m is None:
        raise errors.InvalidArgumentError(
            "join token",
            "invalid join token (expected SWMTKN-1-<50 base36 characters>-<25 base36 characters>)")
    digest, secret = int(m.group(1), 36), m.group(2)
    # Values above the hash's and the secret's width are not tokens anyone made.
    if digest >> 256 or int(secret, 36) >> 128:
        raise errors.InvalidArgumentError("join token", "invalid join token (a part is out of range)")
    return JoinToken(VERSION, format(digest, "064x"), secret)


def matches_ca(token: str, ca_cert_pem: bytes) -> bool:
    """Whether ``token`` pins the root CA in ``ca_cert_pem`` (a malformed token raises)."""
    return hmac.compare_digest(parse(token).digest, _ca_digest(ca_cert_pem))


def same_secret(a: str, b: str) -> bool:
    """Whether two tokens carry the same secret, compared in constant time; False when
    either is malformed (this check sits in front of an unauthenticated join)."""
    try:
        sa, sb = parse(a).secret, parse(b).secret
    except errors.InvalidArgumentError:
        return False
    return hmac.compare_digest(sa.encode(), sb.encode())
