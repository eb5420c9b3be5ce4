"""One repository on one registry endpoint, over HTTP (OCI distribution-spec, spec.md).

``Repository`` wraps an aiohttp ClientSession: it pings ``/v2/`` to learn the auth challenge
(as dockerd does before anything else), answers Basic and Bearer challenges (auth.py),
follows redirects itself so that a redirect to anything but http(s) is refused and
credentials never follow a redirect to another host, limits what it reads into memory
(manifests, error bodies, token answers) and verifies every blob against its digest while
it streams it to disk.

Errors: ``RegistryError`` carries the registry's own error code and message (spec.md "Error
Codes"), worded as Docker prints them (``manifest unknown: manifest unknown``);
``Unreachable`` is a connection-level failure (the caller may try the next endpoint).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from labkit import errors
from labkit.engine.registry.auth import AuthConfig, Challenge, TokenCache, parse_challenge
from labkit.engine.registry.endpoints import Endpoint

__all__ = ["MAX_MANIFEST", "NotFound", "RegistryError", "Repository", "Unauthorized", "Unreachable",
           "new_session"]

MAX_MANIFEST = 4 << 20  # spec.md: registries SHOULD accept manifests of at least 4 MiB
_MAX_SMALL = 1 << 20  # error bodies and token answers
_MAX_REDIRECTS = 10
_CHUNK = 1 << 20
CHUNKED_UPLOAD = 16 << 20  # blobs above this go up in PATCH chunks (spec.md "chunked")
_REDIRECTS = (301, 302, 303, 307, 308)

ProgressFn = Callable[[int], None]


class RegistryError(errors.LabkitError):
    """An error answer from a registry: ``code`` (spec.md error code, e.g. MANIFEST_UNKNOWN),
    ``status`` (HTTP), ``text`` (Docker's wording: "<code words>: <message>")."""

    def __init__(self, status: int, code: str, message: str) -> None:
        words = code.lower().replace("_", " ") if code else f"status {status}"
        self.text = f"{words}: {message}" if message else words
        super().__init__(self.text)
        self.status, self.code, self.message = status, code, message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.status, self.code, self.message))


class Unauthorized(RegistryError):
    """401 after the credentials (if any) were offered."""


class NotFound(errors.NotFoundError):
    """A 404 with moby's own words (``manifest for X not found: ...``)."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__("image", name)
        self.message = message
        self.args = (message,)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.name))


class Unreachable(errors.LabkitError):
    """The endpoint could not be reached (DNS, connect, TLS, a cut connection)."""


def new_session() -> aiohttp.ClientSession:
    """A session for registry traffic: no cookie jar (registries are stateless; a cookie
    must not carry one user's session into another's request), generous read timeouts."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    return aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(),
                                 auto_decompress=False, trust_env=False)


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise errors.InvalidArgumentError(what, f"too large ({resp.content_length} bytes, "
                                          f"the limit is {limit})")
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 << 10):
        buf += chunk
        if len(buf) > limit:
            raise errors.InvalidArgumentError(what, f"too large (over {limit} bytes)")
    return bytes(buf)


async def _error_of(resp: aiohttp.ClientResponse) -> RegistryError:
    """spec.md "Error Codes": {"errors": [{"code", "message", "detail"}]}; the first one."""
    try:
        body = json.loads(await _read_limited(resp, _MAX_SMALL, "registry error body"))
        first = body["errors"][0]
        code, message = str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError,
            errors.InvalidArgumentError, aiohttp.ClientError):
        code, message = "", resp.reason or ""
    cls = Unauthorized if resp.status == 401 else RegistryError
    return cls(resp.status, code, message)


