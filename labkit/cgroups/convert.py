"""Version conversions, one function each: cgroup v1 values <-> cgroup v2 values.

Resources (base.py) is version-independent; these turn its fields into what a backend writes.
Each function names where its formula comes from, so a learner can compare.
"""

from __future__ import annotations

import math

from labkit import errors

__all__ = [
    "DEFAULT_PERIOD_US",
    "SHARES_MAX",
    "SHARES_MIN",
    "WEIGHT_MAX",
    "WEIGHT_MIN",
    "blkio_weight_to_io_weight",
    "cpu_max",
    "io_weight_to_blkio_weight",
    "shares_to_weight",
    "swap_v2",
    "weight_to_shares",
]

SHARES_MIN, SHARES_MAX = 2, 262144  # cpu.shares range, kernel/sched (MIN_SHARES, MAX_SHARES)
WEIGHT_MIN, WEIGHT_MAX = 1, 10000  # cpu.weight / io.weight range, cgroup-v2.rst
DEFAULT_PERIOD_US = 100_000  # CFS default period, sched-bwc.rst


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares [2..262144] -> v2 cpu.weight [1..10000]; 0 stays 0 ("unset").

    The quadratic-in-log2 curve of opencontainers/cgroups ConvertCPUSharesToCgroupV2Value
    (runc PR #4785) and crun's convert_shares_to_weight (crun issue #1721): it maps the
    minimum, the default and the maximum onto each other (2->1, 1024->100, 262144->10000),
    which the older linear formula 1 + (shares-2)*9999/262142 did not (1024 -> 39).
    """
    if shares == 0:
        return 0
    if shares <= SHARES_MIN:
        return WEIGHT_MIN
    if shares >= SHARES_MAX:
        return WEIGHT_MAX
    lg = math.log2(shares)
    exponent = (lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0
    return math.ceil(math.pow(10.0, exponent))


def weight_to_shares(weight: int) -> int:
    """v2 cpu.weight [1..10000] -> v1 cpu.shares: the inverse of shares_to_weight.

    Solves lg^2 + 125*lg = 612*(log10(weight) + 7/34) for lg = log2(shares), rounds down,
    then steps up to the smallest shares that maps back to ``weight`` (the forward map rounds
    up), so shares_to_weight(weight_to_shares(w)) == w.
    """
    if weight == 0:
        return 0
    if weight <= WEIGHT_MIN:
        return SHARES_MIN
    if weight >= WEIGHT_MAX:
        return SHARES_MAX
    c = 612.0 * (math.log10(weight) + 7.0 / 34.0)
    lg = (-125.0 + math.sqrt(125.0 * 125.0 + 4.0 * c)) / 2.0
    shares = max(SHARES_MIN, min(SHARES_MAX, math.floor(math.pow(2.0, lg))))
    while shares < SHARES_MAX and shares_to_weight(shares) < weight:
        shares += 1
    return shares


def cpu_max(quota_us: int | None, period_us: int | None) -> str:
    """CFS quota/period -> the v2 ``cpu.max`` line "QUOTA PERIOD" (cgroup-v2.rst, "cpu.max").

    quota None or -1 means no limit ("max"); period None means the kernel default 100ms.
    """
    q = "max" if quota_us is None or quota_us < 0 else str(quota_us)
    return f"{q} {DEFAULT_PERIOD_US if period_us is None else period_us}"


def swap_v2(memory_swap: int, memory: int | None) -> int:
    """Docker's --memory-swap (memory+swap total) -> v2 ``memory.swap.max`` (swap alone).

    Rules of opencontainers/cgroups ConvertMemorySwapToCgroupV2Value: -1 stays unlimited;
    an unlimited memory with unset swap means unlimited swap; otherwise swap = total - memory,
    which needs a memory limit and total >= memory.  Returns -1 for "max".

    Raises:
        InvalidArgumentError: total below the memory limit, or a swap limit without memory limit.
    """
    if memory == -1 and memory_swap == 0:
        return -1
    if memory_swap in (-1, 0):
        return memory_swap
    if memory is None or memory in (0, -1):
        raise errors.InvalidArgumentError(
            "memory_swap_max", "a swap limit needs a memory limit (memory_max)",
            hint="Docker semantics: memory_swap_max is memory+swap, so set memory_max too",
        )
    if memory_swap < memory:
        raise errors.InvalidArgumentError(
            "memory_swap_max", f"{memory_swap} is below memory_max {memory}",
            hint="Docker semantics: memory_swap_max is memory+swap, so it must be >= memory_max",
        )
    return memory_swap - memory


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio.weight [10..1000] -> v2 io.weight [1..10000]; 0 stays 0 ("unset").

    Linear map of opencontainers/cgroups ConvertBlkIOToIOWeightValue: 1 + (w-10)*9999/990.
    """
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def io_weight_to_blkio_weight(weight: int) -> int:
    """v2 io.weight [1..10000] -> v1 blkio.weight [10..1000]: the inverse linear map."""
    if weight == 0:
        return 0
    return 10 + (weight - 1) * 990 // 9999
