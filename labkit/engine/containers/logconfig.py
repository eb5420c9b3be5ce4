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

What Docker accepts but labkit does not do is refused with UnsupportedError (501), naming
it: the log drivers other than json-file and none, mode=non-blocking, and json-file's
labels/env/tag attributes.  Nothing is accepted and then ignored.
"""

from __future__ import annotations

from typing import Any

from labkit import errors

__all__ = ["DOCKER_DRIVERS", "LABKIT_DRIVERS", "check_log_config"]

# moby's built-in drivers (daemon/logdrivers_linux.go)
DOCKER_DRIVERS = ("awslogs", "fluentd", "gcplogs", "gelf", "journald", "json-file", "local",
                  "logentries", "none", "splunk", "syslog")
LABKIT_DRIVERS = ("json-file", "none")
# daemon/logger/jsonfilelog ValidateLogOpt
JSON_FILE_OPTS = ("max-file", "max-size", "compress", "labels", "labels-regex", "env",
                  "env-regex", "tag")
_NOT_APPLIED = ("labels", "labels-regex", "env", "env-regex", "tag")


def _bad(problem: str) -> errors.InvalidArgumentError:
    # ``what`` is part of ``problem`` so that the API message is moby's text alone
    return errors.InvalidArgumentError(problem.split(":")[0], problem)


def _json_file(opts: dict[str, str]) -> None:
    from labkit.engine.logs.jsonfile import parse_size
    for key in opts:
        if key not in JSON_FILE_OPTS:
            raise _bad(f"unknown log opt '{key}' for json-file log driver")
    for key in _NOT_APPLIED:
        if key in opts:
            raise errors.UnsupportedError(
                f"log-opt {key}", "labkit's json-file does not add attributes to log entries",
                hint="leave the option out")
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


def check_log_config(lc: dict[str, Any]) -> dict[str, Any]:
    """A create body's LogConfig ({"Type", "Config"}) checked; returns it normalised."""
    kind = lc.get("Type") or "json-file"
    opts = {str(k): str(v) for k, v in (lc.get("Config") or {}).items()}
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
            raise errors.UnsupportedError(f"log driver {kind!r}", "only json-file and none for "
                                          "now", hint="the other log drivers arrive in a "
                                          "later issue")
        if mode == "non-blocking":
            raise errors.UnsupportedError("log-opt mode=non-blocking", "labkit's shim always "
                                          "writes logs in blocking mode", hint="leave it out")
        opts.pop("mode", None)  # blocking is what the shim does
        if kind == "json-file":
            _json_file(opts)
    return {"Type": kind, "Config": opts}
