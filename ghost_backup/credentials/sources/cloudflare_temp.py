"""Source ``cloudflare-temp``: mint R2 temporary credentials with Cloudflare's API.

``POST <api>/accounts/{account_id}/r2/temp-access-credentials`` with
``{"bucket", "parentAccessKeyId", "permission": "object-read-write", "ttlSeconds",
"prefixes"}`` answers ``{"success": true, "result": {"accessKeyId", "secretAccessKey",
"sessionToken"}}``, with **no expiry**: it is computed here from the time the request was
sent plus ``ttlSeconds`` (never later than the real expiry). The keys only work together
with the session token, which rclone receives.

The parent API token is never stored by us: either the credential proxy injects the
``Authorization`` header on the way out (``token_from = "proxy"``; we send none), or it is
read from ``$CREDENTIALS_DIRECTORY`` (``token_from = "credential"``). Failures come as
``{"success": false, "errors": [{"code", "message"}]}``, usually with a 4xx status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ghost_backup.credentials.model import (
    Credentials,
    build_credentials,
    parse_json_object,
    parse_secret_field,
)
from ghost_backup.errors import CredentialsDenied, CredentialsInvalid, CredentialsUnavailable
from ghost_backup.host import secret_files
from ghost_backup.settings import CloudflareTempSettings, CredentialsSettings, Settings

if TYPE_CHECKING:  # the HTTP stack loads with the fetch, after the source listing
    from ghost_backup.credentials.base import SourceContext
    from ghost_backup.credentials.json_api import ApiAnswer

log = logging.getLogger(__name__)

WHAT = "Cloudflare API"
PERMISSION = "object-read-write"
# Cloudflare API error codes meaning "who are you / not allowed" (api.cloudflare.com docs).
_DENIED_CODES = frozenset({9103, 9106, 9109, 10000, 10001})


def build_prefixes(settings: Settings) -> tuple[str, ...]:
    """Return the object prefixes the keys are scoped to (destination and archive paths).

    Each ends in ``/`` so that ``backup`` does not also grant ``backup-old/``. Empty when
    the destination is the bucket root (the keys then cover the whole bucket).
    """
    dest = settings.destination
    if not dest.path:
        return ()
    paths = [dest.path] + ([dest.archive_path] if dest.archive_path else [])
    return tuple(f"{p}/" for p in paths)


def build_temp_request(settings: Settings, cf: CloudflareTempSettings) -> dict[str, Any]:
    """Return the temp-access-credentials body: this bucket, these prefixes, the backup window."""
    body: dict[str, Any] = {
        "bucket": settings.destination.bucket,
        "parentAccessKeyId": cf.parent_access_key_id,
        "permission": PERMISSION,
        "ttlSeconds": cf.ttl_seconds,
    }
    prefixes = build_prefixes(settings)
    if prefixes:
        body["prefixes"] = list(prefixes)
    return body


def build_temp_url(settings: Settings, cf: CloudflareTempSettings) -> str:
    """Return the endpoint URL of the temp-access-credentials call."""
    account = cf.account_id or settings.destination.account_id
    return f"{cf.api_base_url.rstrip('/')}/accounts/{account}/r2/temp-access-credentials"


def format_api_errors(payload: Mapping[str, Any]) -> str:
    """Given a Cloudflare answer, return its integer error codes as ``error codes N, M``.

    Messages are not quoted: no error message carries text from an answer (Cloudflare's codes
    are documented; the text may come from whatever stands between us and it).
    """
    codes = sorted(_error_codes(payload))[:5]
    return "error codes " + ", ".join(str(c) for c in codes) if codes else "no error codes"


def _error_codes(payload: Mapping[str, Any]) -> set[int]:
    errors = payload.get("errors")
    if not isinstance(errors, list):
        return set()
    return {e["code"] for e in errors
            if isinstance(e, dict) and isinstance(e.get("code"), int)
            and not isinstance(e.get("code"), bool) and 0 <= e["code"] < 10**9}


def parse_temp_answer(
    answer: ApiAnswer, *, requested_at: datetime, ttl_seconds: int,
    settings: CredentialsSettings,
) -> Credentials:
    """Given Cloudflare's answer, return credentials expiring ``ttl_seconds`` after the request.

    Raise CredentialsDenied on 401/403 or authentication error codes, CredentialsUnavailable on
    other
    failures Cloudflare reports, CredentialsInvalid when a 200 is not a usable success.
    """
    try:
        payload = parse_json_object(answer.body, what=f"{WHAT} answer")
    except CredentialsInvalid:
        if answer.status == 200:
            raise
        payload = {}
    details = format_api_errors(payload)
    if answer.status in (401, 403) or (
        answer.status != 200 and _error_codes(payload) & _DENIED_CODES
    ):
        raise CredentialsDenied(
            f"{WHAT} refused the temporary-credentials request (HTTP {answer.status}; "
            f"{details}): the parent API token was missing or lacks R2 write permission "
            "(did the credential proxy inject it?)"
        )
    if answer.status != 200:
        raise CredentialsUnavailable(
            f"{WHAT} failed to mint temporary credentials (HTTP {answer.status}; {details})"
        )
    if payload.get("success") is not True:
        raise CredentialsInvalid(f"{WHAT} answered 200 without success ({details})")
    result = payload.get("result")
    if not isinstance(result, dict):
        raise CredentialsInvalid(f"{WHAT} answer has no result object")
    access = parse_secret_field(result, "accessKeyId", required=True)
    secret = parse_secret_field(result, "secretAccessKey", required=True)
    # Temporary R2 keys are useless without their session token: require it.
    token = parse_secret_field(result, "sessionToken", required=True)
    return build_credentials(
        access_key_id=access,
        secret_access_key=secret,
        session_token=token,
        expires_at=requested_at + timedelta(seconds=ttl_seconds),
        now=requested_at,
        settings=settings,
    )


class CloudflareTempSource:
    """R2 temporary credentials minted for exactly this bucket and prefix."""

    name = "cloudflare-temp"

    def __init__(self, settings: Settings, cf: CloudflareTempSettings) -> None:
        self._settings = settings
        self._cf = cf

    @property
    def provider(self) -> str:
        """Return ``cloudflare-temp:<bucket>`` unless a name is configured."""
        return (self._settings.credentials.provider_name
                or f"{self.name}:{self._settings.destination.bucket}")

    def _headers(self, ctx: SourceContext) -> dict[str, str]:
        cf = self._cf
        headers: dict[str, str] = {}
        if self._settings.destination.jurisdiction != "default":
            # Buckets in a jurisdiction are addressed with this header (R2 API docs).
            headers["cf-r2-jurisdiction"] = self._settings.destination.jurisdiction
        if cf.token_from == "credential":  # noqa: S105 - a mode name, not a password
            path = secret_files.credential_path(ctx.env, cf.token_credential)
            token = secret_files.read_secret_token(path, what="Cloudflare parent API token")
            ctx.remember([token.get_secret_value()])
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        return headers

    def fetch(self, ctx: SourceContext) -> Credentials:
        """Mint temporary credentials (see module doc) and return them validated."""
        from ghost_backup.credentials.json_api import post_json  # noqa: PLC0415 (see http_json)

        cf = self._cf
        body = build_temp_request(self._settings, cf)
        headers = self._headers(ctx)
        proxies = {"http": cf.proxy_url, "https": cf.proxy_url} if cf.proxy_url else None
        verify: bool | str = str(cf.ca_bundle) if cf.ca_bundle is not None else True
        requested_at = ctx.clock()
        answer = post_json(ctx, build_temp_url(self._settings, cf), body,
                           settings=self._settings.credentials, what=WHAT,
                           headers=headers, proxies=proxies, verify=verify)
        origin = ("injected by the proxy" if headers.get("Authorization") is None
                  else f"from credential {cf.token_credential}")
        log.info("%s: requested %s keys for bucket %s prefixes %s, ttl %ds (parent token %s)",
                 WHAT, PERMISSION, body["bucket"], body.get("prefixes", ["(whole bucket)"]),
                 cf.ttl_seconds, origin)
        return parse_temp_answer(answer, requested_at=requested_at,
                                 ttl_seconds=cf.ttl_seconds, settings=self._settings.credentials)
