"""Log drivers.  json-file for now (jsonfile: writer in the shim, reader in the daemon)."""

from labkit.engine.logs.jsonfile import JsonFileWriter, LineSplitter, parse_size, rfc3339nano
from labkit.engine.logs.reader import Follower, LogEntry, follow, parse_time, read_logs

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
