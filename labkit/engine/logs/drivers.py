"""The log drivers by name: check their options, open the writer the shim uses, and say
where `docker logs` reads back (dual logging).

Drivers: json-file and local (files the daemon reads back), none, and the network drivers
syslog, gelf and fluentd, which cannot be read back.  For those, Docker 20.10+ keeps a
"dual logging" cache (docs.docker.com "Dual logging"): every line also goes to a file in the
local driver's format, ``<container dir>/container-cached.log``, and `docker logs` reads
that.  Its options are ``cache-disabled`` (false), ``cache-max-size`` (20m),
``cache-max-file`` (5) and ``cache-compress`` (true).  json-file and local are read directly
and take no cache: labkit refuses the cache-* options there rather than ignore them; with
``none`` Docker accepts any option and so does labkit (nothing is logged at all).

The daemon adds the container's identity (id, name, image, command, created) as the
reserved option CONTEXT_KEY before the options reach the shim: the network drivers put it in
their messages and tags.  A user cannot set it: it is no driver's option, so create refuses
it like any unknown option.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from labkit import errors

READABLE = ("json-file", "local")
NETWORK = ("syslog", "gelf", "fluentd")
DRIVERS = ("json-file", "local", "none", *NETWORK)
CACHE_OPTS = {"cache-disabled": "false", "cache-max-size": "20m", "cache-max-file": "5",
              "cache-compress": "true"}
CONTEXT_KEY = "lk-context"
# Docker's extra attributes (logger.Info.ExtraAttributes): container labels and env values
# named by these options go with every message (json-file "attrs", gelf "_key" fields,
# fluentd record keys).  The -regex forms are refused: a user's regex evaluated by Python's
# backtracking engine could hang the daemon (Go's RE2 cannot).
ATTR_OPTS = ("labels", "env")


class ReadNotSupportedError(errors.UnsupportedError):
    """moby's ErrReadLogsNotSupported: 501 with exactly Docker's words."""

    def __init__(self, feature: str = "logs", reason: str = "configured logging driver does "
                 "not support reading", hint: str | None = None) -> None:
        super().__init__(feature, reason, hint)

    def __str__(self) -> str:
        return self.reason


class LogWriter(Protocol):
    def write(self, stream: str, msg: bytes, ns: int | None = None) -> None: ...

    def close(self) -> None: ...


def _split(opts: dict[str, str], internal: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """(driver options, cache options); CONTEXT_KEY is dropped only from options that came
    from the daemon (``internal``): in a create body it is an unknown option."""
    own = {k: v for k, v in opts.items()
           if k not in CACHE_OPTS and not (internal and k == CONTEXT_KEY)}
    cache = {k: v for k, v in opts.items() if k in CACHE_OPTS}
    return own, cache


def check_cache(cache: dict[str, str]) -> dict[str, str]:
    """The cache options with defaults, checked (moby's words for a bad value); returns
    local-driver options for the cache file ({} when cache-disabled)."""
    from labkit.engine.logs.jsonfile import parse_bool
    from labkit.engine.logs.local import check_options

    full = {**CACHE_OPTS, **cache}
    disabled = full["cache-disabled"]
    try:
        if parse_bool(disabled, "log-opt cache-disabled"):
            return {}
    except errors.InvalidArgumentError:
        raise errors.InvalidArgumentError(
            "cache-disabled", f"invalid value for option cache-disabled: {disabled}") from None
    local = {"max-size": full["cache-max-size"], "max-file": full["cache-max-file"],
             "compress": full["cache-compress"]}
    check_options(local)
    return local


def check(driver: str, opts: dict[str, str], internal: bool = False) -> None:
    """Refuse what ``driver`` does not take (InvalidArgumentError, moby's words) or what
    labkit does not apply (UnsupportedError); ``driver`` is one of DRIVERS.  ``internal``:
    the options come from the daemon (the supervisor's check) and may hold CONTEXT_KEY."""
    own, cache = _split(opts, internal)
    if driver == "none":
        return
    if cache and driver in READABLE:
        key = min(cache)
        raise errors.UnsupportedError(f"log-opt {key}", f"{driver} is read back directly and "
                                      "keeps no dual-logging cache",
                                      hint="cache-* options apply to syslog, gelf and fluentd")
    if driver == "json-file":
        from labkit.engine.logs.jsonfile import check_options as check_json

        check_json(own)
    elif driver == "local":
        from labkit.engine.logs.local import check_options as check_local

        check_local(own)
    elif driver in NETWORK:
        check_cache(cache)
        _module(driver).check(own)
    else:
        raise errors.InvalidArgumentError("log-driver", f"no log driver named '{driver}' is "
                                          "registered")


def _module(driver: str) -> Any:
    if driver == "syslog":
        from labkit.engine.logs import syslog
        return syslog
    if driver == "gelf":
        from labkit.engine.logs import gelf
        return gelf
    from labkit.engine.logs import fluentd
    return fluentd


def local_path(json_path: str) -> str:
    """Where the local driver writes (moby: <container dir>/local-logs/container.log)."""
    return os.path.join(os.path.dirname(json_path), "local-logs", "container.log")


def cache_path(json_path: str) -> str:
    """The dual-logging cache (moby: <container dir>/container-cached.log)."""
    return os.path.join(os.path.dirname(json_path), "container-cached.log")


def read_source(driver: str, opts: dict[str, str], json_path: str) -> tuple[str, str] | None:
    """(file, "json-file" | "local") that `docker logs` reads, None when nothing can be
    read back (none, or a network driver with cache-disabled)."""
    if driver in ("", "json-file"):
        return json_path, "json-file"
    if driver == "local":
        return local_path(json_path), "local"
    if driver in NETWORK and check_cache(_split(opts)[1]):
        return cache_path(json_path), "local"
    return None


def attributes(opts: dict[str, str], labels: dict[str, str], env: list[str]) -> dict[str, str]:
    """moby's ExtraAttributes: the labels listed in ``labels`` and the env variables listed
    in ``env`` (comma-separated names) that the container has, by name."""
    out: dict[str, str] = {}
    for key in filter(None, opts.get("labels", "").split(",")):
        if key in labels:
            out[key] = str(labels[key])
    envmap = dict(e.split("=", 1) for e in env if "=" in e)
    for key in filter(None, opts.get("env", "").split(",")):
        if key in envmap:
            out[key] = envmap[key]
    return out


def context(cid: str, name: str, image_id: str, image_name: str, command: str,
            created: str, attrs: dict[str, str] | None = None) -> str:
    """The CONTEXT_KEY value the daemon adds for the shim."""
    return json.dumps({"id": cid, "name": name, "image_id": image_id, "image_name": image_name,
                       "command": command, "created": created, "attrs": attrs or {}})


def _context(opts: dict[str, str]) -> dict[str, Any]:
    try:
        ctx = json.loads(opts.get(CONTEXT_KEY) or "{}")
    except ValueError:
        ctx = {}
    return ctx if isinstance(ctx, dict) else {}


def _attrs(ctx: dict[str, Any]) -> dict[str, str]:
    a = ctx.get("attrs")
    return {str(k): str(v) for k, v in a.items()} if isinstance(a, dict) else {}


class Tee:
    """Dual logging: every message to the network driver and to the local cache."""

    def __init__(self, remote: LogWriter, cache: LogWriter) -> None:
        self.remote, self.cache = remote, cache

    def write(self, stream: str, msg: bytes, ns: int | None = None) -> None:
        self.cache.write(stream, msg, ns)
        self.remote.write(stream, msg, ns)

    def close(self) -> None:
        self.remote.close()
        self.cache.close()


def open_writer(driver: str, path: str, opts: dict[str, str]) -> LogWriter | None:
    """The writer the shim logs the container's output with (None for ``none``).
    ``path`` is the json-file path; the other files sit beside it.  A network driver
    dials its endpoint now: one that cannot be reached fails the container's start."""
    from labkit.engine.logs.jsonfile import JsonFileWriter
    from labkit.engine.logs.local import LocalWriter

    own, cache = _split(opts)
    full = _context(opts)
    ctx = {k: str(v) for k, v in full.items() if k != "attrs"}
    if driver == "none":
        return None
    if driver in ("", "json-file"):
        attrs = _attrs(full)
        if "tag" in own:  # jsonfilelog: the tag is an attribute, only when asked for
            from labkit.engine.logs import tag
            attrs["tag"] = tag.render(own["tag"], ctx)
        return JsonFileWriter.from_options(path, own, attrs)
    if driver == "local":
        return LocalWriter.from_options(local_path(path), own)
    if driver not in NETWORK:
        raise errors.InvalidArgumentError("log-driver", f"no log driver named '{driver}' is "
                                          "registered")
    cache_opts = check_cache(cache)
    remote: LogWriter = _writer_class(driver)(own, ctx, _attrs(full))
    if not cache_opts:
        return remote
    try:
        return Tee(remote, LocalWriter.from_options(cache_path(path), cache_opts))
    except BaseException:
        remote.close()
        raise


def _writer_class(driver: str) -> Any:
    names = {"syslog": "SyslogWriter", "gelf": "GelfWriter", "fluentd": "FluentdWriter"}
    return getattr(_module(driver), names[driver])
