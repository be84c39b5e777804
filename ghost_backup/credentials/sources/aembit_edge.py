"""Source ``aembit-edge``: Aembit's Edge API, the explicit (non-proxied) way to get credentials.

Two calls (schemas in Aembit's ``get-credentials`` repository, ``gen/schemas/``):

1. ``POST /edge/v1/auth`` with ``{"clientId", "client"}``: the workload proves its identity
   (the Trust Provider's ARN plus evidence such as ``client.oidc.identityToken``) and gets a
   bearer token (``accessToken``, ``tokenType``, ``expiresIn``), valid about an hour.
2. ``POST /edge/v1/credentials`` with that bearer, the same ``client`` and the server workload
   ``{"host", "port", "transportProtocol": "TCP"}``: the answer is
   ``{"credentialType", "expiresAt", "data": {"awsAccessKeyId", ...}}``.

When no access policy matches (wrong workload, outside a time condition) the Edge API still
answers **200** with ``{"credentialType": "Unknown", "data": {}}``; that is a refusal (77),
never a success. Non-expiring credentials (``expiresAt: null``) are refused too.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from ghost_backup.credentials.model import (
    Credentials,
    build_credentials,
    parse_expires_at,
    parse_json_object,
    parse_secret_field,
)
from ghost_backup.errors import CredentialsDenied, CredentialsInvalid, CredentialsUnavailable
from ghost_backup.host import secret_files
from ghost_backup.settings import AembitEdgeSettings, CredentialsSettings, Settings

if TYPE_CHECKING:  # the HTTP stack loads with the fetch, after the source listing
    from ghost_backup.credentials.base import SourceContext
    from ghost_backup.credentials.json_api import ApiAnswer

log = logging.getLogger(__name__)

AUTH_PATH = "/edge/v1/auth"
CREDENTIALS_PATH = "/edge/v1/credentials"
WHAT = "Aembit Edge API"


def build_client(edge: AembitEdgeSettings, identity_token: SecretStr | None) -> dict[str, Any]:
    """Return the ``client`` attestation object sent in both Edge API requests."""
    client: dict[str, Any] = {}
    if edge.identity_kind != "none" and identity_token is not None:
        client[edge.identity_kind] = {"identityToken": identity_token.get_secret_value()}
    if edge.client_workload_id:
        client["os"] = {"environment": {"CLIENT_WORKLOAD_ID": edge.client_workload_id}}
    return client


def build_auth_request(edge: AembitEdgeSettings, client: dict[str, Any]) -> dict[str, Any]:
    """Return the ``/edge/v1/auth`` body."""
    return {"clientId": edge.client_id, "client": client}


def server_target(settings: Settings, edge: AembitEdgeSettings) -> tuple[str, int]:
    """Return the server workload (host, port): configured, or the destination's S3 host."""
    host = edge.server_host or urlsplit(settings.destination.endpoint_url).hostname or ""
    return host, edge.server_port


def build_credentials_request(
    edge: AembitEdgeSettings, client: dict[str, Any], server: tuple[str, int]
) -> dict[str, Any]:
    """Return the ``/edge/v1/credentials`` body for the R2 server workload."""
    host, port = server
    return {
        "client": client,
        "server": {"transportProtocol": "TCP", "host": host, "port": port},
        "credentialType": edge.credential_type,
    }


def parse_auth_token(answer: ApiAnswer) -> SecretStr:
    """Given the ``/edge/v1/auth`` answer, return the bearer token.

    Raise CredentialsDenied on 401/403, CredentialsUnavailable on any other non-200 status,
    CredentialsInvalid if the body is not an ``AuthTokenResponse`` with a bearer token.
    """
    if answer.status in (401, 403):
        raise CredentialsDenied(
            f"{WHAT} refused the workload's attestation (HTTP {answer.status}): check "
            "credentials.aembit_edge.client_id, the identity token and the Trust Provider"
        )
    if answer.status != 200:
        raise CredentialsUnavailable(f"{WHAT} /edge/v1/auth answered HTTP {answer.status}")
    payload = parse_json_object(answer.body, what=f"{WHAT} auth answer")
    token = parse_secret_field(payload, "accessToken", required=True)
    kind = payload.get("tokenType")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise CredentialsInvalid(f"{WHAT} auth answer has tokenType other than Bearer")
    expires_in = payload.get("expiresIn")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise CredentialsInvalid(f"{WHAT} auth answer has no positive integer expiresIn")
    if token is None:  # unreachable: required=True raises first
        raise CredentialsInvalid(f"{WHAT} auth answer has no accessToken")
    return token


