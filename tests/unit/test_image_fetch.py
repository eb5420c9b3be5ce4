"""images/fetch.py: docker import URL's download (schemes, 404, refused, size cap, redirects)
against a loopback HTTP server the test starts."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images import fetch

BODY = b"x" * 300_000


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok.tar":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/nolength.tar":  # no Content-Length: the cap counts the stream
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/shadow")
            self.end_headers()
        elif self.path == "/boom":
            self.send_error(500)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _get(url: str, dest: Path, **kw: int) -> int:
    return asyncio.run(fetch.fetch(url, dest, **kw))


def test_fetch_streams_to_a_private_file(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "a.tar"
    assert _get(f"{server}/ok.tar", dest) == len(BODY)
    assert dest.read_bytes() == BODY and os.stat(dest).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("path", ["/ok.tar", "/nolength.tar"])
def test_size_cap_removes_the_file(server: str, tmp_path: Path, path: str) -> None:
    dest = tmp_path / "b.tar"
    with pytest.raises(errors.InvalidArgumentError, match="import limit of 1000 bytes"):
        _get(server + path, dest, limit=1000)
    assert not dest.exists()


def test_404_is_not_found_in_mobys_words(server: str, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFoundError) as exc:
        _get(f"{server}/missing.tar", tmp_path / "c.tar")
    assert getattr(exc.value, "message", "") == (
        f"failed to GET {server}/missing.tar with status 404 Not Found")
    with pytest.raises(fetch.FetchError, match="status 500"):
        _get(f"{server}/boom", tmp_path / "d.tar")


def test_refused_connection_names_the_url(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(fetch.FetchError, match=f'Get "http://127.0.0.1:{port}/x.tar"'):
        _get(f"http://127.0.0.1:{port}/x.tar", tmp_path / "e.tar")
    assert not (tmp_path / "e.tar").exists()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "/etc/passwd",
                                 "http://", "http://127.0.0.1:99999/x", "gopher://a/b"])
def test_only_http_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        _get(url, tmp_path / "f.tar")


def test_redirect_to_another_scheme_refused(server: str, tmp_path: Path) -> None:
    with pytest.raises((errors.InvalidArgumentError, fetch.FetchError)):
        _get(f"{server}/to-file", tmp_path / "g.tar")
    assert not (tmp_path / "g.tar").exists()