class Repository:
    """``path`` (e.g. ``library/busybox``) on ``endpoint``, for ``actions`` ("pull" or
    "pull,push"), with ``auth``'s credentials."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: Endpoint, path: str,
                 auth: AuthConfig, actions: str, tokens: TokenCache) -> None:
        self.session, self.endpoint, self.path = session, endpoint, path
        self.auth, self.actions, self.tokens = auth, actions, tokens
        self.challenge: Challenge | None = None
        self.base = URL(endpoint.url)

    # -- transport -------------------------------------------------------------------------

    def url(self, tail: str) -> URL:
        return self.base.with_path(f"/v2/{self.path}/{tail}", encoded=False)

    def _ssl(self) -> bool:
        return self.endpoint.verify

    async def _authorization(self) -> str | None:
        ch = self.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return self.auth.basic()
        if ch.scheme == "bearer":
            if self.auth.registrytoken:
                return f"Bearer {self.auth.registrytoken}"
            return f"Bearer {await self._token(ch)}"
        raise errors.UnsupportedError("registry auth", f"scheme {ch.scheme!r}",
                                      hint="Basic and Bearer are supported")

    async def _token(self, ch: Challenge) -> str:
        """token.md "Requesting a Token": GET realm?service=&scope= with basic credentials,
        or an OAuth2 refresh_token POST for an identity token (oauth.md)."""
        realm = ch.params.get("realm", "")
        service = ch.params.get("service", "")
        scope = f"repository:{self.path}:{self.actions}" if self.path else ""
        # the credentials are part of the key: a token fetched with one user's password
        # must never answer another user's (or an anonymous) request
        key = (realm, service, scope, self.auth.identity())
        cached = self.tokens.get(key)
        if cached:
            return cached
        rurl = URL(realm)
        if rurl.scheme not in ("http", "https") or not rurl.host:
            raise errors.InvalidArgumentError("registry auth", f"token realm {realm!r} is not "
                                              "an http(s) URL")
        if self.auth.identitytoken:
            form = {"grant_type": "refresh_token", "refresh_token": self.auth.identitytoken,
                    "service": service, "client_id": "labkit", **({"scope": scope} if scope
                                                                  else {})}
            resp = await self._send("POST", rurl, {}, lambda: form, auth=False)
        else:
            q = {k: v for k, v in (("service", service), ("scope", scope)) if v}
            hdr = {"Authorization": b} if (b := self.auth.basic()) else {}
            resp = await self._send("GET", rurl.update_query(q), hdr, None, auth=False)
        async with resp:
            if resp.status == 401:
                raise Unauthorized(401, "UNAUTHORIZED",
                                   "authentication required" if self.auth.empty
                                   else "incorrect username or password")
            if resp.status != 200:
                raise await _error_of(resp)
            try:
                doc = json.loads(await _read_limited(resp, _MAX_SMALL, "token answer"))
                token = doc.get("token") or doc.get("access_token")
                expires = float(doc.get("expires_in") or 60)
            except (ValueError, AttributeError, TypeError):
                token = None
        if not isinstance(token, str) or not token:
            raise errors.InvalidArgumentError("registry auth", f"the token server {realm} "
                                              "answered no token")
        self.tokens.put(key, token, expires)
        return token

    async def _send(self, method: str, url: URL, headers: dict[str, str],
                    body: Callable[[], Any] | None, *, auth: bool = True
                    ) -> aiohttp.ClientResponse:
        """One request, following redirects by hand (at most 10): only to http or https.

        Credentials go only where they were meant to: the registry's own credentials
        (``auth``) only to the endpoint's host:port (as distribution's authorizer answers
        only challenges of hosts it pinged), so a Location or redirect naming another host
        never receives them; an explicit Authorization header (the token request) only to
        the host of the first URL."""
        first = (url.host, url.port)
        home = (self.base.host, self.base.port)
        for _ in range(_MAX_REDIRECTS + 1):
            hdrs = dict(headers)
            if (url.host, url.port) != first:
                hdrs.pop("Authorization", None)
            if auth and (url.host, url.port) == home:
                value = await self._authorization()
                if value:
                    hdrs["Authorization"] = value
            try:
                resp = await self.session.request(
                    method, url, headers=hdrs, data=body() if body else None,
                    allow_redirects=False, ssl=self._ssl())
            except (TimeoutError, aiohttp.ClientConnectionError, OSError) as e:
                raise Unreachable(f"{method} {url.with_query(None)}: "
                                  f"{type(e).__name__}: {e}") from None
            if resp.status not in _REDIRECTS:
                return resp
            loc = resp.headers.get("Location", "")
            resp.release()
            nxt = url.join(URL(loc))
            if nxt.scheme not in ("http", "https"):
                raise errors.InvalidArgumentError(
                    "registry redirect", f"{method} {url.with_query(None)} redirected to a "
                    f"{nxt.scheme or 'scheme-less'} URL: only http and https are followed")
            if resp.status == 303:
                method, body = "GET", None
            url = nxt
        raise errors.InvalidArgumentError("registry redirect", f"more than {_MAX_REDIRECTS} "
                                          f"redirects from {url.with_query(None)}")

    async def request(self, method: str, url: URL, headers: dict[str, str] | None = None,
                      body: Callable[[], Any] | None = None) -> aiohttp.ClientResponse:
        """A request with auth; a 401 with a new challenge is answered once more."""
        resp = await self._send(method, url, headers or {}, body)
        if resp.status == 401 and "WWW-Authenticate" in resp.headers:
            ch = parse_challenge(resp.headers["WWW-Authenticate"])
            if ch != self.challenge:
                resp.release()
                self.challenge = ch
                resp = await self._send(method, url, headers or {}, body)
        return resp

    # -- the API ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """GET /v2/ (spec.md "end-1"): 200, or 401 with the challenge to answer from now on."""
        resp = await self._send("GET", self.base.with_path("/v2/"), {}, None, auth=False)
        async with resp:
            if resp.status == 401 and "WWW-Authenticate" in resp.headers:
                self.challenge = parse_challenge(resp.headers["WWW-Authenticate"])
            elif resp.status != 200:
                raise Unreachable(f"GET {self.base}/v2/: status {resp.status} (not a "
                                  "distribution API v2 registry?)")

    async def login(self) -> None:
        """Check the credentials: /v2/ must answer 200 once the challenge is answered."""
        await self.ping()
        if self.challenge is None:
            return
        resp = await self._send("GET", self.base.with_path("/v2/"), {}, None)
        async with resp:
            if resp.status != 200:
                raise Unauthorized(resp.status, "UNAUTHORIZED", f"login attempt to "
                                   f"{self.base}/v2/ failed with status: {resp.status} "
                                   f"{resp.reason or ''}".rstrip())

    async def get_manifest(self, reference: str, accept: tuple[str, ...]
                           ) -> tuple[str, bytes]:
        """GET a manifest: (Content-Type, bytes), at most MAX_MANIFEST bytes."""
        resp = await self.request("GET", self.url(f"manifests/{reference}"),
                                  {"Accept": ", ".join(accept)})
        async with resp:
            if resp.status != 200:
                raise await _error_of(resp)
            raw = await _read_limited(resp, MAX_MANIFEST, f"manifest {reference}")
            return resp.headers.get("Content-Type", "").split(";")[0].strip(), raw

    async def fetch_blob(self, digest: str, size: int, dest: Path,
                         progress: ProgressFn) -> None:
        """Stream blob ``digest`` into ``dest`` (0600), refusing more than ``size`` bytes;
        raise InvalidArgumentError (and remove ``dest``) unless its sha256 is ``digest``."""
        resp = await self.request("GET", self.url(f"blobs/{digest}"))
        h, n = hashlib.sha256(), 0
        try:
            async with resp:
                if resp.status != 200:
                    raise await _error_of(resp)
                out = await asyncio.to_thread(open, dest, "wb", opener=_private)
                with out:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        n += len(chunk)
                        if n > size:
                            raise errors.InvalidArgumentError(
                                f"blob {digest}", f"the registry sent more than the {size} "
                                "bytes its descriptor says: refused, not stored")
                        h.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
                        progress(n)
            got = f"sha256:{h.hexdigest()}"
            if got != digest or n != size:
                raise errors.InvalidArgumentError(
                    f"blob {digest}", f"digest mismatch: got {got} ({n} bytes, expected "
                    f"{size}): refused, not stored")
        except aiohttp.ClientPayloadError as e:
            dest.unlink(missing_ok=True)
            raise Unreachable(f"GET {self.url(f'blobs/{digest}')}: connection cut: {e}") \
                from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    async def blob_size(self, digest: str) -> int | None:
        """HEAD /v2/<name>/blobs/<digest> (spec.md "Checking if content exists"): the
        blob's size (Content-Length) when the repository has it, else None."""
        resp = await self.request("HEAD", self.url(f"blobs/{digest}"))
        async with resp:
            if resp.status == 200:
                try:
                    return int(resp.headers.get("Content-Length", ""))
                except ValueError:
                    raise RegistryError(200, "", f"HEAD {digest}: no Content-Length") from None
            if resp.status == 404:
                return None
            raise RegistryError(resp.status, "", resp.reason or "")

    async def upload_blob(self, src: Path, digest: str, progress: ProgressFn) -> None:
        """POST an upload session, then one PUT (monolithic) or PATCH chunks and a closing
        PUT ?digest= (spec.md "Pushing blobs")."""
        size = src.stat().st_size
        loc = await self.start_upload()
        octet = {"Content-Type": "application/octet-stream"}
        if size > CHUNKED_UPLOAD:
            start = 0
            while start < size:
                end = min(start + CHUNKED_UPLOAD, size)
                hdr = {**octet, "Content-Range": f"{start}-{end - 1}",
                       "Content-Length": str(end - start)}
                data = await asyncio.to_thread(_read_range, src, start, end)
                resp = await self.request("PATCH", loc, hdr, functools.partial(bytes, data))
                async with resp:
                    if resp.status != 202:
                        raise await _error_of(resp)
                    loc = self._location(resp)
                start = end
                progress(start)
            resp = await self.request("PUT", loc.update_query(digest=digest),
                                      {"Content-Length": "0"})
        else:
            resp = await self.request("PUT", loc.update_query(digest=digest),
                                      {**octet, "Content-Length": str(size)},
                                      lambda: _file_chunks(src, progress))
        async with resp:
            if resp.status != 201:
                raise await _error_of(resp)

    async def start_upload(self) -> URL:
        """POST /v2/<name>/blobs/uploads/: the session's Location."""
        resp = await self.request("POST", self.url("blobs/uploads/"), {"Content-Length": "0"})
        async with resp:
            if resp.status != 202:
                raise await _error_of(resp)
            return self._location(resp)

    async def mount_blob(self, digest: str, source: str) -> bool:
        """Cross-repository mount (spec.md "Mounting a blob from another repository"):
        True on 201; a 202 (the registry would not mount: no access, unknown blob) opened
        an upload session, which is cancelled again."""
        url = self.url("blobs/uploads/").with_query({"mount": digest, "from": source})
        resp = await self.request("POST", url, {"Content-Length": "0"})
        async with resp:
            if resp.status == 201:
                return True
            if resp.status != 202:
                return False
            loc = self._location(resp)
        cancel = await self.request("DELETE", loc)
        cancel.release()
        return False

    def _location(self, resp: aiohttp.ClientResponse) -> URL:
        loc = resp.headers.get("Location")
        if not loc:
            raise errors.InvalidArgumentError("registry upload", "no Location in the answer")
        url = resp.url.join(URL(loc))
        if url.scheme not in ("http", "https"):
            raise errors.InvalidArgumentError("registry upload", "Location is not http(s)")
        return url

    async def put_manifest(self, reference: str, media_type: str, raw: bytes) -> str:
        """PUT the manifest; returns its digest (Docker-Content-Digest or our sha256)."""
        resp = await self.request("PUT", self.url(f"manifests/{reference}"),
                                  {"Content-Type": media_type}, lambda: raw)
        async with resp:
            if resp.status not in (200, 201):
                raise await _error_of(resp)
        return "sha256:" + hashlib.sha256(raw).hexdigest()


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _read_range(src: Path, start: int, end: int) -> bytes:
    with open(src, "rb") as f:
        f.seek(start)
        return f.read(end - start)


async def _file_chunks(src: Path, progress: ProgressFn) -> AsyncIterator[bytes]:
    n = 0
    f = await asyncio.to_thread(open, src, "rb")
    with f:
        while chunk := await asyncio.to_thread(f.read, _CHUNK):
            n += len(chunk)
            progress(n)
            yield chunk
