"""Variable substitution in Dockerfile words, as Docker's shell lexer does it.

Docker expands ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:+alt}``, ``${VAR+alt}``, ``${VAR:?message}`` and ``${VAR?message}`` in the arguments
of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG (the
Dockerfile reference, "Environment replacement"); RUN, CMD and ENTRYPOINT are left to the
shell.  Quotes are removed as in sh: ``'...'`` is literal, ``"..."`` still expands ``$`` and
honours the escape character before ``"``, ``$`` and itself; outside quotes the escape
character (``\\`` or the one ``# escape=`` chose) makes the next character literal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from labkit import errors

__all__ = ["expand_word", "expand_words"]

_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass
class _Lexer:
    text: str
    env: Mapping[str, str]
    escape: str
    pos: int = 0
    words: list[str] = field(default_factory=list)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def run(self, *, split: bool, stop: str = "") -> list[str]:
        """Process up to ``stop`` (unquoted) or the end; returns the words (one unless
        ``split``).  A word that held quotes is kept even when empty (``""``)."""
        words: list[str] = []
        cur: list[str] = []
        seen = False  # the current word exists (a quote or a character was met)
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                break
            self.pos += 1
            if split and ch in " \t\r\n":
                if seen:
                    words.append("".join(cur))
                    cur, seen = [], False
                continue
            seen = True
            if ch == self.escape:
                nxt = self.next()
                cur.append(nxt if nxt else ch)  # a trailing escape stays itself
            elif ch == "'":
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise errors.InvalidArgumentError("word", f"unexpected end of statement "
                                                      f"while looking for matching single-quote in {self.text!r}")
                cur.append(self.text[self.pos:end])
                self.pos = end + 1
            elif ch == '"':
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())
            else:
                cur.append(ch)
        if seen or not split:
            words.append("".join(cur))
        return words

    def _double(self) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise errors.InvalidArgumentError("word", "unexpected end of statement while "
                                                  f"looking for matching double-quote in {self.text!r}")
            ch = self.next()
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.peek() in ('"', "$", self.escape) and self.peek():
                out.append(self.next())
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)

    def _dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self._braced()
        name = []
        while self.peek() and self.peek() in _NAME:
            name.append(self.next())
        if not name:
            return "$"  # "$" before anything else is literal (moby processDollar)
        return self.env.get("".join(name), "")

    def _braced(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in _NAME:
            self.pos += 1
        name = self.text[start:self.pos]
        if not name:
            raise errors.InvalidArgumentError("word", f"bad substitution in {self.text!r}")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise errors.InvalidArgumentError(
                "word", f"unsupported modifier ({ch or 'end'}) in substitution of {name!r} "
                f"in {self.text!r}")
        word = "".join(self.run(split=False, stop="}"))
        if self.next() != "}":
            raise errors.InvalidArgumentError("word", f"missing '}}' in {self.text!r}")
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set and value is not None else word
        if ch == "+":
            return word if is_set else ""
        if not is_set:  # "?": an error naming the variable
            raise errors.InvalidArgumentError(name, word or "is not allowed to be unset")
        return value or ""


def expand_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word with variables expanded and quotes removed (no splitting)."""
    return _Lexer(text, env, escape).run(split=False)[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Split ``text`` on unquoted whitespace, then expand each word (Docker's
    ProcessWords: a variable's value is not split again)."""
    return _Lexer(text, env, escape).run(split=True)
