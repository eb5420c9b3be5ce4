"""An external CA: node certificates signed by a CFSSL server instead of our own root key.

Docker: ``swarm init --external-ca protocol=cfssl,url=https://...,cacert=ca.pem`` puts
``{"Protocol": "cfssl", "URL": ..., "CACert": ...}`` into Spec.CAConfig.ExternalCAs, and
managers then forward every node's CSR to ``POST {url}/api/v1/cfssl/sign`` (CFSSL
doc/api/endpoint_sign.txt). The signer is not trusted blindly: what it returns must chain
to the root we expect, carry the CSR's own public key and name exactly the node, role and
cluster we asked for, or it is refused.

What Debian's golang-cfssl (1.2.0+git20160825) does, found by experiment with
``cfssl serve -ca ca.pem -ca-key ca-key.pem`` and no ``-config``:

* ``subject`` {CN, names: [{O, OU}]} replaces the CSR's subject and ``hosts`` replaces its
  SANs (IPs become IP SANs) under the default profile: no signing profile is needed.
* The lifetime is the signing profile's (8760 h under the default one), backdated 5 min;
  the sign API has no expiry field, so ``expiry`` cannot be asked for. We check only that
  the certificate lives at least the swarm minimum (1 hour); a shorter lifetime needs a
  ``-config`` with a profile (and ``profile`` in Options).
* Errors come back as HTTP 400 with the JSON envelope {"success": false, "errors":
  [{"code", "message"}]}; ``/info`` answers only POST (GET gives 405).
"""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization

from labkit import errors
from labkit.engine.swarm import ca

__all__ = ["ExternalCA", "parse_external_ca"]

_MAX_BODY = 1 << 20
_SIGN = "/api/v1/cfssl/sign"
_INFO = "/api/v1/cfssl/info"


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.InvalidArgumentError("external CA url", f"{url!r} is not an http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise errors.InvalidArgumentError(
            "external CA url", f"{url!r} may not carry credentials, a query or a fragment")
    return url.rstrip("/")


