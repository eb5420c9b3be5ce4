"""Layer blob streams: detect the compression, hash both sides while reading or writing.

layer.md defines three layer media types: plain tar, ``+gzip`` and ``+zstd``.  One pass
over a blob yields both of its digests: the blob's (as stored) and the diffID (of the
uncompressed tar).  zstd needs the ``zstandard`` package; without it the blob is refused
with UnsupportedError rather than read wrongly.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from labkit import errors

GZIP, ZSTD, NONE = "gzip", "zstd", "none"
MEDIA_TYPES = {
    NONE: "application/vnd.oci.image.layer.v1.tar",
    GZIP: "application/vnd.oci.image.layer.v1.tar+gzip",
    ZSTD: "application/vnd.oci.image.layer.v1.tar+zstd",
}
_MAGIC = {b"\x1f\x8b": GZIP, b"\x28\xb5\x2f\xfd": ZSTD}
_OTHER = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes (sha256) and counts what passes through it."""

    def __init__(self, inner: IO[bytes] | Any) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.inner.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        """Read to the end (a tar reader stops at the end-of-archive blocks)."""
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha.hexdigest()}"


class HashingWriter(io.RawIOBase):
    """A write-only stream that hashes (sha256) and counts what passes through it."""

    def __init__(self, inner: IO[bytes] | Any) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.inner.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha.hexdigest()}"


def detect(head: bytes, blob: str) -> str:
    """The compression of a blob from its first bytes: GZIP, ZSTD or NONE."""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    for magic, name in _OTHER.items():
        if head.startswith(magic):
            raise errors.UnsupportedError(
                f"{name} layer", f"{blob} is {name}-compressed; OCI layers are tar, tar+gzip "
                "or tar+zstd", hint="recompress it with gzip")
    return NONE


def _zstd() -> Any:
    try:
        import zstandard  # type: ignore[import-not-found]  # optional dependency
    except ImportError:
        raise errors.UnsupportedError(
            "zstd layer", "the python package 'zstandard' is not installed",
            hint="pip install zstandard, or use gzip layers") from None
    return zstandard


@contextlib.contextmanager
def open_blob(path: Path) -> Iterator[tuple[tarfile.TarFile, HashingReader, HashingReader, str]]:
    """Open a layer blob as a streaming tar; yield (tar, blob hasher, tar hasher, compression).

    Call ``tar_hash.drain()`` and ``blob_hash.drain()`` after the last member to hash the
    whole stream.  Raises InvalidArgumentError for something that is not a tar.
    """
    with open(path, "rb") as raw:
        kind = detect(raw.read(8), str(path))
        raw.seek(0)
        blob_hash = HashingReader(raw)
        inner: Any
        if kind == GZIP:
            inner = gzip.GzipFile(fileobj=cast(BinaryIO, blob_hash), mode="rb")
        elif kind == ZSTD:
            inner = _zstd().ZstdDecompressor().stream_reader(blob_hash)
        else:
            inner = blob_hash
        tar_hash = HashingReader(inner)
        try:
            tf = tarfile.open(fileobj=cast(IO[bytes], tar_hash), mode="r|")  # noqa: SIM115 (closed below)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise errors.InvalidArgumentError(str(path), f"not a {kind} tar layer: {err}") from err
        with tf:
            yield tf, blob_hash, tar_hash, kind


def finish(blob_hash: HashingReader, tar_hash: HashingReader) -> None:
    """Hash the rest of both streams (tar padding after the end-of-archive marker)."""
    tar_hash.drain()
    blob_hash.drain()


@contextlib.contextmanager
def write_blob(
    path: Path, compression: str
) -> Iterator[tuple[IO[bytes], HashingWriter, HashingWriter]]:
    """Yield (stream to write the tar to, tar hasher, blob hasher) for a new blob at ``path``.

    gzip output is reproducible: no file name and mtime 0 in the gzip header (rfc1952).
    """
    if compression not in MEDIA_TYPES:
        raise errors.InvalidArgumentError(
            "compression", f"{compression!r} is not one of {sorted(MEDIA_TYPES)}")
    # Write beside the target and rename: a failure never leaves a truncated blob behind.
    tmp = path.with_name(f".lk-tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as raw:
            blob_hash = HashingWriter(raw)
            comp: Any
            if compression == GZIP:
                comp = gzip.GzipFile(filename="", fileobj=cast(BinaryIO, blob_hash), mode="wb",
                                     compresslevel=6, mtime=0)
            elif compression == ZSTD:
                comp = _zstd().ZstdCompressor().stream_writer(blob_hash, closefd=False)
            else:
                comp = None
            tar_hash = HashingWriter(comp if comp is not None else blob_hash)
            yield cast(IO[bytes], tar_hash), tar_hash, blob_hash
            if comp is not None:
                comp.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
