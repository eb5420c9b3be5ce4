"""labkit.measure.registry.LocalRegistry: a real docker-registry on loopback, with and without
htpasswd auth, stopped by pid with its storage removed."""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request

import pytest

from labkit.measure.registry import LocalRegistry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_open_registry_answers_v2_and_cleans_up() -> None:
    reg = LocalRegistry().start()
    try:
        assert reg.address.startswith("127.0.0.1:")
        assert _get(reg.url + "/v2/") == 200
        pid, base = reg.proc.pid, reg.base  # type: ignore[union-attr]
    finally:
        reg.stop()
    assert not base.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_htpasswd_registry_wants_credentials() -> None:
    with LocalRegistry(users={"lkuser": "lkpass"}) as reg:
        assert _get(reg.url + "/v2/") == 401
        assert _get(reg.url + "/v2/", ("lkuser", "wrong")) == 401
        assert _get(reg.url + "/v2/", ("lkuser", "lkpass")) == 200
