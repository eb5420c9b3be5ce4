"""The Dockerfile parser, word expansion and .dockerignore (labkit.engine.build): pure code."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.build import instructions as I
from labkit.engine.build.errors import DockerfileError
from labkit.engine.build.expand import expand_word, expand_words
from labkit.engine.build.ignore import Ignore
from labkit.engine.build.parser import parse


def test_continuations_comments_and_case() -> None:
    df = parse("# c\nfrom busybox\nRun echo a \\\n  # inside\n\n  && echo b\nenv A=1\n")
    assert [(i.line, i.cmd) for i in df.instructions] == [(2, "FROM"), (3, "RUN"), (7, "ENV")]
    assert df.instructions[1].args == "echo a   && echo b"


def test_escape_directive_backtick() -> None:
    df = parse("# escape=`\nFROM busybox\nRUN echo a `\n b\n")
    assert df.escape == "`" and df.instructions[1].args == "echo a  b"


def test_errors_name_the_line() -> None:
    with pytest.raises(DockerfileError) as e:
        parse("FROM busybox\n\nRUN true\nFOO bar\n")
    assert str(e.value.problem) == "Dockerfile parse error line 4: unknown instruction: FOO"
    with pytest.raises(DockerfileError, match="line 1: .*RUN before the first FROM"):
        parse("RUN true\nFROM busybox\n")
    with pytest.raises(DockerfileError, match="line 1: invalid escape token"):
        parse("# escape=x\nFROM busybox\n")


def test_syntax_directive_only_default() -> None:
    parse("# syntax=docker/dockerfile:1\nFROM busybox\n")
    with pytest.raises(DockerfileError, match="line 1: syntax=example/frontend"):
        parse("# syntax=example/frontend\nFROM busybox\n")


def test_arg_before_from_is_meta() -> None:
    df = parse("ARG V=1\nFROM busybox:${V}\n")
    assert [i.cmd for i in df.meta_args] == ["ARG"] and df.instructions[0].cmd == "FROM"


@pytest.mark.parametrize(("word", "want"), [
    ("$A", "a"), ("${A}b", "ab"), ("${NOPE:-dflt}", "dflt"), ("${EMPTY:-d}", "d"),
    ("${EMPTY-d}", ""), ("${A:+alt}", "alt"), ("${NOPE:+alt}", ""), ("'$A'", "$A"),
    ('"$A b"', "a b"), ("\\$A", "$A"), ('"\\$A"', "$A"), ("$", "$"), ("a$1", "a"),
])
def test_expand(word: str, want: str) -> None:
    assert expand_word(word, {"A": "a", "EMPTY": ""}) == want


def test_expand_words_and_errors() -> None:
    assert expand_words('a "b c" $X', {"X": "x y"}) == ["a", "b c", "x y"]
    with pytest.raises(errors.InvalidArgumentError, match="must be set"):
        expand_word("${Q:?must be set}", {})
    with pytest.raises(errors.InvalidArgumentError, match="double-quote"):
        expand_word('"open', {})


def test_env_label_pairs() -> None:
    df = parse('FROM x\nENV A=1 B="two words" C=$A\nENV OLD legacy value\nLABEL "k"="v"\n')
    env, label_ins = df.instructions[1:3], df.instructions[3]
    assert I.name_values(env[0], {"A": "z"}, "\\") == [("A", "1"), ("B", "two words"), ("C", "z")]
    assert I.name_values(env[1], {}, "\\") == [("OLD", "legacy value")]
    assert I.name_values(label_ins, {}, "\\") == [("k", "v")]
    bad = parse("FROM x\nENV A=1 B\n").instructions[1]
    with pytest.raises(DockerfileError, match="line 2: Syntax error - can't find ="):
        I.name_values(bad, {}, "\\")


def test_command_forms_and_flags() -> None:
    df = parse('FROM x\nCMD ["a", "b"]\nRUN echo hi\nRUN --mount=type=cache true\n'
               "COPY --chown=1:2 --chmod=640 a b /d/\nCOPY --link a /\nADD --from=x a b\n")
    ins = df.instructions
    assert I.command(ins[1], ["/bin/sh", "-c"]) == (["a", "b"], False)
    assert I.command(ins[2], ["/bin/sh", "-c"]) == (["/bin/sh", "-c", "echo hi"], True)
    with pytest.raises(DockerfileError, match="line 4: RUN --mount is a BuildKit flag"):
        I.command(ins[3], ["/bin/sh", "-c"])
    c = I.copy_args(ins[4], {}, "\\")
    assert (c.sources, c.dest, c.chown, c.chmod) == (["a", "b"], "/d/", "1:2", 0o640)
    with pytest.raises(DockerfileError, match="line 6: COPY --link"):
        I.copy_args(ins[5], {}, "\\")
    with pytest.raises(DockerfileError, match="line 7: Unknown flag: from"):
        I.copy_args(ins[6], {}, "\\")


def test_expose_healthcheck_from() -> None:
    df = parse("FROM busybox AS Build\nEXPOSE 80 53/udp 7000-7001\nEXPOSE 99999\n"
               "HEALTHCHECK --interval=1m30s --retries=2 CMD wget -q x\nFROM --platform=x y\n")
    ins = df.instructions
    assert I.from_args(ins[0], {}, "\\") == ("busybox", "build")
    assert I.exposed_ports(ins[1], {}, "\\") == ["80/tcp", "53/udp", "7000/tcp", "7001/tcp"]
    with pytest.raises(DockerfileError, match="line 3"):
        I.exposed_ports(ins[2], {}, "\\")
    hc = I.healthcheck(ins[3], ["/bin/sh", "-c"])
    assert hc == {"Test": ["CMD-SHELL", "wget -q x"], "Interval": 90 * 10**9, "Retries": 2}
    with pytest.raises(DockerfileError, match="line 5: FROM --platform"):
        I.from_args(ins[4], {}, "\\")


def test_dockerignore_rules() -> None:
    ig = Ignore("# c\n*.log\n!keep.log\nbuild/\n**/tmp\ndocs/*.md\n",
                always=("Dockerfile", ".dockerignore"))
    assert ig.excluded("x.log") and not ig.excluded("keep.log")
    assert ig.excluded("build/a/b.c")  # a parent directory matches
    assert ig.excluded("a/b/tmp") and ig.excluded("tmp/x")
    assert ig.excluded("docs/a.md") and not ig.excluded("docs/sub/a.md")
    assert not ig.excluded("sub/x.logx") and not ig.excluded("sub/x.log")  # * stays in one dir
    assert not Ignore("Dockerfile\n*", always=("Dockerfile",)).excluded("Dockerfile")
