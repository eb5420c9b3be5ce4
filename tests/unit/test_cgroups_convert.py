"""labkit.cgroups.convert: each conversion against known values from its source."""

from __future__ import annotations

import pytest

from labkit.cgroups import convert
from labkit.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("shares", "weight"),
    # opencontainers/cgroups TestConvertCPUSharesToCgroupV2Value + the default and 2 doublings
    [(0, 0), (1, 1), (2, 1), (1024, 100), (512, 59), (2048, 174), (262144, 10000),
     (500000, 10000)],
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert convert.shares_to_weight(shares) == weight


def test_shares_to_weight_is_monotonic() -> None:
    values = [convert.shares_to_weight(s) for s in range(2, 262145, 97)]
    assert values == sorted(values)


@pytest.mark.parametrize("weight", [1, 2, 39, 59, 100, 174, 500, 5000, 9999, 10000])
def test_weight_to_shares_round_trips(weight: int) -> None:
    assert convert.shares_to_weight(convert.weight_to_shares(weight)) == weight


@pytest.mark.parametrize(("weight", "shares"), [(0, 0), (1, 2), (100, 1024), (10000, 262144)])
def test_weight_to_shares_anchors(weight: int, shares: int) -> None:
    assert convert.weight_to_shares(weight) == shares


@pytest.mark.parametrize(
    ("quota", "period", "line"),
    [(None, None, "max 100000"), (-1, None, "max 100000"), (20000, None, "20000 100000"),
     (50000, 200000, "50000 200000"), (None, 50000, "max 50000")],
)
def test_cpu_max(quota: int | None, period: int | None, line: str) -> None:
    assert convert.cpu_max(quota, period) == line


@pytest.mark.parametrize(
    ("memswap", "memory", "swap"),
    # opencontainers/cgroups TestConvertMemorySwapToCgroupV2Value
    [(0, 0, 0), (-1, 0, -1), (-1, -1, -1), (-1, 1000, -1), (1000, 1000, 0), (2000, 1000, 1000),
     (0, -1, -1)],
)
def test_swap_v2(memswap: int, memory: int, swap: int) -> None:
    assert convert.swap_v2(memswap, memory) == swap


@pytest.mark.parametrize(("memswap", "memory"), [(500, 1000), (1000, None), (1000, 0), (1000, -1)])
def test_swap_v2_rejects(memswap: int, memory: int | None) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        convert.swap_v2(memswap, memory)
    assert exc.value.what == "memory_swap_max"


@pytest.mark.parametrize(
    ("blkio", "io"),
    # opencontainers/cgroups TestConvertBlkIOToIOWeightValue, plus the default 500
    [(0, 0), (10, 1), (500, 4950), (1000, 10000)],
)
def test_io_weight(blkio: int, io: int) -> None:
    assert convert.blkio_weight_to_io_weight(blkio) == io
    assert convert.io_weight_to_blkio_weight(io) == blkio


def test_weight_to_shares_round_trips_on_the_whole_range() -> None:
    assert all(convert.shares_to_weight(convert.weight_to_shares(w)) == w for w in range(1, 10001))
