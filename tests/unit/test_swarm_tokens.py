"""labkit.engine.swarm.tokens: SWMTKN-1 join tokens that pin the root CA."""

from __future__ import annotations

import random
import re

import pytest

from labkit import errors
from labkit.engine.swarm import ca, tokens


@pytest.fixture(scope="module")
def root() -> ca.RootCA:
    return ca.RootCA.create()


def test_make_and_parse(root: ca.RootCA) -> None:
    tok = tokens.make(root.cert_pem)
    assert re.fullmatch(r"SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}", tok), tok
    jt = tokens.parse(tok)
    assert jt.version == 1 and jt.digest == root.digest()
    assert jt.render() == tok
    assert jt.secret not in repr(jt)  # a credential stays out of logs
    assert tokens.parse("  " + tok + "\n") == jt  # a pasted newline is fine


def test_secret_kept_digest_follows_ca(root: ca.RootCA) -> None:
    s = tokens.new_secret()
    assert len(s) == 25
    a = tokens.make(root.cert_pem, s)
    new = ca.RootCA.create()
    b = tokens.make(new.cert_pem, s)
    assert a.endswith(s) and b.endswith(s) and a != b
    assert tokens.matches_ca(a, root.cert_pem) and not tokens.matches_ca(a, new.cert_pem)
    assert tokens.matches_ca(b, new.cert_pem)
    assert tokens.same_secret(a, b)
    with pytest.raises(errors.InvalidArgumentError, match="secret"):
        tokens.make(root.cert_pem, "UPPER" * 5)


def test_manager_and_worker_tokens_differ(root: ca.RootCA) -> None:
    m, w = tokens.make(root.cert_pem), tokens.make(root.cert_pem)
    assert m != w and not tokens.same_secret(m, w)
    assert tokens.same_secret(m, m)
    assert not tokens.same_secret(m, "garbage") and not tokens.same_secret("x", "x")


def test_token_of_another_ca_does_not_match(root: ca.RootCA) -> None:
    other = ca.RootCA.create()
    assert not tokens.matches_ca(tokens.make(other.cert_pem), root.cert_pem)


def _good(root: ca.RootCA) -> str:
    return tokens.make(root.cert_pem)


@pytest.mark.parametrize("mangle", [
    lambda t: t.replace("SWMTKN", "SWMTKX"),
    lambda t: t.replace("SWMTKN-1", "SWMTKN-2"),
    lambda t: t.replace("SWMTKN-1-", "SWMTKN-01-"),
    lambda t: "swmtkn" + t[6:],
    lambda t: t[:9] + t[10:],  # digest of 49
    lambda t: t[:9] + "0" + t[9:],  # digest of 51
    lambda t: t[:-1],  # secret of 24
    lambda t: t + "0",  # secret of 26
    lambda t: t[:20] + "A" + t[21:],  # not base36 (upper case)
    lambda t: t[:20] + "_" + t[21:],
    lambda t: t[:-3] + "-" + t[-2:],  # extra dash
    lambda t: t + "-extra",
    lambda t: t.replace("-", "_"),
    lambda t: t[:9] + "z" * 50 + t[59:],  # digest above 2**256
    lambda t: t[:-25] + "z" * 25,  # secret above 2**128
    lambda t: t.replace("-", " ", 1),
    lambda t: "",
    lambda t: t * 2,
    lambda t: t[:30] + "\n" + t[30:],
])
def test_parse_refuses_malformed(root: ca.RootCA, mangle: object) -> None:
    tok = _good(root)
    bad = mangle(tok)  # type: ignore[operator]
    with pytest.raises(errors.InvalidArgumentError, match="invalid join token") as exc:
        tokens.parse(bad)
    assert tokens.parse(tok).secret not in str(exc.value)  # never echoes the secret


def test_parse_fuzz_never_crashes(root: ca.RootCA) -> None:
    """Random edits of a good token either parse to a token or raise InvalidArgumentError."""
    rng = random.Random(5)
    tok = _good(root)
    alphabet = "0123456789abcdefxyzA-_ \x00é"
    for _ in range(2000):
        chars = list(tok)
        for _ in range(rng.randint(1, 4)):
            op, i = rng.random(), rng.randrange(len(chars))
            if op < 0.4:
                chars[i] = rng.choice(alphabet)
            elif op < 0.7:
                del chars[i]
            else:
                chars.insert(i, rng.choice(alphabet))
        s = "".join(chars)
        try:
            jt = tokens.parse(s)
        except errors.InvalidArgumentError:
            continue
        assert jt.render() == s.strip()
    with pytest.raises(errors.InvalidArgumentError):
        tokens.parse(None)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgumentError):
        tokens.parse("SWMTKN-1-" + "0" * 10_000)
