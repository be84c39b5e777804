"""Source ``http-json`` (the default): the proxy's ``GET /credentials/<provider>`` contract.

The fetch itself (retries, status mapping, body cap) lives in :mod:`ghost_backup.credentials`;
this adapter only plugs it into the source Protocol. The answer may also be in AWS's
``credential_process`` shape (``AccessKeyId``, ``SecretAccessKey``, ``SessionToken``,
``Expiration``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ghost_backup.settings import Settings, provider_name

if TYPE_CHECKING:
    from ghost_backup.credentials.base import SourceContext
    from ghost_backup.credentials.model import Credentials


class HttpJsonSource:
    """Credentials from the local credential proxy's JSON endpoint."""

    name = "http-json"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def provider(self) -> str:
        """Return the last segment of ``credentials.url`` unless a name is configured."""
        creds = self._settings.credentials
        return creds.provider_name or provider_name(creds.url)

    def fetch(self, ctx: SourceContext) -> Credentials:
        """GET the endpoint (with retries) and return validated credentials."""
        # Imported here, not at the top: the HTTP stack (requests, urllib3, tenacity) loads
        # while the run waits on its source listing, not before it (docs/performance.md).
        from ghost_backup.credentials.http import fetch_credentials  # noqa: PLC0415

        return fetch_credentials(ctx.session, self._settings.credentials, run_id=ctx.run_id,
                                 clock=ctx.clock, sleep=ctx.sleep)
