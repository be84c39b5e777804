"""Credentials: fetch just-in-time R2 keys from the local credential proxy and validate them.

``parse_`` functions are pure and table-tested; ``fetch_credentials`` is the only place that
talks HTTP. Keys become :class:`pydantic.SecretStr` the moment they are parsed, and no error
message ever quotes the answer's body (it may hold a key).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from ghost_backup import __version__
from ghost_backup.errors import CredentialsInvalid, ProxyDenied, ProxyUnavailable
from ghost_backup.settings import CredentialsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = f"ghost-backup/{__version__}"
# Unix seconds beyond this are milliseconds or nonsense; refuse rather than guess.
_MAX_UNIX_SECONDS = 32503680000  # year 3000
MAX_BACKOFF_SECONDS = 8.0


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


@dataclass(frozen=True)
class CredentialRequest:
    """What an operator needs to match this run with the proxy's audit log."""

    run_id: str
    provider: str
    requested_at: datetime


class TransientError(Exception):
    """A failure a later attempt may heal (refused, reset, timeout, 429, 5xx).

    Raised by one attempt and caught by :func:`run_with_retries`; it never leaves the
    credential sources' retry loop. ``reason`` names the error type or status, never a body.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def parse_expires_at(value: object) -> datetime:
    """Given the ``expires_at`` field, return an aware UTC datetime.

    Accepted: RFC 3339 / ISO 8601 text with ``Z`` or an explicit offset, or integer Unix
    seconds (as a JSON number or a string of digits). Raise CredentialsInvalid otherwise:
    a timestamp without an offset is ambiguous and is refused.
    """
    if isinstance(value, bool):
        raise CredentialsInvalid("expires_at must be a timestamp, not a boolean")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        seconds = int(value)
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
    return parsed.astimezone(UTC)


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
    except (UnicodeDecodeError, json.JSONDecodeError):
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
    """Given a decoded answer (ticket shape or ``credential_process`` shape), return credentials.

    The ticket's shape is ``access_key_id``, ``secret_access_key``, ``expires_at`` and an
    optional ``session_token``; the ``credential_process`` shape is recognised by its
    ``AccessKeyId`` field. Raise CredentialsInvalid (never quoting the payload) otherwise.
    """
    if "credentialType" in payload and "access_key_id" not in payload:
        raise CredentialsInvalid(
            f"credential answer looks like Aembit's Edge API (credentialType="
            f"{str(payload.get('credentialType'))[:32]!r}), not the http-json contract; "
            "no access policy matched or the wrong source is configured"
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

    The body must be a JSON object in the ticket's shape (non-empty string ``access_key_id``
    and ``secret_access_key``, an ``expires_at`` inside the accepted window and, optionally,
    a ``session_token``) or in AWS's ``credential_process`` shape. Raise CredentialsInvalid
    (never quoting the body) otherwise.
    """
    return parse_credential_object(parse_json_object(body), now=now, settings=settings)


