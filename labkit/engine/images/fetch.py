"""Fetch a rootfs tar from an http(s) URL for ``docker import URL`` (POST /images/create
?fromSrc=URL), streamed to a file in the store's staging dir.

Only http and https are fetched (a URL is attacker input: no file://, no other scheme; a
redirect elsewhere is refused too), the body is capped at MAX_BYTES, and a failure says
which URL and why, in moby's words (daemon/images/image_import.go ->
remotecontext.GetWithStatusError: "failed to GET URL with status 404 Not Found").
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from labkit import errors

__all__ = ["MAX_BYTES", "FetchError", "RemoteNotFoundError", "check_url", "fetch"]

MAX_BYTES = 8 << 30  # a rootfs larger than 8 GiB is not an image anyone imports by URL
_CHUNK = 1 << 20
_SCHEMES = ("http", "https")


class FetchError(errors.LabkitError):
    """The URL could not be fetched (refused, unreachable, an HTTP error other than 404)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.hint))


class RemoteNotFoundError(errors.NotFoundError):
    """The server answered 404 for the URL (the daemon answers 404 as moby does)."""

    def __init__(self, url: str, status: str, hint: str | None = None) -> None:
        super().__init__("URL", url, hint)
        self.message = f"failed to GET {url} with status {status}"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.name, self.message.rsplit("status ", 1)[-1], self.hint))


def check_url(url: str) -> str:
    """Refuse anything but an absolute http(s) URL with a host; returns it unchanged."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as err:
        raise errors.InvalidArgumentError("fromSrc", f"{url!r}: {err}") from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise errors.InvalidArgumentError(
            "fromSrc", f"{url!r}: only http:// and https:// URLs are imported",
            hint="or send the tar itself: docker import FILE (fromSrc=-)")
    return url


async def fetch(url: str, dest: Path, *, limit: int = MAX_BYTES,
                timeout: float = 60.0) -> int:
    """GET ``url`` into ``dest`` (created 0600); returns the bytes written.

    Raises InvalidArgumentError for a bad URL or a body over ``limit`` (``dest`` is then
    removed), RemoteNotFoundError for a 404, FetchError for any other failure.
    """
    check_url(url)
    tmo = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
    written = 0
    try:
        async with aiohttp.ClientSession(timeout=tmo) as session, \
                session.get(url, max_redirects=5) as resp:
            if resp.url.scheme not in _SCHEMES:  # after redirects
                raise errors.InvalidArgumentError("fromSrc", f"{url!r} redirected to "
                                                  f"{resp.url.scheme}://")
            status = f"{resp.status} {resp.reason or ''}".strip()
            if resp.status == 404:
                raise RemoteNotFoundError(url, status)
            if resp.status >= 400:
                raise FetchError(f"failed to GET {url} with status {status}")
            if resp.content_length is not None and resp.content_length > limit:
                raise _too_big(url, limit)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise _too_big(url, limit)
                    await asyncio.to_thread(f.write, chunk)  # never block the daemon's loop
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        dest.unlink(missing_ok=True)
        text = str(err) or type(err).__name__
        raise FetchError(f'Get "{url}": {text}',
                         hint="is the server up and the URL right?") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return written


def _too_big(url: str, limit: int) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError("fromSrc", f"{url}: the body is larger than the "
                                       f"import limit of {limit} bytes")
