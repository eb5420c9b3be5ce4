"""The Docker CLI's credentials file, shared with labkit's CLI: ``$DOCKER_CONFIG/config.json``
(default ``~/.docker/config.json``), its ``auths`` map (docker/cli cli/config/configfile).

An entry is keyed by the registry's host[:port], or ``https://index.docker.io/v1/`` for Docker
Hub, and holds ``{"auth": base64("user:password")}``, exactly what `docker login` writes when
no credential helper is configured, so a user logs in once for both CLIs.  A config that
names a credential helper (``credsStore`` / ``credHelpers``) is refused rather than
bypassed: labkit does not run helpers, and writing the password beside one would leak it.
The file is written atomically, mode 0600, other keys kept as they were.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = ["HUB_KEY", "config_path", "erase", "header_for", "key_for", "lookup", "store"]

HUB_KEY = "https://index.docker.io/v1/"


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def key_for(domain: str) -> str:
    return HUB_KEY if domain in ("docker.io", "index.docker.io", "registry-1.docker.io") \
        else domain


def _read() -> dict[str, Any]:
    p = config_path()
    try:
        doc = json.loads(p.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise errors.InvalidArgumentError(str(p), f"not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise errors.InvalidArgumentError(str(p), "must hold a JSON object")
    return doc


def _no_helper(doc: dict[str, Any], key: str) -> None:
    helper = (doc.get("credHelpers") or {}).get(key) or doc.get("credsStore")
    if helper:
        raise errors.UnsupportedError(
            "docker credential helpers", f"{config_path()} names the helper {helper!r}",
            hint="labkit reads and writes plain `auths` entries only; remove credsStore / "
            "credHelpers or use the Docker CLI")


def lookup(domain: str) -> tuple[str, str] | None:
    """(user, password) stored for ``domain``, or None."""
    key = key_for(domain)
    doc = _read()
    entry = (doc.get("auths") or {}).get(key)
    if not isinstance(entry, dict) or not entry.get("auth"):
        if entry is not None:  # `docker login` with a helper leaves an empty entry here
            _no_helper(doc, key)
        return None
    try:
        user, sep, pw = base64.b64decode(entry["auth"]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, TypeError):
        raise errors.InvalidArgumentError(str(config_path()), f"auths[{key!r}].auth is not "
                                          "base64 user:password") from None
    return (user, pw) if sep else None


def header_for(domain: str) -> str:
    """The X-Registry-Auth header value for ``domain`` (``e30`` = {} when none is stored)."""
    creds = lookup(domain)
    doc: dict[str, str] = {}
    if creds:
        doc = {"username": creds[0], "password": creds[1], "serveraddress": key_for(domain)}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def _write(doc: dict[str, Any]) -> None:
    p = config_path()
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: 0600
            json.dump(doc, f, indent="\t")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, p)
    except BaseException:
        os.unlink(tmp)
        raise


def store(domain: str, user: str, password: str) -> Path:
    key = key_for(domain)
    doc = _read()
    _no_helper(doc, key)
    auths = doc.setdefault("auths", {})
    auths[key] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write(doc)
    return config_path()


def erase(domain: str) -> bool:
    key = key_for(domain)
    doc = _read()
    if key not in (doc.get("auths") or {}):
        return False
    del doc["auths"][key]
    _write(doc)
    return True
