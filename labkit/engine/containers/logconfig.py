"""HostConfig.LogConfig checked at create, in moby's order and words (daemon/logger).

moby's ``logger.ValidateLogOpts`` runs at container create and answers 400:

1. driver "none": any options pass (there is nothing to configure);
2. ``mode`` must be blocking or non-blocking: "logger: logging mode not supported: X";
3. ``max-buffer-size`` only with mode=non-blocking;
4. an unknown driver: "logger: no log driver named 'X' is registered";
5. the driver's own validator; json-file's: "unknown log opt 'X' for json-file log driver".

json-file's values are checked by its constructor (jsonfilelog.New) with its own words
("max-file cannot be less than 1", "compress cannot be true when max-file is less than 2
or max-size is not set"); labkit checks them here too, at create, so a bad value is a 400
before anything exists rather than a failed start.

The other drivers (local, syslog, gelf, fluentd and the dual-logging cache-* options) are
checked by labkit.engine.logs.drivers.check, in their drivers' words.

Defaults (moby daemon/logs.go mergeAndVerifyLogConfig): a container without a Type gets the
daemon's log-driver; when its Type is the daemon's driver, the daemon's log-opts fill in the
options it does not set.  The result is what HostConfig.LogConfig shows in inspect.

What Docker accepts but labkit does not do is refused with UnsupportedError (501), naming
it: the drivers Docker has and labkit lacks (awslogs, journald, ...), mode=non-blocking,
labels-regex/env-regex and the network drivers' TLS and async options.  Nothing is accepted
and then ignored.
"""

from __future__ import annotations

from typing import Any

from labkit import errors

__all__ = ["DOCKER_DRIVERS", "LABKIT_DRIVERS", "check_daemon_default", "check_log_config"]

# moby's built-in drivers (daemon/logdrivers_linux.go)
DOCKER_DRIVERS = ("awslogs", "fluentd", "gcplogs", "gelf", "journald", "json-file", "local",
                  "logentries", "none", "splunk", "syslog")
LABKIT_DRIVERS = ("json-file", "local", "none", "syslog", "gelf", "fluentd")
# daemon/logger/jsonfilelog ValidateLogOpt
JSON_FILE_OPTS = ("max-file", "max-size", "compress", "labels", "labels-regex", "env",
                  "env-regex", "tag")
_NOT_APPLIED = ("labels-regex", "env-regex")  # a user regex: see logs/drivers.ATTR_OPTS


def _bad(problem: str) -> errors.InvalidArgumentError:
    # ``what`` is part of ``problem`` so that the API message is moby's text alone
    return errors.InvalidArgumentError(problem.split(":")[0], problem)


def _json_file(opts: dict[str, str]) -> None:
    from labkit.engine.logs.drivers import CACHE_OPTS
    from labkit.engine.logs.jsonfile import parse_size
    for key in opts:
        if key in CACHE_OPTS:  # moby accepts them for every driver; json-file uses none
            raise errors.UnsupportedError(f"log-opt {key}", "json-file is read back directly "
                                          "and keeps no dual-logging cache",
                                          hint="cache-* options apply to syslog, gelf and "
                                          "fluentd")
        if key not in JSON_FILE_OPTS:
            raise _bad(f"unknown log opt '{key}' for json-file log driver")
    for key in _NOT_APPLIED:
        if key in opts:
            raise errors.UnsupportedError(
                f"log-opt {key}", "labkit does not evaluate regular expressions from a "
                "request", hint=f"name the keys with {key.split('-')[0]}=a,b instead")
    if "tag" in opts:
        from labkit.engine.logs import tag
        tag.check(opts["tag"])  # only Docker's documented fields (logs/tag.py)
    max_size = parse_size(opts.get("max-size", ""))
    max_file = opts.get("max-file", "1")
    try:
        files = int(max_file)
    except ValueError:
        raise _bad(f'strconv.Atoi: parsing "{max_file}": invalid syntax') from None
    if files < 1:
        raise _bad("max-file cannot be less than 1")
    if "compress" in opts:
        text = opts["compress"].lower()
        if text not in ("1", "t", "true", "0", "f", "false"):  # Go strconv.ParseBool
            raise _bad(f'strconv.ParseBool: parsing "{opts["compress"]}": invalid syntax')
        if text in ("1", "t", "true") and (files == 1 or max_size == -1):
            raise _bad("compress cannot be true when max-file is less than 2 or max-size is "
                       "not set")


def check_log_config(lc: dict[str, Any], default_driver: str = "json-file",
                     default_opts: dict[str, str] | None = None) -> dict[str, Any]:
    """A create body's LogConfig ({"Type", "Config"}) checked, the daemon's defaults
    (daemon.json log-driver / log-opts) merged in; returns it normalised."""
    kind = lc.get("Type") or default_driver
    opts = {str(k): str(v) for k, v in (lc.get("Config") or {}).items()}
    if kind == default_driver:
        opts = {**(default_opts or {}), **opts}
    if kind != "none":
        mode = opts.get("mode", "")
        if mode not in ("", "blocking", "non-blocking"):
            raise _bad(f"logger: logging mode not supported: {mode}")
        if "max-buffer-size" in opts and mode != "non-blocking":
            raise _bad("logger: max-buffer-size option is only supported with "
                       "'mode=non-blocking'")
        if kind not in DOCKER_DRIVERS:
            raise _bad(f"logger: no log driver named '{kind}' is registered")
        if kind not in LABKIT_DRIVERS:
            raise errors.UnsupportedError(f"log driver {kind!r}", "labkit has "
                                          f"{', '.join(LABKIT_DRIVERS)}",
                                          hint="pick one of those with --log-driver")
        if mode == "non-blocking":
            raise errors.UnsupportedError("log-opt mode=non-blocking", "labkit's shim always "
                                          "writes logs in blocking mode", hint="leave it out")
        opts.pop("mode", None)  # blocking is what the shim does
        if kind == "json-file":
            _json_file(opts)
        else:
            from labkit.engine.logs.drivers import check
            check(kind, opts)
    return {"Type": kind, "Config": opts}


def check_daemon_default(driver: str, opts: dict[str, str]) -> None:
    """daemon.json's log-driver / log-opts checked at daemon start: dockerd refuses to start
    with a bad default ("failed to set log opts: ..."), so does labkit."""
    try:
        check_log_config({"Type": driver, "Config": opts})
    except errors.LabkitError as err:
        raise errors.InvalidArgumentError("daemon.json log-driver/log-opts",
                                          f"failed to set log opts: {err}",
                                          hint="fix log-driver / log-opts in daemon.json") from None
