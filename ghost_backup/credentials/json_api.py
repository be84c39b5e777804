"""POSTing JSON to a credential API (Aembit's Edge API, Cloudflare's API), retrying what heals.

Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter
(honouring Retry-After) within ``credentials.max_attempts`` and ``max_total_seconds``, the
same policy as the http-json fetch, and bodies go through the same size cap and deadline
(:func:`ghost_backup.credentials.read_capped_body`). Every other status is handed back to
the caller, which knows what that API means by it. Bodies are never quoted in errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from ghost_backup.credentials.base import SourceContext
from ghost_backup.credentials.http import (
    USER_AGENT,
    TransientError,
    parse_retry_after,
    read_capped_body,
    run_with_retries,
)
from ghost_backup.errors import CredentialsUnavailable
from ghost_backup.settings import CredentialsSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiAnswer:
    """An answer that is not worth retrying: its status, content type and (capped) body."""

    status: int
    content_type: str
    body: bytes


def _post_once(
    ctx: SourceContext,
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    settings: CredentialsSettings,
    what: str,
    proxies: Mapping[str, str] | None,
    verify: bool | str,
) -> ApiAnswer:
    all_headers = {
        "User-Agent": USER_AGENT,
        "X-Request-ID": ctx.run_id,
        "Accept": "application/json",
        # No compression: the size cap then bounds what is held in memory, byte for byte.
        "Accept-Encoding": "identity",
        "Cache-Control": "no-store",
        **headers,
    }
    timeout = (settings.connect_timeout_seconds, settings.timeout_seconds)
    deadline = time.monotonic() + settings.connect_timeout_seconds + settings.timeout_seconds
    try:
        with ctx.session.post(
            url, json=dict(payload), headers=all_headers, timeout=timeout, stream=True,
            allow_redirects=False, proxies=dict(proxies or {}), verify=verify,
        ) as response:
            status = response.status_code
            if status == 429 or 500 <= status <= 599:
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), cap=settings.max_total_seconds
                )
                raise TransientError(f"HTTP {status}", retry_after)
            body = read_capped_body(response, settings.max_body_bytes, deadline,
                                    what=f"{what} answer")
            return ApiAnswer(status, response.headers.get("Content-Type", ""), body)
    except (requests.ConnectionError, requests.Timeout) as err:
        raise TransientError(type(err).__name__) from None
    except requests.RequestException as err:
        raise CredentialsUnavailable(f"{what} request failed: {type(err).__name__}") from None


def post_json(
    ctx: SourceContext,
    url: str,
    payload: Mapping[str, Any],
    *,
    settings: CredentialsSettings,
    what: str,
    headers: Mapping[str, str] | None = None,
    proxies: Mapping[str, str] | None = None,
    verify: bool | str = True,
) -> ApiAnswer:
    """POST ``payload`` as JSON to ``url`` and return the first answer that is not transient.

    Raise CredentialsUnavailable when retries run out or the request cannot be made, and
    CredentialsInvalid when the answer is larger than ``max_body_bytes``.
    """
    return run_with_retries(
        lambda: _post_once(ctx, url, payload, headers=headers or {}, settings=settings,
                           what=what, proxies=proxies, verify=verify),
        settings, sleep=ctx.sleep, what=what, service=what,
    )
