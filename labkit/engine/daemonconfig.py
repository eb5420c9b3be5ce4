"""The daemon's configuration file: /etc/labkit/daemon.json, in the shape of dockerd's.

dockerd reads /etc/docker/daemon.json at start (dockerd(8), "DAEMON CONFIGURATION FILE") and
refuses to start when a key is unknown or has the wrong type, rather than running with a
setting silently dropped.  labkit does the same for the keys it knows, and refuses every other
key by name: a key dockerd knows but labkit does not apply is an error, never ignored.

The file is read once, at daemon start (``labkit daemon --config-file PATH``; default
``$LABKIT_CONFIG`` or /etc/labkit/daemon.json; a missing default file means all defaults).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = ["DEFAULT_PATH", "DaemonConfig", "default_path", "load", "parse", "validate_insecure",
           "validate_mirror"]

DEFAULT_PATH = Path("/etc/labkit/daemon.json")
_MAX_BYTES = 1 << 20  # a config file is a few hundred bytes; refuse to slurp a huge one


@dataclass(frozen=True)
class DaemonConfig:
    """What the daemon applies from daemon.json (defaults are dockerd's)."""

    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    registry_mirrors: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    # dockerd's "bridge" (-b): "none" runs without the default bridge network (a
    # container's default network is then "none"); "" or "lk0" keeps it.  labkit names its
    # default bridge lk0 itself, so naming another existing bridge is refused.
    bridge: str = ""
    source: str | None = None  # the file these came from, None for built-in defaults


def default_path() -> Path:
    return Path(os.environ.get("LABKIT_CONFIG", str(DEFAULT_PATH)))


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise errors.InvalidArgumentError(f"daemon.json {key!r}", "must be a list of non-empty "
                                          "strings")
    return tuple(value)


def validate_mirror(val: str) -> str:
    """A registry mirror URL as dockerd accepts it (moby registry.ValidateMirror): http or
    https, no credentials, nothing after the host but '/'.  Returns it with one trailing '/'."""
    try:
        uri = urllib.parse.urlsplit(val)
        uri.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise errors.InvalidArgumentError(
            "daemon.json 'registry-mirrors'", f"invalid mirror: {val!r} is not a valid URI") \
            from None
    if uri.scheme not in ("http", "https"):
        raise errors.InvalidArgumentError(
            "daemon.json 'registry-mirrors'",
            f"invalid mirror: unsupported scheme {uri.scheme!r} in {val!r}")
    if uri.username is not None or uri.password is not None:
        shown = val.replace(uri.netloc, f"{uri.username}:xxxxx@{uri.hostname}"
                            + (f":{uri.port}" if uri.port else ""))
        raise errors.InvalidArgumentError(
            "daemon.json 'registry-mirrors'",
            f"invalid mirror: username/password not allowed in URI {shown!r}")
    if uri.path not in ("", "/") or uri.query or uri.fragment or not uri.hostname:
        raise errors.InvalidArgumentError(
            "daemon.json 'registry-mirrors'",
            f"invalid mirror: path, query, or fragment at end of the URI {val!r}")
    return val.rstrip("/") + "/"


_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                   r"[A-Za-z0-9])?)*")


def validate_insecure(val: str) -> str:
    """An insecure-registries entry as dockerd takes it (moby registry loadInsecureRegistries):
    a CIDR or host[:port]; a leading http:// or https:// is dropped as dockerd drops it."""
    low = val.lower()
    for scheme in ("http://", "https://"):
        if low.startswith(scheme):
            val = val[len(scheme):]
            break
    else:
        if "://" in val:
            raise errors.InvalidArgumentError(
                "daemon.json 'insecure-registries'",
                f"insecure registry {val} should not contain '://'")
    try:
        return str(ipaddress.ip_network(val, strict=False)) if "/" in val else _host_port(val)
    except ValueError as e:
        raise errors.InvalidArgumentError(
            "daemon.json 'insecure-registries'", f"insecure registry {val} is not valid: {e}") \
            from None


def _host_port(val: str) -> str:
    host, port = val, ""
    if val.startswith("["):  # [::1]:5000
        host, _, port = val[1:].partition("]")
        port = port.removeprefix(":")
        ipaddress.IPv6Address(host)
    elif val.count(":") == 1:
        host, port = val.split(":")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"invalid port {port!r}")
    if not val.startswith("[") and not _HOST.fullmatch(host):
        raise ValueError(f"invalid host {host!r}")
    return val


def parse(doc: Any, source: str | None = None) -> DaemonConfig:
    """A DaemonConfig from the decoded JSON ``doc``; unknown keys and wrong types refused."""
    if not isinstance(doc, dict):
        raise errors.InvalidArgumentError("daemon.json", "must hold a JSON object")
    known = {"log-driver", "log-opts", "registry-mirrors", "insecure-registries", "bridge"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise errors.UnsupportedError(
            "daemon.json", "the following directives don't match any configuration option "
            f"labkit applies: {', '.join(unknown)}", hint=f"labkit applies {', '.join(sorted(known))}")
    driver = doc.get("log-driver", "json-file")
    if not isinstance(driver, str) or not driver:
        raise errors.InvalidArgumentError("daemon.json 'log-driver'", "must be a non-empty string")
    opts = doc.get("log-opts", {})
    if not isinstance(opts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in opts.items()):
        # dockerd: log-opts values are strings ("max-size": "10m", "max-file": "3")
        raise errors.InvalidArgumentError("daemon.json 'log-opts'", "must map strings to "
                                          "strings, as in {\"max-size\": \"10m\"}")
    bridge = doc.get("bridge", "")
    if bridge not in ("", "none", "lk0"):
        raise errors.InvalidArgumentError(
            "daemon.json 'bridge'", f"{bridge!r}: labkit's default bridge is lk0, which it "
            "makes itself", hint='"none" turns the default bridge network off')
    return DaemonConfig(
        log_driver=driver, log_opts=dict(opts), bridge=bridge,
        # kept as written (validated); endpoints.py and /info use the '/'-ended form
        registry_mirrors=tuple(m for m in _strings("registry-mirrors",
                                                   doc.get("registry-mirrors", []))
                               if validate_mirror(m)),
        insecure_registries=tuple(validate_insecure(r) for r in _strings(
            "insecure-registries", doc.get("insecure-registries", []))),
        source=source)


def load(path: Path | None = None) -> DaemonConfig:
    """Read ``path`` (default: default_path()).  An explicitly named file must exist; a
    missing default file gives the built-in defaults, as dockerd without daemon.json."""
    explicit = path is not None
    p = path if path is not None else default_path()
    try:
        with open(p, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        if explicit or "LABKIT_CONFIG" in os.environ:
            raise errors.NotFoundError("daemon config file", str(p)) from None
        return DaemonConfig()
    if len(raw) > _MAX_BYTES:
        raise errors.InvalidArgumentError(f"daemon config {p}", "larger than 1 MiB")
    try:
        doc = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise errors.InvalidArgumentError(f"daemon config {p}", f"not valid JSON: {err}") from None
    return parse(doc, str(p))
