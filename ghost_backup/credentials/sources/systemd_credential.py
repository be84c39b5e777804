"""Source ``systemd-credential``: a JSON credential handed over by systemd.

The unit's ``LoadCredential=<name>:<path or AF_UNIX socket>`` (or ``SetCredentialEncrypted=``)
puts the file ``$CREDENTIALS_DIRECTORY/<name>`` in memory, readable by the unit only; a
socket is read once per start, so whatever broker sits behind it sees one request per run.
The content is the proxy's JSON contract or ``credential_process`` JSON. A missing file is a failing
source (69); an empty file, or one readable by others, is refused as invalid (65).
"""

from __future__ import annotations

from ghost_backup.credentials.base import SourceContext
from ghost_backup.credentials.model import Credentials, parse_credentials
from ghost_backup.host import secret_files
from ghost_backup.settings import Settings, SystemdCredentialSettings


class SystemdCredentialSource:
    """Credentials read from ``$CREDENTIALS_DIRECTORY/<name>``."""

    name = "systemd-credential"

    def __init__(self, settings: Settings, section: SystemdCredentialSettings) -> None:
        self._settings = settings
        self._credential = section.name

    @property
    def provider(self) -> str:
        """Return ``systemd-credential:<name>`` unless a name is configured."""
        return self._settings.credentials.provider_name or f"{self.name}:{self._credential}"

    def fetch(self, ctx: SourceContext) -> Credentials:
        """Read, check and parse the credential file."""
        path = secret_files.credential_path(ctx.env, self._credential)
        body = secret_files.read_private_file(
            path, max_bytes=self._settings.credentials.max_body_bytes, what="systemd credential"
        )
        return parse_credentials(body, now=ctx.clock(), settings=self._settings.credentials)
