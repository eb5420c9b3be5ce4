"""The Dockerfile parser: text -> instructions, each with the line it starts on.

The grammar (Dockerfile reference; moby builder/dockerfile/parser):

* Parser directives (``# escape=`` and ``# syntax=``) are comment lines at the very top,
  before any instruction, blank line or other comment.  ``escape`` picks the escape
  character (``\\`` or a backtick); ``syntax`` asks for a BuildKit frontend image, which
  the classic builder has not: any value but Docker's default frontend is refused.
* ``#`` starts a comment only at the start of a line (leading whitespace allowed), also
  between continuation lines; elsewhere it is an argument character.
* A line ending in the escape character continues on the next one (the escape removed,
  the lines joined as they are); blank and comment lines inside a continuation are skipped.
* The instruction word is case-insensitive; the arguments are kept as written, and split,
  expanded and checked per instruction (instructions.py).

Every error is a DockerfileError naming its line: ``Dockerfile parse error line N: ...``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from labkit.engine.build.errors import DockerfileError

__all__ = ["KNOWN", "Dockerfile", "Instruction", "parse", "parse_flags", "split_raw"]

KNOWN = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
# Docker's default frontend: the classic builder is that syntax, so naming it is harmless
_DEFAULT_SYNTAX = re.compile(r"^(docker\.io/)?(docker/)?dockerfile(:1(\.\d+)*)?$")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction: ``cmd`` upper-case, ``args`` the text after it (continuations
    joined), ``original`` the whole instruction as Docker prints it in "Step N/M : ..."."""

    line: int
    cmd: str
    args: str
    original: str

    def error(self, problem: str, hint: str | None = None) -> DockerfileError:
        return DockerfileError(self.line, problem, hint)

    def json_form(self) -> list[str] | None:
        """The exec (JSON array of strings) form, or None for the shell form."""
        return json_list(self.args)


@dataclass
class Dockerfile:
    """A parsed Dockerfile: its escape character, the ARGs before the first FROM, and the
    instructions in order (FROM included)."""

    escape: str = "\\"
    meta_args: list[Instruction] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)


def json_list(text: str) -> list[str] | None:
    """``["a", "b"]`` -> ["a", "b"]; anything that is not a JSON array of strings -> None
    (Docker then takes the text as the shell form)."""
    t = text.strip()
    if not t.startswith("["):
        return None
    try:
        v = json.loads(t)
    except ValueError:
        return None
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def _directives(lines: list[str]) -> tuple[dict[str, tuple[int, str]], int]:
    """The parser directives at the top and the index of the first line after them."""
    found: dict[str, tuple[int, str]] = {}
    i = 0
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip()) if line.lstrip().startswith("#") else None
        if m is None or m.group(1).lower() not in ("escape", "syntax"):
            return found, i  # unknown directives are comments, and end the directives
        key = m.group(1).lower()
        if key in found:
            raise DockerfileError(i + 1, f"only one {key} parser directive can be used")
        found[key] = (i + 1, m.group(2))
    return found, len(lines)


def parse(text: str | bytes) -> Dockerfile:
    """Parse a Dockerfile's text.  Raises DockerfileError naming the line."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DockerfileError(raw[:e.start].count(b"\n") + 1, "the Dockerfile is not UTF-8") \
                from None
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM, as moby strips it
    lines = text.splitlines()
    found, start = _directives(lines)
    df = Dockerfile()
    if "escape" in found:
        n, value = found["escape"]
        if value not in ("\\", "`"):
            raise DockerfileError(n, f"invalid escape token '{value}' does not match ` or \\")
        df.escape = value
    if "syntax" in found:
        n, value = found["syntax"]
        if not _DEFAULT_SYNTAX.match(value):
            raise DockerfileError(
                n, f"syntax={value}: the classic builder has no BuildKit frontends",
                hint="remove the '# syntax=' line (only docker/dockerfile is accepted)")
    seen_from = False
    for ins in _logical_lines(lines, start, df.escape):
        if ins.cmd == "ARG" and not seen_from:
            df.meta_args.append(ins)
            continue
        if ins.cmd == "FROM":
            seen_from = True
        elif not seen_from:
            raise ins.error(f"{ins.cmd} before the first FROM: a Dockerfile must begin with "
                            "FROM (only ARG may come first)")
        df.instructions.append(ins)
    if not seen_from:
        raise DockerfileError(max(len(lines), 1), "no FROM instruction: the Dockerfile has "
                              "no build stage")
    return df


def _logical_lines(lines: list[str], start: int, escape: str) -> list[Instruction]:
    out: list[Instruction] = []
    i = start
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i + 1
        parts: list[str] = []
        cur = line.lstrip()
        while True:
            body = cur.rstrip()
            if body.endswith(escape):  # moby's lineContinuation: any trailing escape
                parts.append(body[:-1])
                i += 1
                # skip the blank and comment lines inside a continuation
                while i < len(lines) and (not lines[i].strip() or
                                          lines[i].lstrip().startswith("#")):
                    i += 1
                if i >= len(lines):
                    break  # an escape on the last line: the instruction just ends
                cur = lines[i]
                continue
            parts.append(cur)
            i += 1
            break
        joined = "".join(parts).strip()
        word, *more = re.split(r"\s+", joined, maxsplit=1)
        args = more[0] if more else ""
        cmd = word.upper()
        if cmd not in KNOWN:
            raise DockerfileError(first, f"unknown instruction: {cmd}")
        out.append(Instruction(first, cmd, args.strip(), joined))
    return out


def parse_flags(ins: Instruction, allowed: set[str]) -> tuple[dict[str, str], str]:
    """Leading ``--name=value`` / ``--name`` flags of an instruction, and the rest.

    Unknown flags are refused by name as Docker does ("Unknown flag: x")."""
    flags: dict[str, str] = {}
    rest = ins.args
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if not name:
            break  # "--" alone: Docker stops reading flags there
        if name not in allowed:
            raise ins.error(f"Unknown flag: {name}")
        if name in flags:
            raise ins.error(f"Duplicate flag specified: {name}")
        flags[name] = value if eq else "true"
        rest = after.lstrip()
    return flags, rest


def split_raw(text: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes, keeping the quotes and escapes (moby
    parseWords): ENV and LABEL pairs are split this way, then each is expanded."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and i + 1 < len(text) and quote != "'":
            cur += [ch, text[i + 1]]
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if cur:
        words.append("".join(cur))
    return words
