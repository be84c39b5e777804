"""Alerts: healthchecks.io-style pings and a JSON webhook.

An alert never changes the backup's outcome: delivery failures are logged at error and
swallowed. Every body passes through the redactor, so a key can't leave in an alert.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from ghost_backup import __version__
from ghost_backup.errors import ExitCode
from ghost_backup.logs import Redactor
from ghost_backup.settings import AlertSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertEvent:
    """What a finished run tells the alert channels."""

    run_id: str
    outcome: str
    exit_code: int
    message: str
    summary: dict[str, Any]
    log_tail: tuple[str, ...] = ()


class AlertSink(Protocol):
    """Where run start and end are reported."""

    def start(self, run_id: str) -> None:
        """Report that a run started."""

    def finish(self, event: AlertEvent) -> None:
        """Report how a run ended."""


class NullAlerts:
    """No alert channel configured."""

    def start(self, run_id: str) -> None:
        """Do nothing."""

    def finish(self, event: AlertEvent) -> None:
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
    if how == "exited" and status.isdigit():
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
    )


class HttpAlerts:
    """Deliver alerts over HTTP to the configured healthcheck and webhook URLs."""

    def __init__(
        self,
        settings: AlertSettings,
        session: requests.Session,
        redactor: Redactor,
        *,
        sleep: Callable[[float], None] = time.sleep,
        host: str | None = None,
    ) -> None:
        self._settings = settings
        self._session = session
        self._redactor = redactor
        self._sleep = sleep
        self._host = host or socket.gethostname()

    def _post(self, channel: str, url: str, body: bytes, content_type: str) -> None:
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
                )
            except requests.RequestException as err:
                problem = type(err).__name__
            else:
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            if attempt < attempts:
                self._sleep(min(2.0 * attempt, 5.0))
        log.error("alert to %s could not be delivered (%s after %d attempts)",
                  channel, problem, attempts)

    def start(self, run_id: str) -> None:
        """Ping ``<healthcheck_url>/start``."""
        if self._settings.healthcheck_url:
            url = self._settings.healthcheck_url.rstrip("/") + f"/start?rid={run_id}"
            self._post("healthcheck", url, b"", "text/plain")

    def finish(self, event: AlertEvent) -> None:
        """Ping success or ``/fail`` (with the log tail) and POST the webhook."""
        ok = event.exit_code == 0
        if self._settings.healthcheck_url:
            base = self._settings.healthcheck_url.rstrip("/")
            url = (base if ok else base + "/fail") + f"?rid={event.run_id}"
            text = "\n".join([event.message, *event.log_tail])
            self._post("healthcheck", url, self._redactor.redact(text).encode(), "text/plain")
        if self._settings.webhook_url and (not ok or self._settings.notify_success):
            body = json.dumps(build_webhook_body(event, self._host))
            self._post("webhook", self._settings.webhook_url,
                       self._redactor.redact(body).encode(), "application/json")
