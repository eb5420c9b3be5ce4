"""Log drivers: json-file, local, none, syslog, gelf, fluentd (drivers.py picks by name and
keeps the dual-logging cache); writers run in the shim, readers (reader.py, local.py) in the
daemon.

The reader is loaded on first use (PEP 562 module __getattr__): the shim imports only the
writer, and the reader's dataclasses -> inspect -> ast chain would put ~1.2 MB (measured)
in the template that every shim maps (shim PSS, issue 3).
"""

from typing import TYPE_CHECKING, Any

from labkit.engine.logs.jsonfile import JsonFileWriter, LineSplitter, parse_size, rfc3339nano

if TYPE_CHECKING:
    from labkit.engine.logs.reader import Follower, LogEntry, follow, parse_time, read_logs

_READER = ("Follower", "LogEntry", "follow", "parse_time", "read_logs")


def __getattr__(name: str) -> Any:
    if name in _READER:
        from labkit.engine.logs import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
           "Follower",
           "JsonFileWriter",
           "LineSplitter",
           "LogEntry",
           "follow",
           "parse_size",
           "parse_time",
           "read_logs",
           "rfc3339nano",
]
