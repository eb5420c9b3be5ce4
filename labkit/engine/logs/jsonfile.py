"""Docker's json-file log driver: the writer the shim uses and the reader the daemon uses.

On disk (moby daemon/logger/jsonfilelog), one JSON object per line::

    {"log":"hi\\n","stream":"stdout","time":"2026-11-28T14:15:07.123456789Z"}

``log`` is the line *with* its newline (a partial line, flushed because it grew past
PARTIAL_MAX or because the stream ended, has none); ``time`` is RFC 3339 with nanoseconds,
trailing zeros trimmed (Go's time.RFC3339Nano).  With ``max-size`` the file is rotated to
``<path>.1`` ... ``<path>.<max-file - 1>`` (oldest last), as Docker's loggerutils does; with
``compress`` the rotated files are gzip members ``<path>.1.gz`` ... (moby refuses compress with
max-file < 2: there would be no rotated file to compress).

The writer imports only os/json/time: it runs in every shim, which must stay small.
"""

from __future__ import annotations

import json
import os
import time

# moby's bufio scanner flushes a line that has no newline after 16 KiB (logger.MaxPartialSize).
PARTIAL_MAX = 16 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
          "g": 1024**3, "gb": 1024**3}


def parse_size(text: str) -> int:
    """Docker's --log-opt max-size ("10m", "512k", "100"); -1 for "" / "-1" (no limit)."""
    t = text.strip().lower()
    if t in ("", "-1"):
        return -1
    num = t.rstrip("kmgb")
    unit = t[len(num):]
    if not num.replace(".", "", 1).isdigit() or unit not in _UNITS:
        from labkit.errors import InvalidArgumentError

        raise InvalidArgumentError("log-opt max-size", f"{text!r} is not a size",
                                   hint="a number with an optional unit k, m or g (e.g. 10m)")
    return int(float(num) * _UNITS[unit])


# Go's strconv.ParseBool, which moby uses for --log-opt compress.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(text: str, what: str) -> bool:
    """Go's strconv.ParseBool: "1", "t", "true", ... / "0", "f", "false", ...; else an error."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    from labkit.errors import InvalidArgumentError

    raise InvalidArgumentError(what, f"{text!r} is not a boolean", hint="true or false")


def rfc3339nano(ns: int) -> str:
    """Unix nanoseconds -> "2026-11-28T14:15:07.1234567Z" (Go RFC3339Nano, UTC)."""
    sec, frac = divmod(ns, 10**9)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


class LineSplitter:
    """Cut a byte stream into log messages: whole lines, or PARTIAL_MAX-sized pieces."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the complete messages it finished."""
        buf = self.buf + data
        out = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            # a long line goes out in PARTIAL_MAX pieces, the newline on the last, as moby's
            # copier does: no message is ever larger than that (a datagram driver sends
            # each message whole, so this bound is what keeps it under the UDP limit)
            while nl + 1 - start > PARTIAL_MAX:
                out.append(buf[start:start + PARTIAL_MAX])
                start += PARTIAL_MAX
            out.append(buf[start:nl + 1])
            start = nl + 1
        rest = buf[start:]
        while len(rest) >= PARTIAL_MAX:
            out.append(rest[:PARTIAL_MAX])
            rest = rest[PARTIAL_MAX:]
        self.buf = rest
        return out

    def flush(self) -> list[bytes]:
        """The partial last line, when the stream ends."""
        rest, self.buf = self.buf, b""
        return [rest] if rest else []


class JsonFileWriter:
    """Append records to ``path`` with Docker's rotation (max-size bytes, max-file files),
    rotated files gzip-compressed when ``compress``."""

    def __init__(self, path: str, *, max_size: int = -1, max_file: int = 1,
                 compress: bool = False, attrs: dict[str, str] | None = None) -> None:
        self.path = path
        self.attrs = attrs or None  # moby's "attrs" (labels/env/tag), omitted when empty
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.compress = compress and self.max_file > 1
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        # O_APPEND: a restarted shim (or a reader's truncation) never overwrites lines.
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size

    @classmethod
    def from_options(cls, path: str, options: dict[str, str],
                     attrs: dict[str, str] | None = None) -> JsonFileWriter:
        """Build from Docker's --log-opt map (max-size, max-file, compress; labels, env and
        tag arrive as ``attrs``, resolved by the daemon)."""
        max_size, max_file, compress = check_options(options)
        return cls(path, max_size=max_size, max_file=max_file, compress=compress, attrs=attrs)

    def encode(self, stream: str, msg: bytes, ns: int) -> bytes:
        """One record as it goes on disk (the local driver's writer overrides this)."""
        rec: dict[str, object] = {"log": msg.decode("utf-8", "replace"), "stream": stream}
        if self.attrs:
            rec["attrs"] = self.attrs  # moby's jsonlog field order: log, stream, attrs, time
        rec["time"] = rfc3339nano(ns)
        return json.dumps(rec,
                          separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    def write(self, stream: str, msg: bytes, ns: int | None = None) -> None:
        """Write one record; ``msg`` is one message from LineSplitter."""
        rec = self.encode(stream, msg, time.time_ns() if ns is None else ns)
        if self.max_size > 0 and self.size > 0 and self.size + len(rec) > self.max_size:
            self._rotate()
        view = memoryview(rec)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(rec)

    def _rotate(self) -> None:
        os.close(self.fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        if self.max_file > 1:
            ext = ".gz" if self.compress else ""
            for n in range(self.max_file - 1, 1, -1):
                older = f"{self.path}.{n - 1}{ext}"
                if os.path.exists(older):
                    os.rename(older, f"{self.path}.{n}{ext}")
            os.rename(self.path, f"{self.path}.1")
            if self.compress:
                _gzip_file(f"{self.path}.1")
        else:
            flags |= os.O_TRUNC
        self.fd = os.open(self.path, flags, 0o600)
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def check_options(options: dict[str, str]) -> tuple[int, int, bool]:
    """Docker's json-file --log-opt map -> (max_size, max_file, compress); a bad value is an
    InvalidArgumentError naming the option (the supervisor checks before a shim exists)."""
    from labkit.errors import InvalidArgumentError

    unknown = sorted(set(options) - {"max-size", "max-file", "compress", "labels", "env", "tag"})
    if unknown:
        raise InvalidArgumentError("log-opt", f"unknown log opt '{unknown[0]}' for json-file "
                                   "log driver")
    max_file = options.get("max-file", "1")
    if not max_file.isdigit() or int(max_file) < 1:
        raise InvalidArgumentError("log-opt max-file", f"{max_file!r} is not a count >= 1")
    compress = parse_bool(options.get("compress", "false"), "log-opt compress")
    if compress and int(max_file) < 2:
        raise InvalidArgumentError("log-opt compress",
                                   "compress cannot be true when max-file is less than 2")
    return parse_size(options.get("max-size", "")), int(max_file), compress


def _gzip_file(src: str) -> None:
    """``src`` -> ``src.gz`` (written aside, then renamed), ``src`` removed.

    Done in the writer, synchronously, once per max-size bytes: the container's output waits
    in its pipe meanwhile (moby compresses in a goroutine; a thread here would grow every
    shim).  A crash in between leaves ``src`` whole, which the reader also reads."""
    import contextlib
    import gzip
    import shutil

    tmp = f"{src}.gz.tmp"
    # 0600 like the log itself (it holds what the container printed); O_EXCL: a leftover
    # of a crash is replaced, never appended to.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with open(src, "rb") as fin, open(fd, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    os.rename(tmp, f"{src}.gz")
    os.unlink(src)
