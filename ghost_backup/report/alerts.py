"""Alerts: healthchecks pings and a JSON webhook.

An alert never changes the backup's outcome: delivery failures are logged at error and
swallowed. Every body passes through the redactor, so a key can't leave in an alert.

The pings follow healthchecks' ping API (https://healthchecks.io/docs/http_api/, checked
against its source, healthchecks/healthchecks ``hc/api/views.py``): the configured URL is an
opaque base (``https://hc-ping.com/<uuid>``, ``https://hc.example/ping/<uuid>`` or the slug
form) to which only a suffix is added; ``/start`` when a run starts and ``/<exit status>``
(0-255) when it ends, so the dashboard shows the code; ``?rid=`` pairs the two and must be a
UUID (anything else is answered 400 "invalid uuid format"), so it is derived from the run id
(:func:`build_ping_rid`) and the run id travels in the body. healthchecks keeps the *first*
10,000 bytes of a body and drops the rest; we want the *last* log lines, so the body is cut
here (:func:`build_ping_body`).

Alerts leave the host (healthchecks, a chat webhook), often through a corporate proxy or to
a server with a private CA, so their session honours ``HTTPS_PROXY``/``NO_PROXY``
(``trust_env``) and verifies against the system's CA bundle or ``alerts.ca_bundle``, passed
with every request (a per-request path also stops ``REQUESTS_CA_BUNDLE`` from replacing it).
The credential fetch keeps its own loopback-only session without either
(:func:`ghost_backup.credentials.http.new_session`).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ghost_backup import __version__
from ghost_backup.errors import ExitCode
from ghost_backup.logs import Redactor
from ghost_backup.settings import AlertSettings

if TYPE_CHECKING:  # requests loads with the first alert sent: most runs send none at start
    import requests

log = logging.getLogger(__name__)

# healthchecks' PING_BODY_LIMIT default (hc/settings.py): it stores the first 10,000 bytes.
HEALTHCHECK_BODY_LIMIT = 10_000
# Fixed namespace for the ping's rid: uuid5(namespace, run id) is the same UUID at /start and
# at the end without storing anything (healthchecks' docs allow a deterministic rid).
RID_NAMESPACE = uuid.UUID("924542ab-21ad-4a19-902e-e791c7261c06")
_MAX_EXIT_STATUS = 255  # /<exit status> above 255 is answered 400 "invalid url format"
# Where distributions keep the system CA bundle, first found wins (the list Go's crypto/x509
# and truststore search). Flatcar and Debian: ca-certificates.crt, which
# `update-ca-certificates` rebuilds after a PEM is added under /etc/ssl/certs.
SYSTEM_CA_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),
    Path("/etc/pki/tls/certs/ca-bundle.crt"),
    Path("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"),
    Path("/etc/ssl/cert.pem"),
    Path("/etc/ssl/ca-bundle.pem"),
)


@dataclass(frozen=True)
class AlertEvent:
    """What a finished run tells the alert channels."""

    run_id: str
    outcome: str
    exit_code: int
    message: str
    summary: dict[str, Any]
    log_tail: tuple[str, ...] = ()
    exited: bool = True  # False: killed by a signal (the ping says /fail, not a code)


class AlertSink(Protocol):
    """Where run start and end are reported."""

    def start(self, run_id: str) -> None:
        """Report that a run started."""

    def finish(self, event: AlertEvent) -> None:
        """Report how a run ended."""

    def notice(self, run_id: str, text: str) -> None:
        """Report something that is neither a success nor a failure (no page)."""


class NullAlerts:
    """No alert channel configured."""

    def start(self, run_id: str) -> None:
        """Do nothing."""

    def finish(self, event: AlertEvent) -> None:
        """Do nothing."""

    def notice(self, run_id: str, text: str) -> None:
        """Do nothing."""


def build_webhook_body(event: AlertEvent, host: str) -> dict[str, Any]:
    """Return the webhook's JSON body for ``event``."""
    return {
        "source": "ghost-backup",
        "version": __version__,
        "host": host,
        "run_id": event.run_id,
        "outcome": event.outcome,
        "exit_code": event.exit_code,
        "message": event.message,
        "summary": event.summary,
    }


