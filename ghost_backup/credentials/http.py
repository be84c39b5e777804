"""HTTP for credential sources: the GET of the local proxy, the size cap and deadline on every
answer, and the one retry policy every source shares.

``fetch_credentials`` is the only place that GETs the proxy's JSON endpoint. No error message
ever quotes an answer's body (it may hold a key).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import requests
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from ghost_backup import __version__
from ghost_backup.credentials.model import Credentials, parse_credentials
from ghost_backup.errors import CredentialsDenied, CredentialsInvalid, CredentialsUnavailable
from ghost_backup.settings import CredentialsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = f"ghost-backup/{__version__}"
MAX_BACKOFF_SECONDS = 8.0


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
                raise CredentialsDenied(
                    f"credential proxy denied the request (HTTP {status}): this workload has "
                    "no access policy for the provider right now"
                )
            if status == 404:
                raise CredentialsUnavailable(
                    "credential proxy has no such provider (HTTP 404): check credentials.url"
                )
            if status == 429 or 500 <= status <= 599:
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), cap=settings.max_total_seconds
                )
                raise TransientError(f"HTTP {status}", retry_after)
            if status != 200:
                raise CredentialsUnavailable(
                    f"credential proxy answered HTTP {status}, expected 200")
            ctype = response.headers.get("Content-Type", "")
            if "json" not in ctype.lower():
                # The header is not quoted: no error message carries bytes from the answer.
                raise CredentialsInvalid("credential answer's content type is not JSON")
            return read_capped_body(response, settings.max_body_bytes, deadline)
    except (requests.ConnectionError, requests.Timeout) as err:
        # ReadTimeout while streaming surfaces as ConnectionError too; both can heal.
        raise TransientError(type(err).__name__) from None
    except requests.RequestException as err:
        raise CredentialsUnavailable(f"credential request failed: {type(err).__name__}") from None


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
    Raise CredentialsUnavailable naming ``service`` when the attempts run out.
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
        raise CredentialsUnavailable(
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
    Raise CredentialsDenied on 401/403, CredentialsUnavailable when retries run out or on other
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
