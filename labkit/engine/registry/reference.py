"""Image references as Docker parses them (distribution/reference ParseNormalizedNamed).

``busybox`` is ``docker.io/library/busybox:latest``; the first path component is a registry
only when it contains ``.`` or ``:`` or is ``localhost``.  A reference names a tag or a
digest (``name@sha256:...``); the daemon's pull also takes the digest in the ``tag`` query
parameter, as the Docker CLI sends it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit import errors
from labkit.engine.images.digest import parse_digest
from labkit.engine.images.store import split_ref

__all__ = ["DOCKER_IO", "Reference", "parse"]

DOCKER_IO = "docker.io"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A fully qualified reference: ``domain``/``path`` with a ``tag`` or a ``digest``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def familiar_name(self) -> str:
        """The short repository name Docker shows (``busybox``, ``127.0.0.1:5000/x``)."""
        if self.domain == DOCKER_IO:
            return self.path.removeprefix("library/") if self.path.count("/") == 1 \
                else self.path
        return f"{self.domain}/{self.path}"

    @property
    def store_tag(self) -> str:
        """``name:tag`` as the image store keys it (familiar name)."""
        return f"{self.familiar_name}:{self.tag or 'latest'}"

    @property
    def familiar(self) -> str:
        """``busybox:latest`` or ``busybox@sha256:...``: Docker's FamiliarString."""
        return f"{self.familiar_name}@{self.digest}" if self.digest else self.store_tag

    @property
    def reference(self) -> str:
        """What is asked of the registry: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"


def parse(name: str, tag: str = "") -> Reference:
    """Parse ``name`` (maybe ``name:tag`` or ``name@digest``) plus an API ``tag`` parameter
    (a tag, or a digest as the CLI sends for ``pull x@sha256:..``).

    Raises InvalidArgumentError("reference", ...) with Docker's "invalid reference format".
    """
    digest = None
    if "@" in name:
        name, digest = name.split("@", 1)
    if tag:
        if tag.startswith("sha256:"):
            digest = tag
        elif _TAG.fullmatch(tag):
            if ":" in name.rsplit("/", 1)[-1]:
                name = name.rsplit(":", 1)[0]  # moby: the tag parameter wins
            name = f"{name}:{tag}"
        else:
            raise errors.InvalidArgumentError("reference", f"invalid reference format: {tag!r}")
    if digest is not None:
        try:
            parse_digest(digest)
        except errors.InvalidArgumentError:
            raise errors.InvalidArgumentError(
                "reference", f"invalid reference format: digest {digest!r}") from None
    short, tg = split_ref(name)  # the store's grammar check, in the familiar form
    has_tag = ":" in name.rsplit("/", 1)[-1]
    first, _, rest = short.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DOCKER_IO, short if "/" in short else f"library/{short}"
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DOCKER_IO
    if digest is not None and not has_tag:
        return Reference(domain, path, None, digest)
    return Reference(domain, path, tg, digest)
