"""Volume names as moby's local driver accepts them (volume/local/local.go validateName)."""

from __future__ import annotations

import re
import secrets

from labkit import errors

__all__ = ["anonymous_name", "validate_name"]

# moby: `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` -- no '/', so a name is one path component below
# volumes/; '.' and '..' are excluded by the first character and the length (2+).
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def validate_name(name: str) -> str:
    """``name`` when it is a valid volume name; InvalidArgumentError (400) naming why not."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise errors.InvalidArgumentError(
            "name", f'create {name}: "{name}" includes invalid characters for a local volume '
                    'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to '
                    "pass a host directory, use absolute path")
    return name


def anonymous_name() -> str:
    """64 hex digits, as Docker names anonymous volumes."""
    return secrets.token_hex(32)
