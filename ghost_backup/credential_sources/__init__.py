"""Credential sources: one adapter per way of getting just-in-time R2 keys.

``credentials.source`` picks one; each returns the same validated
:class:`~ghost_backup.credentials.Credentials` (after the shared ``check_lifetime``) and
raises the same errors (77 denied, 69 unavailable or failing, 65 invalid answer), so the
orchestrator's audit line, redaction and rclone bounds are identical for all of them.
See docs/credentials.md for which source fits which deployment.
"""

from __future__ import annotations

from collections.abc import Callable

from ghost_backup.credential_sources.aembit_edge import AembitEdgeSource
from ghost_backup.credential_sources.base import CredentialSource, SourceContext
from ghost_backup.credential_sources.cloudflare_temp import CloudflareTempSource
from ghost_backup.credential_sources.command import CommandSource
from ghost_backup.credential_sources.http_json import HttpJsonSource
from ghost_backup.credential_sources.systemd_credential import SystemdCredentialSource
from ghost_backup.settings import Settings

__all__ = ["CredentialSource", "SourceContext", "build_source"]


def build_source(settings: Settings) -> CredentialSource:
    """Return the adapter named by ``settings.credentials.source``."""
    kinds: dict[str, Callable[[Settings], CredentialSource]] = {
        "http-json": HttpJsonSource,
        "aembit-edge": AembitEdgeSource,
        "cloudflare-temp": CloudflareTempSource,
        "command": CommandSource,
        "systemd-credential": SystemdCredentialSource,
    }
    return kinds[settings.credentials.source](settings)
