"""bpf(2): load an eBPF program, attach it to a cgroup, list and detach what a cgroup holds.

Only what the cgroup v2 device filter needs (labkit.engine.runtime.devices): the kernel's
``union bpf_attr`` (include/uapi/linux/bpf.h) is filled field by field with struct.pack_into
for each command, and only as many bytes as the command uses are passed: the kernel zero
fills the rest, and an older kernel then sees no unknown non-zero tail (bpf(2), "size").

Errors are SyscallErrors naming the command; a refused program carries the verifier's log,
which is the only place the kernel says *why* (Documentation/bpf/verifier.rst).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from labkit import errors
from labkit._sys.libc import libc

# bpf(2) has its own number on each architecture (arch/*/syscall tables).
_NR_BPF = {"x86_64": 321, "aarch64": 280}

# enum bpf_cmd
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
_CMD_NAMES = {BPF_PROG_LOAD: "BPF_PROG_LOAD", BPF_PROG_ATTACH: "BPF_PROG_ATTACH",
              BPF_PROG_DETACH: "BPF_PROG_DETACH", BPF_PROG_GET_FD_BY_ID: "BPF_PROG_GET_FD_BY_ID",
              BPF_PROG_QUERY: "BPF_PROG_QUERY"}

# enum bpf_prog_type / enum bpf_attach_type
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6

# BPF_PROG_ATTACH flags: several programs per cgroup and attach type, all of which must
# allow (ALLOW_MULTI); replace_bpf_fd names the one to swap out atomically (REPLACE).
BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2
BPF_F_REPLACE = 4

_LOG_SIZE = 1 << 16  # verifier log bytes kept for an error message
_LOG_LEVEL = 1


def _nr() -> int:
    machine = os.uname().machine
    try:
        return _NR_BPF[machine]
    except KeyError:
        raise errors.UnsupportedError("bpf", f"no bpf(2) syscall number known for {machine}") from None


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], target: str | None,
         hint: str | None = None) -> int:
    lib = libc()
    nr = _nr()
    while True:
        ret = int(lib.syscall(nr, cmd, attr, len(attr)))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise errors.from_errno(err, f"bpf {_CMD_NAMES.get(cmd, cmd)}", target, hint)


def _addr(buf: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(buf)


def prog_load(prog_type: int, insns: bytes, *, license: str = "Apache-2.0",
              name: str = "", expected_attach_type: int = 0) -> int:
    """BPF_PROG_LOAD: an fd for the verified program ``insns`` (8 bytes per instruction).

    Raises SyscallError; when the verifier refused the program its log is the hint.
    """
    if not insns or len(insns) % 8:
        raise errors.InvalidArgumentError("bpf program", f"{len(insns)} bytes is not eBPF code")
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = ctypes.create_string_buffer(72)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version,
    # prog_flags, prog_name[16], prog_ifindex, expected_attach_type
    struct.pack_into("=IIQQIIQII16sII", attr, 0, prog_type, len(insns) // 8, _addr(code),
                     _addr(lic), _LOG_LEVEL, _LOG_SIZE, _addr(log), 0, 0,
                     name.encode()[:15], 0, expected_attach_type)
    try:
        return _bpf(BPF_PROG_LOAD, attr, name or None)
    except errors.SyscallError as err:
        text = log.value.decode(errors="replace").strip()
        if text:
            err.hint = "verifier log:\n" + text[-4000:]
        raise


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0,
                replace_fd: int = 0, *, target: str | None = None) -> None:
    """BPF_PROG_ATTACH ``prog_fd`` to the cgroup open at ``target_fd``.

    The cgroup keeps its own reference: the program stays attached after ``prog_fd`` is
    closed, until detached or the cgroup is removed.
    """
    attr = ctypes.create_string_buffer(20)
    struct.pack_into("=IIIII", attr, 0, target_fd, prog_fd, attach_type, flags, replace_fd)
    _bpf(BPF_PROG_ATTACH, attr, target)


def prog_detach(target_fd: int, prog_fd: int, attach_type: int, *,
                target: str | None = None) -> None:
    """BPF_PROG_DETACH the program ``prog_fd`` refers to from the cgroup at ``target_fd``."""
    attr = ctypes.create_string_buffer(12)
    struct.pack_into("=III", attr, 0, target_fd, prog_fd, attach_type)
    _bpf(BPF_PROG_DETACH, attr, target)


def prog_query(target_fd: int, attach_type: int, *, target: str | None = None) -> tuple[int, list[int]]:
    """BPF_PROG_QUERY: (attach flags, ids of the programs attached to this cgroup itself).

    Programs inherited from ancestors are not listed (no BPF_F_QUERY_EFFECTIVE).
    """
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(28)
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    struct.pack_into("=IIIIQI", attr, 0, target_fd, attach_type, 0, 0,
                     ctypes.addressof(ids), len(ids))
    _bpf(BPF_PROG_QUERY, attr, target)
    flags, = struct.unpack_from("=I", attr, 12)
    count, = struct.unpack_from("=I", attr, 24)
    return flags, list(ids[:min(count, len(ids))])


def prog_get_fd_by_id(prog_id: int) -> int:
    """BPF_PROG_GET_FD_BY_ID: an fd for a loaded program (needs CAP_SYS_ADMIN)."""
    attr = ctypes.create_string_buffer(4)
    struct.pack_into("=I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr, f"prog id {prog_id}")
