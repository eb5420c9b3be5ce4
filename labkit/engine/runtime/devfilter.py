"""The OCI device rules as a BPF_PROG_TYPE_CGROUP_DEVICE program, for cgroup v2.

cgroup v2 has no devices controller files: the kernel runs the eBPF programs attached to a
task's cgroup with attach type BPF_CGROUP_DEVICE on every mknod(2) and every open of a
device node, and refuses with EPERM when one returns 0
(Documentation/admin-guide/cgroup-v2.rst, "Device controller").  The program reads
``struct bpf_cgroup_dev_ctx`` (include/uapi/linux/bpf.h)::

    __u32 access_type;  /* (access << 16) | type: BPF_DEVCG_ACC_* and BPF_DEVCG_DEV_* */
    __u32 major;
    __u32 minor;

runc (libcontainer/cgroups/devices/devicefilter) and crun (src/libcrun/ebpf.c) generate such
a program from the rule list; so does this module, with the semantics of the v1 controller
the rules were written for (cgroup-v1/devices.rst): the last rule that matches a device
decides, and nothing matched means deny.  Access is decided per kind (mknod, read, write):
a request for read+write is allowed only if, for read and for write alike, the last rule
covering that kind allows it.  (Matching a rule only when it covers *every* requested kind,
as runc does, lets "deny w" be skipped by an O_RDWR open that an earlier "allow rwm" then
lets through.)

The program, for each kind k the request asks for, in order m, r, w::

    for each rule, last first, that names k:
        if type/major/minor match: allow -> next kind; deny -> return 0
    return 0
    ...
    return 1
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from labkit import errors

# (allow, type "a"/"b"/"c", major or None for any, minor or None for any, access "rwm" subset)
Rule = tuple[bool, str, int | None, int | None, str]

# include/uapi/linux/bpf.h: enum bpf_cgroup_dev_ctx's type and access bits.
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}
_KINDS = ((ACC_MKNOD, "m"), (ACC_READ, "r"), (ACC_WRITE, "w"))

# Opcodes (include/uapi/linux/bpf_common.h, bpf.h; Documentation/bpf/standardization/
# instruction-set.rst): class | operation | source.  Only these are emitted.
LDXW = 0x61     # BPF_LDX | BPF_MEM | BPF_W:   dst = *(u32 *)(src + off)
AND32 = 0x54    # BPF_ALU | BPF_AND | BPF_K:   dst = (u32)dst & imm
RSH32 = 0x74    # BPF_ALU | BPF_RSH | BPF_K:   dst = (u32)dst >> imm
MOV32 = 0xB4    # BPF_ALU | BPF_MOV | BPF_K:   dst = (u32)imm
JA = 0x05       # BPF_JMP | BPF_JA:            pc += off
JNE = 0x55      # BPF_JMP | BPF_JNE | BPF_K:   if dst != imm: pc += off
JSET = 0x45     # BPF_JMP | BPF_JSET | BPF_K:  if dst & imm: pc += off
EXIT = 0x95     # BPF_JMP | BPF_EXIT:          return r0

# Registers: r1 holds the context on entry; r2..r5 are loaded from it once.
R0, R1, R_TYPE, R_ACC, R_MAJOR, R_MINOR = 0, 1, 2, 3, 4, 5

_IMM_MAX = (1 << 31) - 1   # JNE compares with a sign-extended 32-bit immediate
_OFF_MAX = (1 << 15) - 1   # jump offsets are signed 16-bit


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn``: code, dst_reg (low nibble) and src_reg, s16 off, s32 imm."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


class _Asm:
    """Instructions with symbolic jump targets, resolved by :meth:`code`."""

    def __init__(self) -> None:
        self.ops: list[tuple[int, int, int, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def emit(self, code: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self.ops.append((code, dst, src, off, imm))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ops)

    def code(self) -> bytes:
        out = []
        for pc, (code, dst, src, off, imm) in enumerate(self.ops):
            if isinstance(off, str):
                off = self.labels[off] - (pc + 1)
                if off > _OFF_MAX:
                    raise errors.InvalidArgumentError(
                        "linux.resources.devices", "too many rules for one device program")
            out.append(insn(code, dst, src, off, imm))
        return b"".join(out)


def _check(rule: Rule, i: int) -> None:
    _allow, typ, major, minor, access = rule
    if typ not in ("a", "b", "c") or not access or set(access) - set("rwm"):
        raise errors.InvalidArgumentError(f"device rule {i}", f"bad type {typ!r} or access {access!r}")
    for name, v in (("major", major), ("minor", minor)):
        if v is not None and not 0 <= v <= _IMM_MAX:
            raise errors.InvalidArgumentError(f"device rule {i}.{name}", f"{v} is out of range")


def program(rules: Sequence[Rule]) -> bytes:
    """The eBPF code (8 bytes per instruction) that enforces ``rules`` as described above."""
    for i, r in enumerate(rules):
        _check(r, i)
    a = _Asm()
    a.emit(LDXW, R_TYPE, R1, 0)
    a.emit(AND32, R_TYPE, imm=0xFFFF)
    a.emit(LDXW, R_ACC, R1, 0)
    a.emit(RSH32, R_ACC, imm=16)
    a.emit(LDXW, R_MAJOR, R1, 4)
    a.emit(LDXW, R_MINOR, R1, 8)
    # A request naming no kind at all is judged as one for every kind: never looser than
    # the rules, whatever a future kernel passes.
    a.emit(JNE, R_ACC, off=1, imm=0)
    a.emit(MOV32, R_ACC, imm=ACC_MKNOD | ACC_READ | ACC_WRITE)
    denies = False
    for bit, letter in _KINDS:
        done = f"ok-{letter}"
        a.emit(JSET, R_ACC, off=1, imm=bit)   # this kind requested: judge it
        a.emit(JA, off=done)
        final = False
        for k in range(len(rules) - 1, -1, -1):
            allow, typ, major, minor, access = rules[k]
            if letter not in access:
                continue
            nxt = f"{letter}-{k}"
            conds = 0
            if typ != "a":
                a.emit(JNE, R_TYPE, off=nxt, imm=_TYPES[typ])
                conds += 1
            for reg, v in ((R_MAJOR, major), (R_MINOR, minor)):
                if v is not None:
                    a.emit(JNE, reg, off=nxt, imm=v)
                    conds += 1
            a.emit(JA, off=done if allow else "deny")
            denies = denies or not allow
            a.label(nxt)
            if not conds:
                # Matches everything: the rules before it never decide this kind, and
                # code after it would be unreachable, which the verifier refuses.
                final = True
                break
        if not final:
            a.emit(JA, off="deny")   # no rule matched: default deny
            denies = True
        a.label(done)
    a.emit(MOV32, R0, imm=1)
    a.emit(EXIT)
    if denies:  # emitted only when reachable (the verifier refuses unreachable code)
        a.label("deny")
        a.emit(MOV32, R0, imm=0)
        a.emit(EXIT)
    return a.code()


_WHY = "device rules cannot be enforced without it; refusing to start the container"


def attach(cgroup_dir: str, rules: Sequence[Rule]) -> None:
    """Load the program for ``rules`` and make it the device filter of ``cgroup_dir``.

    It is attached with BPF_F_ALLOW_MULTI, so filters of ancestor cgroups (systemd's) still
    apply too; a filter this cgroup already holds is replaced, atomically where the kernel
    can (BPF_F_REPLACE), else by attaching first and detaching after, so the cgroup is
    never without one.

    Raises UnsupportedError saying why when the kernel cannot load or attach it.
    """
    from labkit._sys import bpf

    code = program(rules)
    try:
        dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise errors.from_errno(err.errno or 0, "open", cgroup_dir) from None
    fds: list[int] = []
    try:
        try:
            prog = bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, code, name="lk_devices")
        except errors.LabkitError as err:
            raise errors.UnsupportedError(
                "cgroup v2 device filter", f"loading the eBPF program failed: {err}; {_WHY}",
                hint=getattr(err, "hint", None)
                or "needs a kernel with CONFIG_CGROUP_BPF and bpf(2), and CAP_SYS_ADMIN/CAP_BPF") from None
        fds.append(prog)
        try:
            flags, old = bpf.prog_query(dirfd, bpf.BPF_CGROUP_DEVICE, target=cgroup_dir)
            olds = [bpf.prog_get_fd_by_id(i) for i in old]
            fds += olds
            if old and not flags & bpf.BPF_F_ALLOW_MULTI:
                # A single program attached without MULTI is replaced by attaching with the
                # same flags (bpf(2) BPF_PROG_ATTACH; kernel/bpf/cgroup.c).
                bpf.prog_attach(dirfd, prog, bpf.BPF_CGROUP_DEVICE, flags, target=cgroup_dir)
            elif len(olds) == 1:
                bpf.prog_attach(dirfd, prog, bpf.BPF_CGROUP_DEVICE,
                                bpf.BPF_F_ALLOW_MULTI | bpf.BPF_F_REPLACE, olds[0],
                                target=cgroup_dir)
            else:
                bpf.prog_attach(dirfd, prog, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI,
                                target=cgroup_dir)
                for fd in olds:
                    bpf.prog_detach(dirfd, fd, bpf.BPF_CGROUP_DEVICE, target=cgroup_dir)
        except errors.LabkitError as err:
            raise errors.UnsupportedError(
                "cgroup v2 device filter", f"attaching it to {cgroup_dir} failed: {err}; {_WHY}",
                hint="the cgroup must be on a cgroup2 mount (cgroup-v2.rst, Device controller)"
            ) from None
    finally:
        for fd in fds:
            os.close(fd)
        os.close(dirfd)


def attached(cgroup_dir: str) -> list[int]:
    """Ids of the device programs attached to ``cgroup_dir`` itself (for tests and inspect)."""
    from labkit._sys import bpf

    dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return bpf.prog_query(dirfd, bpf.BPF_CGROUP_DEVICE, target=cgroup_dir)[1]
    finally:
        os.close(dirfd)
