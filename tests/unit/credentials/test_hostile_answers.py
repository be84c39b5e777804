"""Hostile review, items 2 and 7, at the pure core: every hostile answer is CredentialsInvalid
(exit 65), never another exception, and no message quotes the answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ghost_backup.credentials.model import (
    parse_credential_object,
    parse_credentials,
    parse_expires_at,
)
from ghost_backup.errors import CredentialsInvalid
from ghost_backup.settings import CredentialsSettings

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
SETTINGS = CredentialsSettings()


@pytest.mark.parametrize("value", [
    "\u00b2",  # str.isdigit() is True, int() refuses it
    "\u0663",  # an Arabic-Indic digit: int() takes it, we do not
    "9" * 5000,  # past int()'s 4300-digit limit
    10 ** 40,  # milliseconds or nonsense
    "9999-12-31T23:59:59-14:00",  # parses, overflows in UTC
    "0001-01-01T00:00:00+14:00",
    float("nan"),
])
def test_hostile_expires_at_is_credentials_invalid(value: object) -> None:
    with pytest.raises(CredentialsInvalid):
        parse_expires_at(value)


@pytest.mark.parametrize("body", [
    b'{"expires_at": ' + b"9" * 5000 + b"}",
    b'{"x": ' + b"[" * 20000 + b"]" * 20000 + b"}",
    b'{"access_key_id": "AK\\ud800AAAAAAAAAAAA", "secret_access_key": "s3cr3t-s3cr3t-s3cr3t",'
    b' "expires_at": "2026-11-28T03:00:00Z"}',
    b'{"access_key_id": "AK\xc3\xa9AAAAAAAAAAAA", "secret_access_key": "s3cr3t-s3cr3t-s3cr3t",'
    b' "expires_at": "2026-11-28T03:00:00Z"}',
])
def test_hostile_bodies_are_credentials_invalid(body: bytes) -> None:
    with pytest.raises(CredentialsInvalid):
        parse_credentials(body, now=NOW, settings=SETTINGS)


def test_the_refusal_of_an_edge_api_shape_does_not_quote_its_credential_type() -> None:
    with pytest.raises(CredentialsInvalid) as info:
        parse_credential_object({"credentialType": "LEAKME-type", "data": {}}, now=NOW,
                                settings=SETTINGS)
    assert "LEAKME" not in info.value.message
