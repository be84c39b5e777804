"""Alert delivery against a real loopback receiver (and a black hole), with an injected
sleep: what each channel receives, retries, timeouts, redaction, and failures swallowed."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from ghost_backup import __version__
from ghost_backup.credentials.http import new_session
from ghost_backup.logs import Redactor
from ghost_backup.report.alerts import AlertEvent, HttpAlerts
from ghost_backup.settings import AlertSettings
from tests.receiver import AlertReceiver
from tests.support.devproxy import Blackhole

SECRET = "gbs-unit-canary-Zq8Vx2"
FAILED = AlertEvent(
    run_id="20261126T020000Z-abc123", outcome="failure", exit_code=69,
    message="credential proxy unavailable after retries (last error: ConnectionError)",
    summary={"bytes": 0, "files": 0}, log_tail=("credential request: run_id=...",
                                                f"rclone: oops {SECRET}"),
)
OK = AlertEvent(run_id="20261126T020000Z-def456", outcome="success", exit_code=0,
                message="backup finished", summary={"bytes": 10, "files": 1})


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    server = AlertReceiver()
    yield server
    server.stop()


def _alerts(receiver: AlertReceiver, sleeps: list[float], **overrides: object) -> HttpAlerts:
    settings = AlertSettings.model_validate({
        "healthcheck_url": receiver.healthcheck_url, "webhook_url": receiver.webhook_url,
        **overrides,
    })
    redactor = Redactor()
    redactor.add([SECRET])
    return HttpAlerts(settings, new_session(), redactor, sleep=sleeps.append, host="ghost-01")


def test_failure_pings_fail_with_redacted_log_tail_and_posts_the_webhook_json(
    receiver: AlertReceiver,
) -> None:
    alerts = _alerts(receiver, [])
    alerts.start(FAILED.run_id)
    alerts.finish(FAILED)
    paths = [r.path for r in receiver.received]
    rid = f"rid={FAILED.run_id}"
    assert paths[:2] == [f"/hc/3f1c/start?{rid}", f"/hc/3f1c/fail?{rid}"]
    fail_body = receiver.pings()[1].body
    assert fail_body.splitlines()[0] == FAILED.message
    assert "credential request: run_id=..." in fail_body
    assert "rclone: oops ****" in fail_body
    [hook] = receiver.webhooks()
    assert hook == {
        "source": "ghost-backup", "version": __version__, "host": "ghost-01",
        "run_id": FAILED.run_id, "outcome": "failure", "exit_code": 69,
        "message": FAILED.message, "summary": {"bytes": 0, "files": 0},
    }
    assert all(SECRET not in body for body in receiver.bodies())


def test_success_pings_the_bare_url_and_posts_the_webhook_only_if_asked(
    receiver: AlertReceiver,
) -> None:
    _alerts(receiver, []).finish(OK)
    assert [r.path for r in receiver.received] == [f"/hc/3f1c?rid={OK.run_id}"]
    _alerts(receiver, [], notify_success=True).finish(OK)
    assert [h["outcome"] for h in receiver.webhooks()] == ["success"]


def test_undeliverable_alert_is_retried_then_logged_at_error_never_raised(
    receiver: AlertReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer_with(500)
    sleeps: list[float] = []
    with caplog.at_level(logging.ERROR):
        _alerts(receiver, sleeps, attempts=3).finish(FAILED)
    assert len(receiver.pings()) == 3
    assert len(receiver.webhooks()) == 3
    assert len(sleeps) == 4  # two waits per channel
    assert [r.getMessage() for r in caplog.records] == [
        "alert to healthcheck could not be delivered (HTTP 500 after 3 attempts)",
        "alert to webhook could not be delivered (HTTP 500 after 3 attempts)",
    ]


def test_alert_to_an_endpoint_that_never_answers_gives_up_within_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hole = Blackhole()
    try:
        settings = AlertSettings(webhook_url=hole.url, timeout_seconds=0.5, attempts=2)
        alerts = HttpAlerts(settings, new_session(), Redactor(), sleep=lambda _s: None)
        started = time.monotonic()
        with caplog.at_level(logging.ERROR):
            alerts.finish(FAILED)
        assert time.monotonic() - started < 3
    finally:
        hole.close()
    assert [r.getMessage() for r in caplog.records] == [
        "alert to webhook could not be delivered (ConnectTimeout after 2 attempts)"]
