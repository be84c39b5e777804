"""Credentials: the validated key set and the pure rules that make an answer acceptable.

``parse_`` and ``build_`` functions are pure and table-tested. Keys become
:class:`pydantic.SecretStr` the moment they are parsed, and no error message ever quotes the
answer's body (it may hold a key). Fetching lives in :mod:`ghost_backup.credentials.http`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from ghost_backup.errors import CredentialsInvalid
from ghost_backup.settings import CredentialsSettings

# Unix seconds beyond this are milliseconds or nonsense; refuse rather than guess.
_MAX_UNIX_SECONDS = 32503680000  # year 3000
# ASCII digits only: str.isdigit() is also true for "²" and other digits int() refuses, and a
# length cap keeps int() away from its 4300-digit limit.
_UNIX_SECONDS_RE = re.compile(r"\A[0-9]{1,12}\Z")


class Credentials(BaseModel):
    """Validated, short-lived S3 credentials. Keys never print (SecretStr)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_key_id: SecretStr
    secret_access_key: SecretStr
    session_token: SecretStr | None = None
    expires_at: datetime

    def secret_values(self) -> tuple[str, ...]:
        """Return every secret string held, for value-based redaction."""
        values = [self.access_key_id, self.secret_access_key, self.session_token]
        return tuple(v.get_secret_value() for v in values if v is not None)