def build_unit_failure_event(unit: str, env: Mapping[str, str]) -> AlertEvent:
    """Given a failed unit's name and the ``MONITOR_*`` variables systemd (>= 251) gives an
    ``OnFailure=`` handler, return the alert event describing the failure.

    The run's own alert already went out when the supervisor could send it; this one also
    covers what it could not report (watchdog, ``RuntimeMaxSec=``, OOM kill, a crash).
    """
    result = env.get("MONITOR_SERVICE_RESULT") or "unknown"
    how = env.get("MONITOR_EXIT_CODE") or "unknown"
    status = env.get("MONITOR_EXIT_STATUS") or "unknown"
    invocation = env.get("MONITOR_INVOCATION_ID") or ""
    exited = how == "exited" and status.isdigit()
    if exited:
        code = int(status)
        known = {int(c): c.name.lower() for c in ExitCode}.get(code, "unknown exit code")
        ended = f"exit status {code} ({known}, see docs/exit-codes.md)"
    else:
        code = 1
        ended = f"{how} {status}"
    where = f"journalctl -u {unit}" + (f" _SYSTEMD_INVOCATION_ID={invocation}" if invocation
                                       else "")
    return AlertEvent(
        run_id=invocation or "unknown",
        outcome="unit-failed",
        exit_code=code or 1,
        message=f"{unit} failed: result {result}, {ended}; details: {where}",
        summary={"unit": unit, "result": result, "exit_code": how, "exit_status": status,
                 "invocation_id": invocation},
        exited=exited,
    )


def select_ca_bundle(configured: Path | None,
                     is_file: Callable[[Path], bool] = Path.is_file) -> str:
    """Return the CA bundle alerts verify against: ``configured``, else the first system
    bundle found, else certifi's (requests' own default)."""
    if configured is not None:
        return str(configured)
    found = next((path for path in SYSTEM_CA_BUNDLES if is_file(path)), None)
    if found is not None:
        return str(found)
    from requests.utils import DEFAULT_CA_BUNDLE_PATH  # noqa: PLC0415

    return str(DEFAULT_CA_BUNDLE_PATH)


def new_alert_session() -> requests.Session:
    """Return the session for alerts: proxy variables honoured (``trust_env``), unlike the
    credential session."""
    import requests  # noqa: PLC0415

    session = requests.Session()
    session.trust_env = True
    return session


def build_ping_rid(run_id: str) -> str:
    """Return the healthchecks ``rid`` for ``run_id``: a UUID, the same every time."""
    return str(uuid.uuid5(RID_NAMESPACE, run_id))


