"""``.dockerignore`` patterns as Docker applies them (moby/patternmatcher).

One pattern a line; ``#`` lines are comments; surrounding whitespace is dropped; each pattern
is cleaned like Go's filepath.Clean and a leading ``/`` removed.  Matching is Go's
filepath.Match (``*`` and ``?`` never cross ``/``, ``[...]`` classes, ``\\`` escapes) plus
``**``, any number of directories.  A path is excluded when it, or one of its parent
directories, matches; ``!pattern`` re-includes; the last matching pattern wins.  The
Dockerfile and ``.dockerignore`` are always sent (the builder needs them).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from labkit import errors

__all__ = ["Ignore", "parse_ignore"]


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool  # a "!" pattern
    text: str


def _translate(pat: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pat):
        ch = pat[i]
        if ch == "*":
            if pat[i:i + 2] == "**":
                i += 2
                if pat[i:i + 1] == "/":  # "**/" : zero or more whole directories
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pat.find("]", i + 1)
            if end < 0:
                raise errors.InvalidArgumentError(".dockerignore", f"syntax error in pattern {pat!r}")
            body = pat[i + 1:end]
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pat):
            i += 1
            out.append(re.escape(pat[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def parse_ignore(text: str) -> list[_Pattern]:
    pats = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excl = line.startswith("!")
        if excl:
            line = line[1:].strip()
        clean = posixpath.normpath(line).lstrip("/") if line else ""
        if not clean or clean == ".":
            continue
        pats.append(_Pattern(_translate(clean), excl, clean))
    return pats


class Ignore:
    """The compiled patterns; ``excluded(path)`` for a context-relative path."""

    def __init__(self, text: str = "", always: tuple[str, ...] = ()) -> None:
        self.patterns = parse_ignore(text)
        self.always = {posixpath.normpath(a) for a in always}

    def excluded(self, path: str, *, honour_always: bool = True) -> bool:
        path = posixpath.normpath(path).lstrip("/")
        if honour_always and path in self.always:
            return False
        parents = []
        p = path
        while "/" in p:
            p = p.rsplit("/", 1)[0]
            parents.append(p)
        hit = False
        for pat in self.patterns:
            if pat.exclusion and not hit:
                continue
            matched = bool(pat.regex.match(path)) or any(pat.regex.match(d) for d in parents)
            if matched:
                hit = not pat.exclusion
        return hit
