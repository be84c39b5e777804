"""Settings that bound how long a failing run can take and when rclone counts as stalled."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ghost_backup.settings import CredentialsSettings, RcloneSettings


def test_default_credential_fetch_gives_up_well_within_a_minute() -> None:
    c = CredentialsSettings()
    # No attempt starts after max_total_seconds; the last one is bounded by its timeouts
    # (the body has a whole-answer deadline of connect + read timeout, not per read).
    worst = c.max_total_seconds + c.connect_timeout_seconds + c.timeout_seconds
    assert worst <= 45


def test_stall_timeout_must_exceed_twice_the_stats_interval() -> None:
    assert RcloneSettings(stall_timeout_seconds=3, stats_interval_seconds=1)
    with pytest.raises(ValidationError, match="more than twice stats_interval_seconds"):
        RcloneSettings(stall_timeout_seconds=20, stats_interval_seconds=10)


@pytest.mark.parametrize("value", [0, -1, 31])
def test_backoff_initial_seconds_is_bounded(value: float) -> None:
    with pytest.raises(ValidationError):
        CredentialsSettings(backoff_initial_seconds=value)