def build_ping_url(base: str, action: str, run_id: str) -> str:
    """Return ``base`` + ``/action`` (none if empty) with ``rid`` added to its query string.

    The base is opaque (its path may or may not hold ``/ping/``; a slug URL may carry
    ``?create=1``): only the suffix and the ``rid`` parameter are added.
    """
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + (f"/{action}" if action else "")
    query = "&".join(q for q in (parts.query, f"rid={build_ping_rid(run_id)}") if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def build_exit_action(event: AlertEvent) -> str:
    """Return the ping suffix for how ``event`` ended: its exit status, or ``fail``."""
    if event.exited and 0 <= event.exit_code <= _MAX_EXIT_STATUS:
        return str(event.exit_code)
    return "fail"


def build_ping_body(head: Sequence[str], tail: Sequence[str],
                    limit: int = HEALTHCHECK_BODY_LIMIT) -> bytes:
    """Return ``head`` then as many of the newest ``tail`` lines as fit, at most ``limit``
    bytes of UTF-8 in all.

    healthchecks keeps a body's first ``limit`` bytes; the lines that explain a failure are
    the last ones, so older tail lines are dropped here (and counted in a marker line).
    """
    head_bytes = "\n".join(head).encode()[: limit // 2]
    head_text = head_bytes.decode("utf-8", "ignore")
    budget = limit - len(head_text.encode()) - 80  # room for the marker line
    kept: list[str] = []
    for line in reversed(tail):
        size = len(line.encode()) + 1
        if size > budget:
            break
        kept.append(line)
        budget -= size
    kept.reverse()
    lines = [head_text]
    if len(kept) < len(tail):
        lines.append(f"[{len(tail) - len(kept)} earlier log lines cut: healthchecks keeps "
                     f"{limit} bytes]")
    return "\n".join([*lines, *kept]).encode()


class HttpAlerts:
    """Deliver alerts over HTTP to the configured healthcheck and webhook URLs."""

    def __init__(
        self,
        settings: AlertSettings,
        session: requests.Session | None,
        redactor: Redactor,
        *,
        sleep: Callable[[float], None] = time.sleep,
        host: str | None = None,
    ) -> None:
        self._settings = settings
        # None: built at the first POST, so a run with no alert to send at its start never
        # loads the HTTP stack before its credential request (docs/performance.md).
        self._session = session
        self._redactor = redactor
        self._sleep = sleep
        self._host = host or socket.gethostname()
        self._verify = select_ca_bundle(settings.ca_bundle)

    def _post(self, channel: str, url: str, body: bytes, content_type: str) -> None:
        """POST ``body``; retry connection errors, timeouts, 5xx and 429, never another 4xx
        (a refused URL or rid stays refused: healthchecks answers 400/404 the same every time).
        """
        import requests  # noqa: PLC0415 (loaded by the first alert; see __init__)

        if self._session is None:
            self._session = new_alert_session()
        attempts = self._settings.attempts
        for attempt in range(1, attempts + 1):
            try:
                response = self._session.post(
                    url,
                    data=body,
                    headers={"Content-Type": content_type,
                             "User-Agent": f"ghost-backup/{__version__}"},
                    timeout=self._settings.timeout_seconds,
                    allow_redirects=False,
                    verify=self._verify,
                )
            except requests.exceptions.SSLError as err:
                problem = f"SSLError: {_tls_reason(err)}; CA bundle {self._verify}"
            except (requests.RequestException, OSError) as err:  # OSError: CA file missing
                problem = type(err).__name__
            else:
                status = response.status_code
                if status < 300:
                    return
                problem = f"HTTP {status}{_reason(response, self._redactor)}"
                if status < 500 and status not in (408, 429):
                    log.error("alert to %s refused (%s); not retried: check the URL",
                              channel, problem)
                    return
            if attempt < attempts:
                self._sleep(min(2.0 * attempt, 5.0))
        log.error("alert to %s could not be delivered (%s after %d attempts)",
                  channel, problem, attempts)

    def start(self, run_id: str) -> None:
        """Ping ``<healthcheck_url>/start?rid=<uuid of run_id>``."""
        base = self._settings.healthcheck_url
        if base:
            log.info("healthcheck ping id (rid) of run %s: %s", run_id, build_ping_rid(run_id))
            body = f"ghost-backup run {run_id} started on {self._host}"
            self._post("healthcheck", build_ping_url(base, "start", run_id), body.encode(),
                       "text/plain; charset=utf-8")

    def notice(self, run_id: str, text: str) -> None:
        """Ping ``/log?rid=...`` with ``text``: healthchecks records it in the check's log and
        leaves the check's status alone (http_api.md). No webhook: nothing failed."""
        base = self._settings.healthcheck_url
        if base:
            body = f"{self._redactor.redact(text)}\nrun {run_id} on {self._host}"
            self._post("healthcheck", build_ping_url(base, "log", run_id), body.encode(),
                       "text/plain; charset=utf-8")

    def finish(self, event: AlertEvent) -> None:
        """Ping ``/<exit status>`` (with the log tail) and POST the webhook on failure."""
        ok = event.exit_code == 0
        base = self._settings.healthcheck_url
        if base:
            head = [self._redactor.redact(event.message),
                    f"run {event.run_id} on {self._host}: {event.outcome}, exit {event.exit_code}"]
            body = build_ping_body(head, [self._redactor.redact(line)
                                          for line in event.log_tail])
            self._post("healthcheck", build_ping_url(base, build_exit_action(event), event.run_id),
                       body, "text/plain; charset=utf-8")
        if self._settings.webhook_url and (not ok or self._settings.notify_success):
            text = json.dumps(build_webhook_body(event, self._host))
            self._post("webhook", self._settings.webhook_url,
                       self._redactor.redact(text).encode(), "application/json")


def _tls_reason(err: requests.exceptions.SSLError) -> str:
    """Return the short reason of a TLS failure (``certificate verify failed`` and the like)."""
    text = str(err)
    for known in ("certificate verify failed", "hostname mismatch", "wrong version number",
                  "certificate has expired", "self-signed certificate"):
        if known in text:
            return known
    return "handshake failed"


def _reason(response: requests.Response, redactor: Redactor) -> str:
    """Return the start of an error answer's text (healthchecks says why: "invalid uuid
    format"), printable characters only, redacted; empty if there is none."""
    text = response.text[:80].splitlines()[0] if response.text.strip() else ""
    text = "".join(c for c in text if c.isprintable()).strip()
    return f": {redactor.redact(text)}" if text else ""
