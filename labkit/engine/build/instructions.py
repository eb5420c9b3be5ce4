"""Each instruction's arguments, checked and expanded (the Dockerfile reference, one rule per
instruction).  Pure functions: the builder (steps.py) applies what they return.

Errors name the instruction's line (DockerfileError).  Words are expanded with the build's
environment (ENV so far, then ARG values) where Docker expands them (expand.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from labkit import errors
from labkit.engine.build.expand import expand_word, expand_words
from labkit.engine.build.parser import Instruction, json_list, parse_flags, split_raw

__all__ = [
    "CopyArgs",
    "arg_decl",
    "command",
    "copy_args",
    "duration",
    "exposed_ports",
    "from_args",
    "healthcheck",
    "name_values",
    "volumes",
    "word",
]


def word(ins: Instruction, text: str, env: Mapping[str, str], escape: str) -> str:
    """One expanded word; an expansion error names the line."""
    try:
        return expand_word(text, env, escape)
    except errors.InvalidArgumentError as e:
        raise ins.error(e.problem if e.what == "word" else f"{e.what}: {e.problem}") from None


def words(ins: Instruction, text: str, env: Mapping[str, str], escape: str) -> list[str]:
    try:
        return expand_words(text, env, escape)
    except errors.InvalidArgumentError as e:
        raise ins.error(e.problem if e.what == "word" else f"{e.what}: {e.problem}") from None


def from_args(ins: Instruction, env: Mapping[str, str], escape: str) -> tuple[str, str]:
    """``FROM [--platform=P] image [AS name]`` -> (image, stage name or "")."""
    flags, rest = parse_flags(ins, {"platform"})
    if "platform" in flags:
        raise ins.error("FROM --platform: only the host's platform is built here",
                        hint="drop --platform")
    parts = rest.split()
    if len(parts) == 3 and parts[1].lower() == "as":
        name = parts[2].lower()
        if not name[:1].isalpha() or not all(c.isalnum() or c in "_.-" for c in name):
            raise ins.error(f"invalid name for build stage: {parts[2]!r}, name can't start "
                            "with a number or contain symbols")
    elif len(parts) == 1:
        name = ""
    else:
        raise ins.error("FROM requires either one or three arguments")
    image = word(ins, parts[0], env, escape)
    if not image:
        raise ins.error("base name (" + parts[0] + ") should not be blank")
    return image, name


def name_values(ins: Instruction, env: Mapping[str, str], escape: str) -> list[tuple[str, str]]:
    """ENV and LABEL: ``k=v k2="v 2"`` or the legacy ``k value with spaces`` (ENV only)."""
    raw = split_raw(ins.args, escape)
    if not raw:
        raise ins.error(f"{ins.cmd} requires at least one argument")
    if "=" not in raw[0]:
        if ins.cmd != "ENV" and ins.cmd != "LABEL":
            raise ins.error(f"{ins.cmd}: {raw[0]!r} is not key=value")
        if len(raw) < 2:
            raise ins.error(f"{ins.cmd} must have two arguments")
        value = ins.args[len(raw[0]):].strip()
        return [(word(ins, raw[0], env, escape), word(ins, value, env, escape))]
    out = []
    for w in raw:
        k, eq, v = w.partition("=")
        if not eq:
            raise ins.error(f"Syntax error - can't find = in {w!r}. Must be of the form: "
                            "name=value")
        key = word(ins, k, env, escape)
        if not key:
            raise ins.error(f"{ins.cmd} names can not be blank")
        out.append((key, word(ins, v, env, escape)))
    return out


def arg_decl(ins: Instruction, env: Mapping[str, str], escape: str) -> list[tuple[str, str | None]]:
    """``ARG name[=default] ...`` -> [(name, default or None)]."""
    raw = split_raw(ins.args, escape)
    if not raw:
        raise ins.error("ARG requires at least one argument")
    out: list[tuple[str, str | None]] = []
    for w in raw:
        k, eq, v = w.partition("=")
        if not k or not all(c.isalnum() or c == "_" for c in k):
            raise ins.error(f"ARG names can not be blank or contain symbols: {k!r}")
        out.append((k, word(ins, v, env, escape) if eq else None))
    return out


def command(ins: Instruction, shell: list[str]) -> tuple[list[str], bool]:
    """RUN / CMD / ENTRYPOINT: (argv, shell form?).  The exec form is a JSON array; the
    shell form becomes ``shell + [text]`` (``/bin/sh -c`` unless SHELL changed it)."""
    if ins.cmd == "RUN" and ins.args.startswith("--"):
        flag = ins.args.split()[0].split("=")[0]
        raise ins.error(f"RUN {flag} is a BuildKit flag; the classic builder has none",
                        hint="remove the flag")
    js = json_list(ins.args)
    if js is not None:
        return js, False
    if not ins.args.strip():
        raise ins.error(f"{ins.cmd} requires at least one argument")
    return [*shell, ins.args], True


@dataclass(frozen=True, slots=True)
class CopyArgs:
    """COPY/ADD: sources (context-relative as written), destination, and the flags."""

    sources: list[str]
    dest: str
    chown: str
    chmod: int | None
    from_stage: str


def copy_args(ins: Instruction, env: Mapping[str, str], escape: str) -> CopyArgs:
    allowed = {"chown", "chmod", "from"} if ins.cmd == "COPY" else {"chown", "chmod"}
    flags, rest = parse_flags(ins, allowed | {"link", "parents", "exclude", "checksum",
                                              "keep-git-dir"})
    for bk in ("link", "parents", "exclude", "checksum", "keep-git-dir"):
        if bk in flags:
            raise ins.error(f"{ins.cmd} --{bk} is a BuildKit flag; the classic builder has none")
    if ins.cmd == "ADD" and "from" in flags:
        raise ins.error("ADD --from: only COPY takes --from")
    js = json_list(rest)
    parts = [word(ins, w, env, escape) for w in js] if js is not None else \
        words(ins, rest, env, escape)
    if len(parts) < 2:
        raise ins.error(f"{ins.cmd} requires at least two arguments, but only one was provided. "
                        "Destination could not be determined.")
    chmod = None
    if "chmod" in flags:
        try:
            chmod = int(flags["chmod"], 8)
        except ValueError:
            chmod = -1
        if not 0 <= chmod <= 0o7777:
            raise ins.error(f"invalid chmod parameter: {flags['chmod']!r} (an octal mode)")
    chown = word(ins, flags.get("chown", ""), env, escape)
    return CopyArgs(parts[:-1], parts[-1], chown, chmod, flags.get("from", ""))


def exposed_ports(ins: Instruction, env: Mapping[str, str], escape: str) -> list[str]:
    """EXPOSE 80 8080/udp 7000-7002 -> ["80/tcp", "8080/udp", "7000/tcp", ...]."""
    out = []
    for p in words(ins, ins.args, env, escape):
        port, _, proto = p.partition("/")
        proto = (proto or "tcp").lower()
        lo, dash, hi = port.partition("-")
        if proto not in ("tcp", "udp", "sctp") or not lo.isdigit() or (dash and not hi.isdigit()):
            raise ins.error(f"Invalid containerPort: {p}")
        first, last = int(lo), int(hi) if dash else int(lo)
        if not 0 < first <= last <= 65535:
            raise ins.error(f"Invalid port range: {p}")
        out += [f"{n}/{proto}" for n in range(first, last + 1)]
    if not out:
        raise ins.error("EXPOSE requires at least one argument")
    return out


def volumes(ins: Instruction, env: Mapping[str, str], escape: str) -> list[str]:
    js = json_list(ins.args)
    out = [word(ins, w, env, escape) for w in js] if js is not None else \
        words(ins, ins.args, env, escape)
    if not out or any(not v.strip() for v in out):
        raise ins.error("VOLUME specified can not be an empty string")
    return out


def duration(ins: Instruction, flag: str, text: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    units = {"ns": 1, "us": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total, num = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = text[i:i + 2] if text[i:i + 2] in units else text[i]
        if unit not in units or not num:
            raise ins.error(f"HEALTHCHECK --{flag}: invalid duration {text!r}")
        total += float(num) * units[unit]
        num, i = "", i + len(unit)
    if num or not text:
        raise ins.error(f"HEALTHCHECK --{flag}: invalid duration {text!r} (a unit is needed)")
    return int(total)


def healthcheck(ins: Instruction, shell: list[str]) -> dict[str, object]:
    """HEALTHCHECK [--interval= --timeout= --start-period= --start-interval= --retries=]
    CMD ... | NONE -> the config's Healthcheck."""
    flags, rest = parse_flags(ins, {"interval", "timeout", "start-period", "start-interval",
                                    "retries"})
    kind, _, tail = rest.partition(" ")
    if kind.upper() == "NONE":
        if flags or tail.strip():
            raise ins.error("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD":
        raise ins.error(f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    sub = Instruction(ins.line, "CMD", tail.strip(), ins.original)
    argv, is_shell = command(sub, shell)
    hc: dict[str, object] = {"Test": (["CMD-SHELL", argv[-1]] if is_shell else ["CMD", *argv])}
    keys = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
            "start-interval": "StartInterval"}
    for flag, key in keys.items():
        if flag in flags:
            hc[key] = duration(ins, flag, flags[flag])
    if "retries" in flags:
        if not flags["retries"].isdigit() or int(flags["retries"]) < 1:
            raise ins.error(f"--retries must be at least 1 (not {flags['retries']!r})")
        hc["Retries"] = int(flags["retries"])
    return hc


def shell_form(ins: Instruction) -> list[str]:
    """SHELL ["executable", "parameters"] (JSON only, as Docker requires)."""
    js = json_list(ins.args)
    if not js:
        raise ins.error("SHELL requires the arguments to be in JSON form")
    return js


def dumps(argv: list[str]) -> str:
    """How Docker prints an exec form in history: ``["a","b"]``."""
    return json.dumps(argv, separators=(",", ":"))
