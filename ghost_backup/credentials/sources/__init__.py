"""Credential sources: one adapter per way of getting just-in-time R2 keys.

``credentials.source`` picks one; each returns the same validated
:class:`~ghost_backup.credentials.Credentials` (after the shared ``check_lifetime``) and
raises the same errors (77 denied, 69 unavailable or failing, 65 invalid answer), so the
orchestrator's audit line, redaction and rclone bounds are identical for all of them.
See docs/credentials.md for which source fits which deployment.
"""

from __future__ import annotations

from ghost_backup.credentials.base import CredentialSource, SourceContext
from ghost_backup.credentials.sources.aembit_edge import AembitEdgeSource
from ghost_backup.credentials.sources.cloudflare_temp import CloudflareTempSource
from ghost_backup.credentials.sources.command import CommandSource
from ghost_backup.credentials.sources.http_json import HttpJsonSource
from ghost_backup.credentials.sources.systemd_credential import SystemdCredentialSource
from ghost_backup.settings import (
    AembitEdgeSettings,
    CloudflareTempSettings,
    CommandSettings,
    Settings,
    SystemdCredentialSettings,
)

__all__ = ["CredentialSource", "SourceContext", "build_source"]


def build_source(settings: Settings) -> CredentialSource:
    """Return the adapter named by ``settings.credentials.source``, given its own section."""
    section = settings.credentials.selected_section()
    match section:
        case AembitEdgeSettings():
            return AembitEdgeSource(settings, section)
        case CloudflareTempSettings():
            return CloudflareTempSource(settings, section)
        case CommandSettings():
            return CommandSource(settings, section)
        case SystemdCredentialSettings():
            return SystemdCredentialSource(settings, section)
    return HttpJsonSource(settings)
