"""The cgroup v2 device filter's code generator, run by a small eBPF interpreter.

The interpreter knows exactly the instructions devfilter may emit and fails on anything
else, so a test also catches code the generator should not produce.  Each program's verdict
on every probe is compared with the rules read the v1 way (cgroup-v1/devices.rst): per kind
of access, the last rule naming that kind and matching the device decides; none means deny.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from labkit import errors
from labkit.engine.runtime import devfilter as df
from labkit.engine.runtime import devices

MASK32 = (1 << 32) - 1


def run(code: bytes, typ: int, access: int, major: int, minor: int) -> int:
    """Execute ``code`` on a bpf_cgroup_dev_ctx; returns r0.  Also checks what the verifier
    would: every instruction reachable, jumps in range, a known opcode, and r0 set on exit."""
    assert code and len(code) % 8 == 0
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    ctx = struct.pack("<III", (access << 16) | typ, major, minor)
    reg: list[int | None] = [None, None, None, None, None, None]
    reg[1] = -1  # the context pointer: only loads through it are allowed
    pc = 0
    for _ in range(10_000):
        code_, regs, off, imm = insns[pc]
        dst, src = regs & 0xF, regs >> 4
        pc += 1
        if code_ == df.LDXW:
            assert reg[src] == -1 and off in (0, 4, 8)
            reg[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code_ in (df.AND32, df.RSH32, df.MOV32):
            if code_ == df.MOV32:
                reg[dst] = imm & MASK32
            else:
                v = reg[dst]
                assert v is not None and v >= 0
                reg[dst] = (v & imm if code_ == df.AND32 else v >> imm) & MASK32
        elif code_ in (df.JNE, df.JSET):
            v = reg[dst]
            assert v is not None and v >= 0
            if (v != imm) if code_ == df.JNE else (v & imm):
                pc += off
        elif code_ == df.JA:
            pc += off
        elif code_ == df.EXIT:
            assert reg[0] is not None
            return reg[0]
        else:
            raise AssertionError(f"unexpected opcode {code_:#x} at {pc - 1}")
        assert 0 <= pc < len(insns), "jump out of the program"
    raise AssertionError("no exit")


def reachable(code: bytes) -> set[int]:
    n = len(code) // 8
    seen: set[int] = set()
    todo = [0]
    while todo:
        pc = todo.pop()
        if pc in seen:
            continue
        seen.add(pc)
        c, _, off, _ = struct.unpack_from("<BBhi", code, pc * 8)
        if c == df.EXIT:
            continue
        if c == df.JA:
            todo.append(pc + 1 + off)
        elif c in (df.JNE, df.JSET):
            todo += [pc + 1, pc + 1 + off]
        else:
            todo.append(pc + 1)
    assert all(0 <= p < n for p in seen)
    return seen


def reference(rules: list[df.Rule], typ: int, access: int, major: int, minor: int) -> int:
    for bit, letter in ((1, "m"), (2, "r"), (4, "w")):
        if access and not access & bit:
            continue
        verdict = False
        for allow, t, ma, mi, acc in rules:
            if (letter in acc and (t == "a" or {"b": 1, "c": 2}[t] == typ)
                    and ma in (None, major) and mi in (None, minor)):
                verdict = allow
        if not verdict:
            return 0
    return 1


PROBES = [(t, a, ma, mi) for t in (1, 2) for a in (1, 2, 4, 6, 7)
          for ma, mi in ((1, 3), (1, 5), (8, 0), (8, 1), (136, 4), (5, 1), (10, 200))]


def check(rules: list[df.Rule]) -> bytes:
    code = df.program(rules)
    assert reachable(code) == set(range(len(code) // 8)), "unreachable code: the verifier refuses it"
    for probe in PROBES:
        assert run(code, *probe) == reference(rules, *probe), (rules, probe)
    return code


def test_dockers_default_rules_allow_the_standard_nodes_and_deny_the_disk() -> None:
    rules = devices.parse({"devices": [{"allow": False, "access": "rwm"}]})
    code = check(rules)
    blk, chr_ = 1, 2
    rd, wr, mk = 2, 4, 1
    assert run(code, blk, rd, 8, 0) == 0           # open /dev/sda for reading
    assert run(code, blk, rd | wr, 8, 0) == 0
    assert run(code, blk, mk, 8, 0) == 1           # mknod alone is allowed (b *:* m)
    for minor in (3, 5, 7, 8, 9):                  # null zero full random urandom
        assert run(code, chr_, rd | wr, 1, minor) == 1
    assert run(code, chr_, rd, 1, 1) == 0          # /dev/mem
    assert run(code, chr_, rd | wr, 5, 0) == 1     # /dev/tty
    assert run(code, chr_, rd | wr, 136, 12) == 1  # /dev/pts/12
    assert run(code, blk, rd, 136, 12) == 0        # ... but not as a block device


def test_last_matching_rule_wins_per_kind_of_access() -> None:
    allow_all_then_deny_w = [(True, "c", 1, 3, "rwm"), (False, "c", 1, 3, "w")]
    code = check(allow_all_then_deny_w)
    assert run(code, 2, 2, 1, 3) == 1      # read still allowed
    assert run(code, 2, 4, 1, 3) == 0
    assert run(code, 2, 6, 1, 3) == 0      # O_RDWR asks for w too: denied, not skipped
    deny_then_allow = [(False, "a", None, None, "rwm"), (True, "c", 1, None, "rw")]
    code = check(deny_then_allow)
    assert run(code, 2, 6, 1, 9) == 1 and run(code, 2, 1, 1, 9) == 0
    split = [(True, "c", 1, 3, "r"), (True, "c", 1, 3, "w")]
    assert run(check(split), 2, 6, 1, 3) == 1  # r from one rule, w from another


def test_wildcards_and_no_rules() -> None:
    assert run(check([]), 2, 2, 1, 3) == 0                      # default deny
    code = check([(True, "a", None, None, "rwm")])              # allow everything
    assert all(run(code, *p) == 1 for p in PROBES)
    check([(True, "b", None, 0, "r"), (False, "a", 8, None, "rwm"), (True, "c", None, None, "m")])


def test_request_with_no_access_bits_is_judged_as_every_kind() -> None:
    code = check([(True, "c", 1, 3, "r")])
    assert run(code, 2, 0, 1, 3) == 0
    assert run(check([(True, "c", 1, 3, "rwm")]), 2, 0, 1, 3) == 1


@pytest.mark.parametrize("n", range(1, 4))
def test_every_combination_of_small_rule_lists(n: int) -> None:
    pool: list[df.Rule] = [(False, "a", None, None, "rwm"), (True, "c", 1, None, "rw"),
                           (False, "c", 1, 3, "w"), (True, "b", 8, 0, "m"),
                           (True, "a", None, 5, "r"), (False, "b", None, None, "rm")]
    for rules in itertools.permutations(pool, n):
        check(list(rules))


def test_golden_code_for_one_rule() -> None:
    code = df.program([(True, "c", 1, 3, "r")])
    ops = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    assert ops[:8] == [(df.LDXW, 0x12, 0, 0), (df.AND32, 2, 0, 0xFFFF), (df.LDXW, 0x13, 0, 0),
                       (df.RSH32, 3, 0, 16), (df.LDXW, 0x14, 4, 0), (df.LDXW, 0x15, 8, 0),
                       (df.JNE, 3, 1, 0), (df.MOV32, 3, 0, 7)]
    assert ops[-4:] == [(df.MOV32, 0, 0, 1), (df.EXIT, 0, 0, 0), (df.MOV32, 0, 0, 0), (df.EXIT, 0, 0, 0)]


def test_bad_rules_are_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="access"):
        df.program([(True, "c", 1, 3, "x")])
    with pytest.raises(errors.InvalidArgumentError, match="major"):
        df.program([(True, "c", 1 << 31, 3, "r")])
    with pytest.raises(errors.InvalidArgumentError, match=r"devices\[0\].minor"):
        devices.parse({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 1 << 40}]})


def test_parse_keeps_order_and_wildcards() -> None:
    got = devices.parse({"devices": [{"allow": False}, {"allow": True, "type": "b", "major": 8,
                                                         "access": "r"}]})
    assert got[:2] == [(False, "a", None, None, "rwm"), (True, "b", 8, None, "r")]
    assert got[2:] == [(True, *d) for d in devices.ALLOWED_DEVICES]


def test_a_v2_cgroup_gets_the_filter_and_v1_without_devices_gets_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[df.Rule]]] = []
    monkeypatch.setattr(df, "attach", lambda d, rules: seen.append((d, rules)))

    class V2Like:
        path = "/sys/fs/cgroup/lk/c1"

    assert devices.apply(V2Like(), {"devices": [{"allow": False}]}) is True
    assert seen[0][0] == "/sys/fs/cgroup/lk/c1" and seen[0][1][0] == (False, "a", None, None, "rwm")

    class V1NoDevices:
        path = "/sys/fs/cgroup/memory/lk/c1"

        def controller_dir(self, ctrl: str) -> str | None:
            return None

    assert devices.apply(V1NoDevices(), None) is False


def test_a_real_v2_cgroup_handle_is_attached_at_its_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.cgroups import V2Cgroup

    seen: list[str] = []
    monkeypatch.setattr(df, "attach", lambda d, rules: seen.append(d))
    assert devices.apply(V2Cgroup("/sys/fs/cgroup", "lk/c1"), None) is True
    assert seen == ["/sys/fs/cgroup/lk/c1"]
