"""Alert delivery against a loopback receiver that enforces healthchecks' ping API (and a
black hole), with an injected sleep: what each channel receives, the ping contract (UUID rid,
/start then /<exit status>, body under 10 kB), retries (never of a 4xx), timeouts,
redaction, and failures swallowed."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from ghost_backup import __version__
from ghost_backup.credentials.http import new_session
from ghost_backup.logs import Redactor
from ghost_backup.report.alerts import (
    HEALTHCHECK_BODY_LIMIT,
    AlertEvent,
    HttpAlerts,
    build_exit_action,
    build_ping_body,
    build_ping_rid,
    build_ping_url,
)
from ghost_backup.settings import AlertSettings
from tests.receiver import CHECK_UUID, AlertReceiver
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


def test_failure_pings_start_then_the_exit_status_with_a_uuid_rid_and_posts_the_webhook(
    receiver: AlertReceiver,
) -> None:
    alerts = _alerts(receiver, [])
    alerts.start(FAILED.run_id)
    alerts.finish(FAILED)
    start, end = receiver.pings()
    rid = build_ping_rid(FAILED.run_id)
    assert str(uuid.UUID(rid)) == rid
    assert (start.status, start.kind, start.rid) == (200, "start", rid)
    assert (end.status, end.kind, end.exit_status, end.rid) == (200, "exit", 69, rid)
    assert FAILED.run_id in start.body
    assert end.body.splitlines()[0] == FAILED.message
    assert end.body.splitlines()[1] == f"run {FAILED.run_id} on ghost-01: failure, exit 69"
    assert "credential request: run_id=..." in end.body
    assert "rclone: oops ****" in end.body
    [hook] = receiver.webhooks()
    assert hook == {
        "source": "ghost-backup", "version": __version__, "host": "ghost-01",
        "run_id": FAILED.run_id, "outcome": "failure", "exit_code": 69,
        "message": FAILED.message, "summary": {"bytes": 0, "files": 0},
    }
    assert all(SECRET not in body for body in receiver.bodies())


def test_success_pings_exit_status_0_and_posts_the_webhook_only_if_asked(
    receiver: AlertReceiver,
) -> None:
    _alerts(receiver, []).finish(OK)
    [ping] = receiver.pings()
    assert (ping.status, ping.kind, ping.exit_status) == (200, "exit", 0)
    assert ping.path == f"/ping/{CHECK_UUID}/0?rid={build_ping_rid(OK.run_id)}"
    assert receiver.webhooks() == []
    _alerts(receiver, [], notify_success=True).finish(OK)
    assert [h["outcome"] for h in receiver.webhooks()] == ["success"]


@pytest.mark.parametrize("form", ["healthcheck_url", "hosted_healthcheck_url",
                                  "slug_healthcheck_url"])
def test_every_ping_url_form_is_an_opaque_base_the_service_accepts(
    receiver: AlertReceiver, form: str
) -> None:
    alerts = _alerts(receiver, [], healthcheck_url=getattr(receiver, form) + "/")
    alerts.start(FAILED.run_id)
    alerts.finish(FAILED)
    assert [(p.status, p.kind) for p in receiver.pings()] == [(200, "start"), (200, "exit")]


def test_a_slug_url_keeps_its_own_query_string(receiver: AlertReceiver) -> None:
    base = receiver.slug_healthcheck_url + "?create=1"
    assert build_ping_url(base, "start", "r1") == (
        f"{receiver.slug_healthcheck_url}/start?create=1&rid={build_ping_rid('r1')}")


@pytest.mark.parametrize(("exit_code", "exited", "action"), [
    (0, True, "0"), (75, True, "75"), (143, True, "143"), (255, True, "255"),
    (256, True, "fail"), (-1, True, "fail"), (1, False, "fail"),
])
def test_exit_action_is_the_status_when_healthchecks_accepts_it(
    exit_code: int, exited: bool, action: str
) -> None:
    event = AlertEvent(run_id="r", outcome="failure", exit_code=exit_code, message="m",
                       summary={}, exited=exited)
    assert build_exit_action(event) == action


def test_rid_is_a_stable_uuid_per_run_id() -> None:
    assert build_ping_rid("20261127T235412Z-a7a250") == build_ping_rid("20261127T235412Z-a7a250")
    assert build_ping_rid("20261127T235412Z-a7a250") != build_ping_rid("20261127T235412Z-a7a251")


def test_ping_body_keeps_the_head_and_the_newest_lines_within_10_kb(
    receiver: AlertReceiver,
) -> None:
    tail = tuple(f"line {i:03d} " + "é" * 240 for i in range(60))  # ~29 kB of UTF-8
    event = AlertEvent(run_id="20261126T020000Z-big", outcome="failure", exit_code=1,
                       message="rclone failed", summary={}, log_tail=tail)
    _alerts(receiver, []).finish(event)
    [ping] = receiver.pings()
    assert len(ping.body.encode()) <= HEALTHCHECK_BODY_LIMIT
    assert ping.stored == ping.body  # nothing lost to the service's own cut
    lines = ping.body.splitlines()
    assert lines[0] == "rclone failed"
    assert lines[-1] == tail[-1]
    assert re.fullmatch(r"\[\d+ earlier log lines cut: healthchecks keeps 10000 bytes\]",
                        lines[2])
    assert lines[3:] == list(tail[-len(lines[3:]):])


def test_ping_body_is_not_cut_when_it_fits() -> None:
    assert build_ping_body(["m"], ["a", "b"]) == b"m\na\nb"


def test_undeliverable_alert_is_retried_then_logged_at_error_never_raised(
    receiver: AlertReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer_with(500)
    sleeps: list[float] = []
    with caplog.at_level(logging.ERROR):
        _alerts(receiver, sleeps, attempts=3).finish(FAILED)
    assert len(receiver.pings()) == 3
    assert len(receiver.webhooks()) == 0  # none accepted
    assert len([r for r in receiver.received if r.path == "/hook"]) == 3
    assert len(sleeps) == 4  # two waits per channel
    assert [r.getMessage() for r in caplog.records] == [
        "alert to healthcheck could not be delivered (HTTP 500: error after 3 attempts)",
        "alert to webhook could not be delivered (HTTP 500: error after 3 attempts)",
    ]


@pytest.mark.parametrize(("url", "reason"), [
    ("/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278/0/", "HTTP 404: not found"),
    ("/ping/00000000-0000-0000-0000-000000000000", "HTTP 404: not found"),
    ("/nothing-here", "HTTP 404: not found"),
])
def test_a_refused_ping_is_not_retried_and_says_why(
    receiver: AlertReceiver, caplog: pytest.LogCaptureFixture, url: str, reason: str
) -> None:
    sleeps: list[float] = []
    with caplog.at_level(logging.ERROR):
        _alerts(receiver, sleeps, attempts=3, healthcheck_url=receiver.url + url,
                webhook_url=None).finish(FAILED)
    assert len(receiver.pings()) == 1
    assert sleeps == []
    assert [r.getMessage() for r in caplog.records] == [
        f"alert to healthcheck refused ({reason}); not retried: check the URL"]


def test_receiver_enforces_the_healthchecks_contract_the_old_pings_broke(
    receiver: AlertReceiver,
) -> None:
    """The stand-in answers as healthchecks does: the pre-issue-15 pings (run id as rid)
    are refused, so the old bug fails a test."""
    base = receiver.healthcheck_url
    cases = [
        ("POST", "/start?rid=20261127T235412Z-a7a250", 400),   # not a UUID
        ("POST", "/fail?rid=20261127T235412Z-a7a250", 400),
        ("POST", "/256", 400),                                  # exit status > 255
        ("POST", "/-1", 404), ("GET", "/start/", 404), ("GET", "/bogus", 404),
        ("PUT", "", 405),
        ("POST", "/start?rid=123E4567-E89B-12D3-A456-426614174000", 200),  # case-insensitive
        ("HEAD", "", 200), ("GET", "/", 200), ("POST", "/log", 200), ("POST", "/255", 200),
    ]
    session = new_session()
    got = [(m, t, session.request(m, base + t, timeout=5).status_code) for m, t, _ in cases]
    assert got == cases
    unknown = base.replace("5bf66975", "00000000") + "/start?rid=bad"
    assert session.get(unknown, timeout=5).status_code == 404  # the check lookup comes first
    ok = session.post(base + "/0", data=b"x" * 12_000, timeout=5)
    assert ok.headers["Ping-Body-Limit"] == "10000"
    assert len(receiver.received[-1].stored) == 10_000


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