def parse_expires_at(value: object) -> datetime:
    """Given the ``expires_at`` field, return an aware UTC datetime.

    Accepted: RFC 3339 / ISO 8601 text with ``Z`` or an explicit offset, or integer Unix
    seconds (as a JSON number or a string of digits). Raise CredentialsInvalid otherwise:
    a timestamp without an offset is ambiguous and is refused.
    """
    if isinstance(value, bool):
        raise CredentialsInvalid("expires_at must be a timestamp, not a boolean")
    if isinstance(value, str) and value.strip().isdigit():
        if not _UNIX_SECONDS_RE.match(value.strip()):
            raise CredentialsInvalid("expires_at is not a plausible Unix time in seconds")
        value = int(value.strip())
    if isinstance(value, int):
        seconds = value
        if not 0 < seconds < _MAX_UNIX_SECONDS:
            raise CredentialsInvalid("expires_at is not a plausible Unix time in seconds")
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, float):
        if not math.isfinite(value) or not 0 < value < _MAX_UNIX_SECONDS:
            raise CredentialsInvalid("expires_at is not a plausible Unix time in seconds")
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str) or not value.strip():
        raise CredentialsInvalid("expires_at is missing or empty")
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CredentialsInvalid("expires_at is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise CredentialsInvalid("expires_at has no timezone offset (ambiguous); refusing")
    try:
        # 9999-12-31T23:59:59-14:00 parses, but lies past datetime.max in UTC.
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise CredentialsInvalid("expires_at is out of range") from None


def _secret_field(payload: Mapping[str, Any], name: str, *, required: bool) -> SecretStr | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise CredentialsInvalid(f"credential field {name} is {kind}")
    stripped = value.strip()
    if not stripped or stripped.lower() in ("null", "none", "undefined"):
        if not required:
            return None
        raise CredentialsInvalid(f"credential field {name} is empty or a placeholder")
    if stripped != value or any(ch in value for ch in "\r\n\0"):
        raise CredentialsInvalid(f"credential field {name} holds whitespace or control characters")
    # S3 keys and session tokens are printable ASCII. Anything else (a lone surrogate from a
    # "\ud800" escape cannot even be encoded into rclone's environment) is not a key.
    if not (value.isascii() and value.isprintable()):
        raise CredentialsInvalid(
            f"credential field {name} holds characters outside printable ASCII")
    return SecretStr(value)


def parse_secret_field(
    payload: Mapping[str, Any], name: str, *, required: bool
) -> SecretStr | None:
    """Given a decoded answer, return field ``name`` as a secret (None if optional and absent).

    Raise CredentialsInvalid if it is missing, not a string, empty, a placeholder such as
    ``"null"``, or padded with whitespace or control characters.
    """
    return _secret_field(payload, name, required=required)


def check_lifetime(
    expires_at: datetime, *, now: datetime, settings: CredentialsSettings
) -> timedelta:
    """Return the remaining validity; raise CredentialsInvalid if it is outside the window."""
    remaining = expires_at - now
    seconds = remaining.total_seconds()
    if seconds <= 0:
        raise CredentialsInvalid(f"credentials already expired at {expires_at.isoformat()}")
    if seconds < settings.min_validity_seconds:
        raise CredentialsInvalid(
            f"credentials expire in {int(seconds)}s, below credentials.min_validity_seconds "
            f"({settings.min_validity_seconds}s): too soon to finish a backup"
        )
    if seconds > settings.max_validity_seconds:
        raise CredentialsInvalid(
            f"credentials are valid for {int(seconds)}s, above "
            f"credentials.max_validity_seconds ({settings.max_validity_seconds}s): "
            "not short-lived; refusing"
        )
    return remaining


def parse_json_object(body: bytes, *, what: str = "credential answer") -> dict[str, Any]:
    """Given a body, return it decoded as a JSON object; raise CredentialsInvalid otherwise.

    The error never quotes the body: it may hold a key.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, UnicodeDecodeError and int()'s 4300-digit limit;
        # RecursionError a deeply nested array that still fits under the size cap.
        raise CredentialsInvalid(f"{what} is not valid JSON") from None
    if not isinstance(payload, dict):
        raise CredentialsInvalid(f"{what} is a JSON {type(payload).__name__}, not an object")
    return payload


def build_credentials(
    *,
    access_key_id: SecretStr | None,
    secret_access_key: SecretStr | None,
    session_token: SecretStr | None,
    expires_at: datetime,
    now: datetime,
    settings: CredentialsSettings,
) -> Credentials:
    """Return validated credentials after the shared lifetime check (every source ends here).

    Raise CredentialsInvalid if a key is missing or the lifetime is outside the window.
    """
    check_lifetime(expires_at, now=now, settings=settings)
    if access_key_id is None or secret_access_key is None:
        raise CredentialsInvalid("credential keys missing")
    return Credentials(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=session_token,
        expires_at=expires_at,
    )


def parse_process_credentials(
    payload: Mapping[str, Any], *, now: datetime, settings: CredentialsSettings
) -> Credentials:
    """Given an AWS ``credential_process`` object, return validated credentials.

    Shape: ``{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}``.
    A missing ``Expiration`` means long-lived keys in that protocol: refused here.
    """
    version = payload.get("Version", 1)
    if version != 1 or isinstance(version, bool):
        raise CredentialsInvalid("credential_process answer has a Version other than 1")
    access = _secret_field(payload, "AccessKeyId", required=True)
    secret = _secret_field(payload, "SecretAccessKey", required=True)
    token = _secret_field(payload, "SessionToken", required=False)
    if payload.get("Expiration") is None:
        raise CredentialsInvalid(
            "credential_process answer has no Expiration: long-lived keys; refusing"
        )
    return build_credentials(
        access_key_id=access,
        secret_access_key=secret,
        session_token=token,
        expires_at=parse_expires_at(payload["Expiration"]),
        now=now,
        settings=settings,
    )


def parse_credential_object(
    payload: Mapping[str, Any], *, now: datetime, settings: CredentialsSettings
) -> Credentials:
    """Given a decoded answer (proxy contract or ``credential_process``), return credentials.

    The proxy contract is ``access_key_id``, ``secret_access_key``, ``expires_at`` and an
    optional ``session_token``; the ``credential_process`` shape is recognised by its
    ``AccessKeyId`` field. Raise CredentialsInvalid (never quoting the payload) otherwise.
    """
    if "credentialType" in payload and "access_key_id" not in payload:
        # The value is not quoted: no error message carries bytes from the answer.
        raise CredentialsInvalid(
            "credential answer looks like Aembit's Edge API (it has credentialType), not the "
            "http-json contract; no access policy matched or the wrong source is configured"
        )
    if "AccessKeyId" in payload and "access_key_id" not in payload:
        return parse_process_credentials(payload, now=now, settings=settings)
    access = _secret_field(payload, "access_key_id", required=True)
    secret = _secret_field(payload, "secret_access_key", required=True)
    token = _secret_field(payload, "session_token", required=False)
    if "expires_at" not in payload:
        raise CredentialsInvalid("credential field expires_at is missing")
    return build_credentials(
        access_key_id=access,
        secret_access_key=secret,
        session_token=token,
        expires_at=parse_expires_at(payload["expires_at"]),
        now=now,
        settings=settings,
    )


def parse_credentials(
    body: bytes, *, now: datetime, settings: CredentialsSettings
) -> Credentials:
    """Given the proxy's answer body, return validated credentials.

    The body must be a JSON object in the proxy contract's shape (non-empty string ``access_key_id``
    and ``secret_access_key``, an ``expires_at`` inside the accepted window and, optionally,
    a ``session_token``) or in AWS's ``credential_process`` shape. Raise CredentialsInvalid
    (never quoting the body) otherwise.
    """
    return parse_credential_object(parse_json_object(body), now=now, settings=settings)