@dataclass(frozen=True)
class ExternalCA:
    """A CFSSL signer at ``url``. ``ca_cert_pem`` is the root it signs under; it is also
    the trust anchor for an https URL (as swarmkit's external CA client uses the swarm
    root pool). ``profile`` picks a CFSSL signing profile (None: the server default)."""

    url: str
    ca_cert_pem: bytes | None = None
    timeout: float = 10.0
    profile: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _check_url(self.url))
        if self.ca_cert_pem is not None:
            ca.RootCA(self.ca_cert_pem)  # a CA certificate, or InvalidArgumentError

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, root_pem: bytes | None = None,
                  timeout: float = 10.0) -> ExternalCA:
        """From Docker's ExternalCA JSON (Spec.CAConfig.ExternalCAs[i]). An empty CACert
        means the swarm's own root (``root_pem``), as in swarmkit. The only Option known is
        ``profile`` (a CFSSL signing profile); others are refused by name."""
        proto = str(spec.get("Protocol", ""))
        if proto.lower() != "cfssl":
            raise errors.UnsupportedError(f"external CA protocol {proto!r}", "only cfssl is known")
        url = spec.get("URL")
        if not isinstance(url, str):
            raise errors.InvalidArgumentError("ExternalCA.URL", "is required")
        cacert = spec.get("CACert") or None
        if cacert is not None and not isinstance(cacert, str):
            raise errors.InvalidArgumentError("ExternalCA.CACert", "must be PEM text")
        opts = spec.get("Options") or {}
        if not isinstance(opts, Mapping) or set(opts) - {"profile"}:
            raise errors.InvalidArgumentError(
                "ExternalCA.Options", f"unknown option(s) {sorted(set(opts) - {'profile'})} "
                "(known: profile)" if isinstance(opts, Mapping) else "must be an object")
        profile = opts.get("profile")
        return cls(url, cacert.encode() if cacert else root_pem, timeout,
                   str(profile) if profile else None)

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("https:"):
            return False
        if self.ca_cert_pem is None:
            return ssl.create_default_context()
        return ssl.create_default_context(cadata=self.ca_cert_pem.decode())

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON, return cfssl's ``result``; ConflictError naming the URL and cfssl's
        own error message when it refuses, cannot be reached or answers nonsense."""
        url = self.url + path
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(url, json=body, ssl=self._ssl(), allow_redirects=False) as resp:
                status = resp.status
                raw = b""
                while len(raw) <= _MAX_BODY and (chunk := await resp.content.read(65536)):
                    raw += chunk
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as err:
            raise errors.ConflictError(
                f"external CA {url} is unreachable: {type(err).__name__}: {err}") from err
        doc: Any = None
        if len(raw) <= _MAX_BODY:
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
        if not isinstance(doc, dict):
            raise errors.ConflictError(
                f"external CA {url} answered HTTP {status} without a cfssl JSON response")
        if doc.get("success") is not True:
            errs = doc.get("errors")
            msgs = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                             for e in (errs if isinstance(errs, list) else []))
            msgs = (msgs or f"HTTP {status}")[:500]
            raise errors.ConflictError(f"external CA {url} refused: {msgs}")
        result = doc.get("result")
        if not isinstance(result, dict):
            raise errors.ConflictError(f"external CA {url} answered success with no result")
        return result

    async def info(self) -> bytes:
        """The signer's CA certificate (PEM) from ``/api/v1/cfssl/info`` (not trusted by
        itself: compare it with what you expect before relying on it)."""
        result = await self._post(_INFO, {})
        pem = result.get("certificate")
        if not isinstance(pem, str):
            raise errors.ConflictError(f"external CA {self.url}{_INFO} returned no certificate")
        return ca.load_pem_chain(pem.encode())[0].public_bytes(serialization.Encoding.PEM)

    async def sign(self, csr_pem: bytes, *, node_id: str, role: ca.Role, cluster_id: str,
                   expiry: dt.timedelta = ca.DEFAULT_NODE_EXPIRY,
                   ips: Sequence[str] = ()) -> bytes:
        """Have the CFSSL server sign ``csr_pem`` as node ``node_id`` with ``role`` in
        ``cluster_id``, then verify what came back (ForbiddenError when it does not chain
        to ``ca_cert_pem``, holds another key or names another identity).

        ``expiry`` is not sent (the sign API has no such field): the profile decides.
        """
        if self.ca_cert_pem is None:
            raise errors.InvalidArgumentError(
                "external CA", f"{self.url}: the CA certificate (cacert) is needed to check "
                "what it signs")
        if role not in ca.OU_BY_ROLE:
            raise errors.InvalidArgumentError("role", f"{role!r} is not manager or worker")
        ca._check_ids(node_id, cluster_id)
        for ip in ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError as err:
                raise errors.InvalidArgumentError("ips", f"{ip!r} is not an IP address") from err
        csr = ca.load_csr(csr_pem)
        ou = ca.OU_BY_ROLE[role]
        body: dict[str, Any] = {
            "certificate_request": csr_pem.decode(),
            "subject": {"CN": node_id, "names": [{"O": cluster_id, "OU": ou}]},
            "hosts": [ou, node_id, *ips],
        }
        if self.profile:
            body["profile"] = self.profile
        result = await self._post(_SIGN, body)
        pem = result.get("certificate")
        if not isinstance(pem, str) or len(pem) > _MAX_BODY:
            raise errors.ConflictError(f"external CA {self.url}{_SIGN} returned no certificate")
        cert_pem = pem.encode()
        root = ca.RootCA(self.ca_cert_pem)
        try:
            ident = root.verify(cert_pem, role=role, cluster_id=cluster_id)
        except errors.ForbiddenError as err:
            raise errors.ForbiddenError(
                f"external CA {self.url} returned a bad certificate: {err}") from err
        leaf = ca.load_pem_chain(cert_pem)[0]
        if not ca._same_key(leaf.public_key(), csr.public_key()):
            raise errors.ForbiddenError(
                f"external CA {self.url} returned a certificate for another public key")
        if ident.node_id != node_id:
            raise errors.ForbiddenError(
                f"external CA {self.url} returned a certificate for node {ident.node_id}, "
                f"not {node_id}")
        if ident.not_after - ident.not_before < ca.MIN_NODE_EXPIRY:
            raise errors.ForbiddenError(
                f"external CA {self.url} returned a certificate that lives under 1 hour")
        return cert_pem


_KEYS = ("protocol", "url", "cacert")


def parse_external_ca(spec: str) -> dict[str, Any]:
    """The CLI flag ``protocol=cfssl,url=https://...[,cacert=FILE]`` as Docker's ExternalCA
    JSON: {"Protocol": "cfssl", "URL": ..., "CACert": PEM text or "", "Options": {}}.

    Fields are CSV (as the Docker CLI's opts.ExternalCAOption reads them, so a quoted value
    may hold a comma). Unknown keys, other protocols and an unreadable cacert are refused
    by name.
    """
    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error as err:
        raise errors.InvalidArgumentError("--external-ca", f"cannot split fields: {err}") from err
    got: dict[str, str] = {}
    for f in fields:
        key, sep, value = f.partition("=")
        key = key.strip().lower()
        if not sep:
            raise errors.InvalidArgumentError("--external-ca", f"{f!r} is not key=value")
        if key not in _KEYS:
            raise errors.InvalidArgumentError(
                "--external-ca", f"unknown key {key!r} (known: {', '.join(_KEYS)})")
        if key in got:
            raise errors.InvalidArgumentError("--external-ca", f"{key} given twice")
        got[key] = value
    proto = got.get("protocol", "")
    if not proto:
        raise errors.InvalidArgumentError("--external-ca", "protocol is required (cfssl)")
    if proto.lower() != "cfssl":
        raise errors.UnsupportedError(f"external CA protocol {proto!r}", "only cfssl is known")
    if not got.get("url"):
        raise errors.InvalidArgumentError("--external-ca", "url is required")
    url = _check_url(got["url"])
    cacert = ""
    if got.get("cacert"):
        path = Path(got["cacert"])
        try:
            data = path.read_bytes()[:_MAX_BODY + 1]
        except OSError as err:
            raise errors.InvalidArgumentError(
                "--external-ca", f"cacert {path}: {err.strerror}") from err
        ca.RootCA(data)  # the first certificate must be a CA
        cacert = b"".join(c.public_bytes(serialization.Encoding.PEM)
                          for c in ca.load_pem_chain(data)).decode()
    return {"Protocol": "cfssl", "URL": url, "CACert": cacert, "Options": {}}
