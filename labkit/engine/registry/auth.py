"""Registry credentials and the two challenge schemes (Basic, Bearer token).

- ``AuthConfig.from_header``: the ``X-Registry-Auth`` header the Docker CLI sends on pull and
  push: base64url of JSON ``{username, password, serveraddress}`` or ``{identitytoken}`` or
  ``{registrytoken}`` (docker-api.md 2; moby api/types/registry AuthConfig).  ``e30=`` ({})
  means no credentials.
- ``parse_challenge``: RFC 7235 ``WWW-Authenticate: Basic realm=..`` or
  ``Bearer realm=..,service=..,scope=..`` (distribution docs/spec/auth/token.md).
- ``TokenCache``: bearer tokens per (realm, service, scope) until they expire
  (``expires_in``, default 60 s per token.md).

Credentials live only in memory here; nothing in this module logs or stores them, and
``AuthConfig.__repr__`` hides them so they cannot leak into an error or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from labkit import errors

__all__ = ["AuthConfig", "Challenge", "TokenCache", "parse_challenge"]

_MAX_HEADER = 64 << 10


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """What a client gave to log in with; empty fields mean none."""

    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    identitytoken: str = field(default="", repr=False)
    registrytoken: str = field(default="", repr=False)
    serveraddress: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identitytoken or self.registrytoken)

    @classmethod
    def from_dict(cls, doc: Any) -> AuthConfig:
        if not isinstance(doc, dict):
            raise errors.InvalidArgumentError("X-Registry-Auth", "must encode a JSON object")
        vals = {k.lower(): v for k, v in doc.items() if isinstance(k, str)}
        out = {}
        for k in ("username", "password", "identitytoken", "registrytoken", "serveraddress"):
            v = vals.get(k, "")
            if not isinstance(v, str):
                raise errors.InvalidArgumentError("X-Registry-Auth", f"{k} must be a string")
            out[k] = v
        # "auth": base64 "user:pass", the form config.json keeps (cli/config/types)
        if not out["username"] and isinstance(vals.get("auth"), str) and vals["auth"]:
            try:
                user, _, pw = base64.b64decode(vals["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise errors.InvalidArgumentError("X-Registry-Auth", "auth is not base64 "
                                                  "user:password") from None
            out["username"], out["password"] = user, pw
        return cls(**out)

    @classmethod
    def from_header(cls, header: str | None) -> AuthConfig:
        """Decode X-Registry-Auth (base64url, padding optional, as moby accepts it)."""
        if not header:
            return cls()
        if len(header) > _MAX_HEADER:
            raise errors.InvalidArgumentError("X-Registry-Auth", "header too large")
        raw = header.strip().replace("+", "-").replace("/", "_")
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            doc = json.loads(data or b"{}")
        except (binascii.Error, ValueError):
            # moby: "invalid X-Registry-Auth header: ..." (never echo the value)
            raise errors.InvalidArgumentError("X-Registry-Auth", "invalid X-Registry-Auth "
                                              "header: not base64url JSON") from None
        return cls.from_dict(doc)

    def identity(self) -> str:
        """A one-way fingerprint of these credentials (keys the token cache; never shown)."""
        raw = json.dumps([self.username, self.password, self.identitytoken, self.registrytoken])
        return hashlib.sha256(raw.encode()).hexdigest()

    def basic(self) -> str | None:
        """The ``Authorization: Basic`` value, or None without a username."""
        if not self.username:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed WWW-Authenticate: ``scheme`` (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge:
    """RFC 7235 section 4.1: ``scheme param=value, param="quoted"``."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        val = m.group(2) if m.group(2) is not None else m.group(3) or ""
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", val)
        pos = m.end()
    return Challenge(scheme.lower(), params)


class TokenCache:
    """Bearer tokens by (realm, service, scope, credentials fingerprint), each until its
    expiry (token.md: ``expires_in`` seconds, 60 when absent)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        hit = self._tokens.get(key)
        if hit is None or hit[1] <= time.monotonic():
            self._tokens.pop(key, None)
            return None
        return hit[0]

    def put(self, key: tuple[str, ...], token: str, expires_in: float) -> None:
        # renew a little early: a token must not expire between the check and the request
        self._tokens[key] = (token, time.monotonic() + max(expires_in - 5, 1))
