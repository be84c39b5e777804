"""What every credential source shares: the context it runs in and the adapter Protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the HTTP stack and the models load with the fetch (docs/performance.md)
    import requests

    from ghost_backup.credentials.model import Credentials


@dataclass(frozen=True)
class SourceContext:
    """Collaborators of one credential fetch, wired by the orchestrator from its Deps.

    ``remember`` registers secrets met on the way (an identity token, a bearer token, the
    parent API token) with the log redactor the moment they are read, before anything can
    log them.
    """

    session: requests.Session
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    env: Mapping[str, str]
    run_id: str
    remember: Callable[[Iterable[str]], None]


class CredentialSource(Protocol):
    """An adapter that returns validated, short-lived credentials for one run."""

    @property
    def name(self) -> str:
        """Return the source's name as configured (``credentials.source``)."""

    @property
    def provider(self) -> str:
        """Return the provider name logged in the audit line."""

    def fetch(self, ctx: SourceContext) -> Credentials:
        """Fetch and validate credentials (all of them pass ``check_lifetime``).

        Raise CredentialsDenied (77) when refused, CredentialsUnavailable (69) when unreachable or
        failing, CredentialsInvalid (65) when the answer is unusable.
        """
