"""Restart policy decisions and Docker's backoff (moby restartmanager)."""

from __future__ import annotations

import pytest

from labkit.engine.containers import restart as rp


@pytest.mark.parametrize("policy,code,count,stopped,want", [
    ({"Name": "no"}, 1, 0, False, False),
    ({"Name": "always"}, 0, 5, False, True),
    ({"Name": "always"}, 0, 0, True, False),
    ({"Name": "unless-stopped"}, 0, 0, False, True),
    ({"Name": "on-failure"}, 0, 0, False, False),
    ({"Name": "on-failure"}, 3, 100, False, True),
    ({"Name": "on-failure", "MaximumRetryCount": 2}, 3, 1, False, True),
    ({"Name": "on-failure", "MaximumRetryCount": 2}, 3, 2, False, False),
])
def test_should_restart(policy: dict, code: int, count: int, stopped: bool, want: bool) -> None:
    assert rp.should_restart(policy, code, count, stopped) is want


def test_daemon_start_rules() -> None:
    assert rp.restart_on_daemon_start({"Name": "always"}, True)
    assert rp.restart_on_daemon_start({"Name": "unless-stopped"}, False)
    assert not rp.restart_on_daemon_start({"Name": "unless-stopped"}, True)
    assert not rp.restart_on_daemon_start({"Name": "on-failure"}, False)


def test_backoff_doubles_caps_and_resets() -> None:
    b = rp.Backoff()
    delays = [b.next_delay(0.1) for _ in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == rp.BACKOFF_MAX
    assert b.next_delay(rp.RESET_AFTER) == rp.BACKOFF_START
