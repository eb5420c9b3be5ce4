"""labkit._units.human_duration against go-units HumanDuration's documented outputs."""

from __future__ import annotations

import pytest

from labkit._units import human_duration

M, H, D = 60, 3600, 86400


@pytest.mark.parametrize(("secs", "text"), [
    (0, "Less than a second"), (0.45, "Less than a second"), (1, "1 second"),
    (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
    (3599, "59 minutes"), (3600, "About an hour"),
    (H + 29 * M, "About an hour"), (H + 31 * M, "2 hours"),  # hours round half up
    (3 * H + 29 * M, "3 hours"), (3 * H + 31 * M, "4 hours"),
    (47 * H, "47 hours"), (48 * H, "2 days"), (13 * D + 5 * H, "13 days"),
    (14 * D, "2 weeks"), (30 * D, "4 weeks"), (44 * D, "6 weeks"), (59 * D, "8 weeks"),
    (60 * D, "2 months"), (13 * 30 * D, "13 months"), (720 * D, "24 months"),
    (730 * D, "2 years"), (744 * D, "2 years"), (3 * 365 * D + 60 * D, "3 years"),
])
def test_go_units_boundaries(secs: float, text: str) -> None:
    assert human_duration(secs) == text