def parse_edge_credentials(
    answer: ApiAnswer, *, now: datetime, settings: CredentialsSettings
) -> Credentials:
    """Given the ``/edge/v1/credentials`` answer, return validated credentials.

    Raise CredentialsDenied on 401/403 and on ``credentialType: "Unknown"`` (no policy matched,
    even on 200), CredentialsUnavailable on other statuses, CredentialsInvalid when ``data`` is
    empty or lacks the AWS-style keys, or ``expiresAt`` is null or outside the window.
    """
    if answer.status in (401, 403):
        raise CredentialsDenied(
            f"{WHAT} denied the credential request (HTTP {answer.status}): no access policy "
            "allows this workload now"
        )
    if answer.status != 200:
        raise CredentialsUnavailable(f"{WHAT} /edge/v1/credentials answered HTTP {answer.status}")
    payload = parse_json_object(answer.body, what=f"{WHAT} credentials answer")
    kind = payload.get("credentialType")
    if kind == "Unknown":
        raise CredentialsDenied(
            f"{WHAT} answered credentialType Unknown (HTTP 200): no access policy matched "
            "this workload and server now (check the policy and its time condition)"
        )
    data = payload.get("data")
    if not isinstance(data, dict) or not any(v for v in data.values()):
        raise CredentialsInvalid(f"{WHAT} answered with empty credential data")
    if not isinstance(kind, str) or not kind:
        raise CredentialsInvalid(f"{WHAT} answer has no credentialType")
    access = parse_secret_field(data, "awsAccessKeyId", required=True)
    secret = parse_secret_field(data, "awsSecretAccessKey", required=True)
    token = parse_secret_field(data, "awsSessionToken", required=False)
    if payload.get("expiresAt") is None:
        raise CredentialsInvalid(
            f"{WHAT} answered non-expiring credentials (expiresAt null); refusing"
        )
    return build_credentials(
        access_key_id=access,
        secret_access_key=secret,
        session_token=token,
        expires_at=parse_expires_at(payload["expiresAt"]),
        now=now,
        settings=settings,
    )


class AembitEdgeSource:
    """Credentials from Aembit's Edge API for the R2 server workload."""

    name = "aembit-edge"

    def __init__(self, settings: Settings, edge: AembitEdgeSettings) -> None:
        self._settings = settings
        self._edge = edge
        self._server = server_target(settings, edge)

    @property
    def provider(self) -> str:
        """Return ``aembit-edge:<server host>:<port>`` unless a name is configured."""
        host, port = self._server
        return self._settings.credentials.provider_name or f"{self.name}:{host}:{port}"

    def _identity_token(self, ctx: SourceContext) -> SecretStr | None:
        edge = self._edge
        if edge.identity_kind == "none":
            return None
        if edge.identity_token_file is not None:
            path = edge.identity_token_file
        elif edge.identity_token_credential is not None:
            path = secret_files.credential_path(ctx.env, edge.identity_token_credential)
        else:
            return None
        token = secret_files.read_secret_token(path, what="Aembit identity token")
        ctx.remember([token.get_secret_value()])
        return token

    def fetch(self, ctx: SourceContext) -> Credentials:
        """Authenticate to the Edge API, then request the R2 credentials (see module doc)."""
        from ghost_backup.credentials.json_api import post_json  # noqa: PLC0415 (see http_json)

        edge, creds = self._edge, self._settings.credentials
        base = edge.url.rstrip("/")
        client = build_client(edge, self._identity_token(ctx))
        answer = post_json(ctx, base + AUTH_PATH, build_auth_request(edge, client),
                           settings=creds, what=WHAT)
        bearer = parse_auth_token(answer)
        ctx.remember([bearer.get_secret_value()])
        log.info("%s: workload authenticated; requesting %s credentials for %s:%d",
                 WHAT, edge.credential_type, *self._server)
        answer = post_json(
            ctx, base + CREDENTIALS_PATH, build_credentials_request(edge, client, self._server),
            settings=creds, what=WHAT,
            headers={"Authorization": f"Bearer {bearer.get_secret_value()}"},
        )
        return parse_edge_credentials(answer, now=ctx.clock(), settings=creds)
