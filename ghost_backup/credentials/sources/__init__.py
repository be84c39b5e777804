"""Credential sources: one adapter per way of getting just-in-time R2 keys.

``credentials.source`` picks one; each returns the same validated
:class:`~ghost_backup.credentials.Credentials` (after the shared ``check_lifetime``) and
raises the same errors (77 denied, 69 unavailable or failing, 65 invalid answer), so the
orchestrator's audit line, redaction and rclone bounds are identical for all of them.
See docs/credentials.md for which source fits which deployment.
"""

from __future__ import annotations

from ghost_backup.credentials.base import CredentialSource, SourceContext
from ghost_backup.settings import (
    AembitEdgeSettings,
    CloudflareTempSettings,
    CommandSettings,
    Settings,
    SystemdCredentialSettings,
)

__all__ = ["CredentialSource", "SourceContext", "build_source"]


def build_source(settings: Settings) -> CredentialSource:
    """Return the adapter named by ``settings.credentials.source``, given its own section.

    Only the chosen adapter's module is imported: the nightly run's start-up does not pay
    for the others (docs/performance.md, "Start-up").
    """
    section = settings.credentials.selected_section()
    match section:
        case AembitEdgeSettings():
            from ghost_backup.credentials.sources.aembit_edge import (  # noqa: PLC0415
                AembitEdgeSource,
            )

            return AembitEdgeSource(settings, section)
        case CloudflareTempSettings():
            from ghost_backup.credentials.sources.cloudflare_temp import (  # noqa: PLC0415
                CloudflareTempSource,
            )

            return CloudflareTempSource(settings, section)
        case CommandSettings():
            from ghost_backup.credentials.sources.command import CommandSource  # noqa: PLC0415

            return CommandSource(settings, section)
        case SystemdCredentialSettings():
            from ghost_backup.credentials.sources.systemd_credential import (  # noqa: PLC0415
                SystemdCredentialSource,
            )

            return SystemdCredentialSource(settings, section)
    from ghost_backup.credentials.sources.http_json import HttpJsonSource  # noqa: PLC0415

    return HttpJsonSource(settings)
