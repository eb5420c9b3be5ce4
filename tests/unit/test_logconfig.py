"""LogConfig at create: moby's checks, order and words; labkit's gaps refused, not ignored."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.containers.logconfig import check_log_config
from labkit.engine.daemon.errmap import message_of, status_of


def _refusal(lc: dict[str, object]) -> tuple[int, str]:
    with pytest.raises(errors.LabkitError) as exc:
        check_log_config(lc)
    return status_of(exc.value), message_of(exc.value)


@pytest.mark.parametrize(("lc", "status", "message"), [
    ({"Type": "nosuch"}, 400, "logger: no log driver named 'nosuch' is registered"),
    ({"Type": "nosuch", "Config": {"mode": "x"}}, 400, "logger: logging mode not supported: x"),
    ({"Config": {"max-buffer-size": "1m"}}, 400,
     "logger: max-buffer-size option is only supported with 'mode=non-blocking'"),
    ({"Config": {"nosuch": "1"}}, 400, "unknown log opt 'nosuch' for json-file log driver"),
    ({"Config": {"max-file": "0"}}, 400, "max-file cannot be less than 1"),
    ({"Config": {"compress": "true", "max-file": "3"}}, 400,
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
])
def test_docker_words(lc: dict[str, object], status: int, message: str) -> None:
    assert _refusal(lc) == (status, message)


@pytest.mark.parametrize("lc", [{"Type": "journald"}, {"Config": {"mode": "non-blocking"}},
                                {"Config": {"labels-regex": "x"}}, {"Config": {"env-regex": "A"}}])
def test_what_labkit_lacks_is_501(lc: dict[str, object]) -> None:
    assert _refusal(lc)[0] == 501


def test_accepted() -> None:
    assert check_log_config({}) == {"Type": "json-file", "Config": {}}
    got = check_log_config({"Config": {"max-size": "1m", "max-file": "2", "mode": "blocking"}})
    assert got == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    assert check_log_config({"Type": "none", "Config": {"x": "y"}})["Type"] == "none"
