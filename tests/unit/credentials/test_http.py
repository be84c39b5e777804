"""The credential fetch's retry policy against the real dev proxy on loopback, with an
injected sleep, so the backoff sequence is asserted without waiting."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ghost_backup.credentials.http import fetch_credentials, new_session
from ghost_backup.errors import CredentialsDenied, CredentialsUnavailable
from ghost_backup.settings import CredentialsSettings
from tests.support.devproxy import DevProxy, ProxyState


@pytest.fixture
def proxy() -> Iterator[DevProxy]:
    running = DevProxy(ProxyState("AKIDCANARYUNIT0001", "unit-canary-secret-0001")).start()
    yield running
    running.stop()


def _fetch(proxy: DevProxy, sleeps: list[float], **overrides: object) -> object:
    settings = CredentialsSettings.model_validate({
        "url": proxy.url(), "max_attempts": 4, "max_total_seconds": 30,
        "backoff_initial_seconds": 1.0, **overrides,
    })
    return fetch_credentials(new_session(), settings, run_id="unit-run",
                             clock=lambda: datetime.now(UTC), sleep=sleeps.append)


def test_fetch_backs_off_exponentially_with_jitter_then_gives_up(
    proxy: DevProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.state.mode = "status:503"
    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING), pytest.raises(CredentialsUnavailable, match="HTTP 503"):
        _fetch(proxy, sleeps)
    assert len(proxy.state.requests) == 4
    assert len(sleeps) == 3
    for wait, base in zip(sleeps, (1.0, 2.0, 4.0), strict=True):
        assert base <= wait <= base * 1.5
    retries = [r.getMessage() for r in caplog.records]
    assert retries == [f"credential fetch attempt {n}/4 failed (HTTP 503); retrying"
                       for n in (1, 2, 3)]
    assert not any("127.0.0.1" in line or "transient" in line for line in retries)


def test_fetch_waits_what_retry_after_asks(proxy: DevProxy) -> None:
    proxy.state.mode = "retry-after:7"
    sleeps: list[float] = []
    creds = _fetch(proxy, sleeps)
    assert sleeps == [7.0]
    assert creds is not None


@pytest.mark.parametrize(("status", "error"), [
    (401, CredentialsDenied), (403, CredentialsDenied), (404, CredentialsUnavailable),
])
def test_fetch_never_retries_401_403_404(
    proxy: DevProxy, status: int, error: type[Exception]
) -> None:
    proxy.state.mode = f"status:{status}"
    sleeps: list[float] = []
    with pytest.raises(error):
        _fetch(proxy, sleeps)
    assert len(proxy.state.requests) == 1
    assert sleeps == []