def parse_retry_after(value: str | None, *, cap: float) -> float | None:
    """Given a Retry-After header, return seconds to wait (capped), or None if absent/odd."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


def read_capped_body(
    response: requests.Response, limit: int, deadline: float, *, what: str = "credential answer"
) -> bytes:
    """Stream the body: refuse it past ``limit`` bytes, give up past ``deadline``.

    The read timeout only bounds each socket read; a body trickling in just faster than
    that would otherwise hold the run for as long as the sender likes. Every credential
    source that speaks HTTP reads its answers through here.
    """
    too_big = CredentialsInvalid(f"{what} is larger than {limit} bytes; refusing")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        # read1 returns whatever has arrived, so the deadline is checked as bytes trickle in.
        while chunk := response.raw.read1(8192):
            size += len(chunk)
            if size > limit:
                raise too_big
            if time.monotonic() > deadline:
                raise requests.Timeout("credential answer arrived too slowly")
            chunks.append(chunk)
    except urllib3.exceptions.TimeoutError:
        raise requests.ReadTimeout("credential answer stopped arriving") from None
    except urllib3.exceptions.HTTPError as err:
        raise requests.ConnectionError(type(err).__name__) from None
    return b"".join(chunks)


def _get_once(
    session: requests.Session,
    url: str,
    *,
    run_id: str,
    settings: CredentialsSettings,
) -> bytes:
    headers = {
        "User-Agent": USER_AGENT,
        "X-Request-ID": run_id,
        "Accept": "application/json",
        # No compression: the size cap then bounds what is held in memory, byte for byte.
        "Accept-Encoding": "identity",
        "Cache-Control": "no-store",
    }
    timeout = (settings.connect_timeout_seconds, settings.timeout_seconds)
    deadline = time.monotonic() + settings.connect_timeout_seconds + settings.timeout_seconds
    try:
        with session.get(
            url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
        ) as response:
            status = response.status_code
            if status in (401, 403):
                raise ProxyDenied(
                    f"credential proxy denied the request (HTTP {status}): this workload has "
                    "no access policy for the provider right now"
                )
            if status == 404:
                raise ProxyUnavailable(
                    "credential proxy has no such provider (HTTP 404): check credentials.url"
                )
            if status == 429 or 500 <= status <= 599:
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), cap=settings.max_total_seconds
                )
                raise TransientError(f"HTTP {status}", retry_after)
            if status != 200:
                raise ProxyUnavailable(f"credential proxy answered HTTP {status}, expected 200")
            ctype = response.headers.get("Content-Type", "")
            if "json" not in ctype.lower():
                raise CredentialsInvalid(
                    f"credential answer has content type {ctype[:40]!r}, not JSON"
                )
            return read_capped_body(response, settings.max_body_bytes, deadline)
    except (requests.ConnectionError, requests.Timeout) as err:
        # ReadTimeout while streaming surfaces as ConnectionError too; both can heal.
        raise TransientError(type(err).__name__) from None
    except requests.RequestException as err:
        raise ProxyUnavailable(f"credential request failed: {type(err).__name__}") from None


def run_with_retries(
    attempt: Callable[[], T],
    settings: CredentialsSettings,
    *,
    sleep: Callable[[float], None],
    what: str,
    service: str,
) -> T:
    """Call ``attempt`` until it returns, retrying :class:`TransientError` only.

    The one retry policy of every credential source: exponential backoff from
    ``backoff_initial_seconds`` with jitter, or the server's Retry-After, within
    ``max_attempts`` and ``max_total_seconds``. Each retry logs the attempt number and the
    error *type* (tenacity's stock sleep logger would print exception text: not here).
    Raise ProxyUnavailable naming ``service`` when the attempts run out.
    """
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return float(exc.retry_after)
        base = min(settings.backoff_initial_seconds * 2.0 ** (state.attempt_number - 1),
                   MAX_BACKOFF_SECONDS)
        return base + random.uniform(0, base / 2)  # noqa: S311 - jitter, not crypto

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, TransientError) else type(exc).__name__
        log.warning("%s attempt %d/%d failed (%s); retrying",
                    what, state.attempt_number, settings.max_attempts, reason)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=(stop_after_attempt(settings.max_attempts)
              | stop_after_delay(settings.max_total_seconds)),
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except TransientError as err:
        raise ProxyUnavailable(
            f"{service} unavailable after retries (last error: {err.reason})"
        ) from None


def fetch_credentials(
    session: requests.Session,
    settings: CredentialsSettings,
    *,
    run_id: str,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> Credentials:
    """Fetch and validate credentials from ``settings.url``, retrying what can heal.

    Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and
    jitter (honouring Retry-After) within ``max_attempts`` and ``max_total_seconds``.
    Raise ProxyDenied on 401/403, ProxyUnavailable when retries run out or on other
    statuses, CredentialsInvalid when the answer is not usable.
    """
    body = run_with_retries(
        lambda: _get_once(session, settings.url, run_id=run_id, settings=settings),
        settings, sleep=sleep, what="credential fetch", service="credential proxy",
    )
    return parse_credentials(body, now=clock(), settings=settings)


def new_session() -> requests.Session:
    """Return an HTTP session that ignores proxy variables and .netrc for the loopback proxy."""
    session = requests.Session()
    session.trust_env = False
    return session
