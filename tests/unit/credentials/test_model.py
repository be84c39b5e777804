"""Credential answers, good and bad: parse_credentials is pure and fails closed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ghost_backup.credentials.http import parse_retry_after
from ghost_backup.credentials.model import parse_credentials, parse_expires_at
from ghost_backup.errors import CredentialsInvalid
from ghost_backup.settings import CredentialsSettings

NOW = datetime(2026, 11, 26, 2, 0, 0, tzinfo=UTC)
SETTINGS = CredentialsSettings()
AK, SK = "AKCANARY000111", "sk-canary-very-secret-value"


def _body(**overrides: Any) -> bytes:
    payload: dict[str, Any] = {"access_key_id": AK, "secret_access_key": SK,
                               "expires_at": "2026-11-26T03:00:00Z"}
    payload.update(overrides)
    return json.dumps({k: v for k, v in payload.items() if v is not _DROP}).encode()


_DROP = object()


def test_contract_answer_parses_into_secrets() -> None:
    creds = parse_credentials(_body(), now=NOW, settings=SETTINGS)
    assert creds.access_key_id.get_secret_value() == AK
    assert creds.secret_access_key.get_secret_value() == SK
    assert creds.session_token is None
    assert creds.expires_at == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    assert AK not in repr(creds)
    assert SK not in str(creds)


def test_session_token_is_kept_and_empty_one_dropped() -> None:
    assert parse_credentials(_body(session_token="tok-123456"), now=NOW,
                             settings=SETTINGS).session_token is not None
    assert parse_credentials(_body(session_token=""), now=NOW,
                             settings=SETTINGS).session_token is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>login</html>", "not valid JSON"),
        (b'{"access_key_id": ', "not valid JSON"),
        (b"[]", "JSON list"),
        (b'"ok"', "JSON str"),
        (b"{}", "access_key_id is missing"),
        (_body(access_key_id=_DROP), "access_key_id is missing"),
        (_body(secret_access_key=_DROP), "secret_access_key is missing"),
        (_body(expires_at=_DROP), "expires_at is missing"),
        (_body(access_key_id=None), "access_key_id is missing"),
        (_body(access_key_id="null"), "placeholder"),
        (_body(secret_access_key=""), "empty"),
        (_body(secret_access_key="   "), "empty"),
        (_body(access_key_id=12345), "int, not a string"),
        (_body(expires_at="2026-11-26T01:00:00Z"), "already expired"),
        (_body(expires_at="2026-11-26T02:01:00Z"), "min_validity_seconds"),
        (_body(expires_at="2026-12-26T02:00:00Z"), "not short-lived"),
        (_body(expires_at="next tuesday"), "not an RFC 3339"),
        (_body(expires_at="2026-11-26T03:00:00"), "no timezone"),
        (_body(expires_at=None), "missing or empty"),
        (_body(expires_at=True), "boolean"),
        (json.dumps({"credentialType": "Unknown", "data": {}}).encode(), "Aembit"),
    ],
)
def test_bad_answers_are_refused_without_quoting_secrets(body: bytes, reason: str) -> None:
    with pytest.raises(CredentialsInvalid, match=reason) as info:
        parse_credentials(body, now=NOW, settings=SETTINGS)
    assert SK not in info.value.message
    assert AK not in info.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-26T03:00:00Z", datetime(2026, 11, 26, 3, tzinfo=UTC)),
        ("2026-11-26T03:00:00.123456z", datetime(2026, 11, 26, 3, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-26T04:00:00+01:00", datetime(2026, 11, 26, 3, tzinfo=UTC)),
        (1795662000, datetime(2026, 11, 26, 3, tzinfo=UTC)),
        ("1795662000", datetime(2026, 11, 26, 3, tzinfo=UTC)),
    ],
)
def test_expires_at_accepts_rfc3339_with_offset_and_unix_seconds(
    value: object, expected: datetime
) -> None:
    assert parse_expires_at(value) == expected


@pytest.mark.parametrize("value", ["", "2026-11-26 03:00", "soon", 1795662000000, -5, 0])
def test_expires_at_refuses_ambiguous_or_implausible(value: object) -> None:
    with pytest.raises(CredentialsInvalid):
        parse_expires_at(value)


def test_validity_window_edges() -> None:
    ok = (NOW + timedelta(seconds=SETTINGS.min_validity_seconds + 1)).isoformat()
    assert parse_credentials(_body(expires_at=ok), now=NOW, settings=SETTINGS)
    far = (NOW + timedelta(seconds=SETTINGS.max_validity_seconds + 1)).isoformat()
    with pytest.raises(CredentialsInvalid):
        parse_credentials(_body(expires_at=far), now=NOW, settings=SETTINGS)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("3", 3.0), ("9999", 45.0), ("-1", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("nan", None)],
)
def test_retry_after_is_capped(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, cap=45.0) == expected
