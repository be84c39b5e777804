"""Credential parse rules (table-driven) and the retry policy, against a real loopback proxy
with an injected sleep, so the backoff is asserted without waiting."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ghost_backup.credentials import (
    fetch_credentials,
    new_session,
    parse_credentials,
    parse_expires_at,
    parse_retry_after,
)
from ghost_backup.devproxy import DevProxy, ProxyState
from ghost_backup.errors import CredentialsInvalid, ProxyDenied, ProxyUnavailable
from ghost_backup.settings import CredentialsSettings

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
SETTINGS = CredentialsSettings()


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-26T03:00:00Z", datetime(2026, 11, 26, 3, 0, tzinfo=UTC)),
    ("2026-11-26T04:00:00+01:00", datetime(2026, 11, 26, 3, 0, tzinfo=UTC)),
    ("2026-11-26T03:00:00.123456z", datetime(2026, 11, 26, 3, 0, 0, 123456, tzinfo=UTC)),
    (1795662000, datetime(2026, 11, 26, 3, 0, tzinfo=UTC)),
    ("1795662000", datetime(2026, 11, 26, 3, 0, tzinfo=UTC)),
])
def test_parse_expires_at_accepts_rfc3339_with_offset_and_unix_seconds(
    value: object, expected: datetime
) -> None:
    assert parse_expires_at(value) == expected


@pytest.mark.parametrize("value", [
    "2026-11-26T03:00:00", "next tuesday", "", "   ", "null", None, True, 1795662000000,
    float("nan"), -5, [], {},
])
def test_parse_expires_at_refuses_naive_unparseable_and_absurd_values(value: object) -> None:
    with pytest.raises(CredentialsInvalid):
        parse_expires_at(value)


def _body(**fields: object) -> bytes:
    import json  # noqa: PLC0415

    payload: dict[str, object] = {
        "access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t-example",
        "expires_at": (NOW + timedelta(hours=1)).isoformat(),
    }
    payload.update(fields)
    return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()


@pytest.mark.parametrize("token", ["", "  ", None, "null"])
def test_parse_credentials_treats_an_empty_session_token_as_none(token: object) -> None:
    creds = parse_credentials(_body(session_token=token), now=NOW, settings=SETTINGS)
    assert creds.session_token is None  # R2 rejects an empty X-Amz-Security-Token


@pytest.mark.parametrize("fields", [
    {"access_key_id": " AKIDEXAMPLE"},
    {"secret_access_key": "line\nbreak"},
    {"access_key_id": ...},
    {"expires_at": ...},
    {"access_key_id": ["AKID"]},
    {"access_key_id": True},
])
def test_parse_credentials_refuses_padded_control_chars_missing_and_wrong_types(
    fields: dict[str, object]
) -> None:
    with pytest.raises(CredentialsInvalid) as info:
        parse_credentials(_body(**fields), now=NOW, settings=SETTINGS)
    assert "s3cr3t-example" not in info.value.message
    assert "AKIDEXAMPLE" not in info.value.message


def test_parse_retry_after_caps_and_ignores_http_dates() -> None:
    assert parse_retry_after("3", cap=10) == 3
    assert parse_retry_after("120", cap=10) == 10
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", cap=10) is None
    assert parse_retry_after("-1", cap=10) is None
    assert parse_retry_after(None, cap=10) is None


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
    with caplog.at_level(logging.WARNING), pytest.raises(ProxyUnavailable, match="HTTP 503"):
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
    (401, ProxyDenied), (403, ProxyDenied), (404, ProxyUnavailable),
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
