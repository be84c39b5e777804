"""Alerts over HTTPS and through a proxy, against a TLS receiver whose certificate a
throwaway CA signed and a loopback proxy that records what went through it: alerts trust the
system store or ``alerts.ca_bundle`` (never silently ``REQUESTS_CA_BUNDLE``) and honour
``HTTPS_PROXY``; the credential fetch ignores every proxy variable."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ghost_backup.credentials.http import fetch_credentials, new_session
from ghost_backup.logs import Redactor
from ghost_backup.report.alerts import (
    SYSTEM_CA_BUNDLES,
    AlertEvent,
    HttpAlerts,
    new_alert_session,
    select_ca_bundle,
)
from ghost_backup.settings import AlertSettings, CredentialsSettings
from tests.receiver import AlertReceiver
from tests.support.devproxy import DevProxy, ProxyState
from tests.support.httpproxy import HttpProxy
from tests.support.tls import ThrowawayCA, make_test_ca

FAILED = AlertEvent(run_id="20261126T020000Z-tls001", outcome="failure", exit_code=69,
                    message="credential proxy unavailable", summary={})
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
              "all_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_receiver(ca: ThrowawayCA) -> Iterator[AlertReceiver]:
    server = AlertReceiver(tls=(ca.server_cert, ca.server_key))
    yield server
    server.stop()


@pytest.fixture
def http_proxy() -> Iterator[HttpProxy]:
    proxy = HttpProxy()
    yield proxy
    proxy.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def _alerts(receiver: AlertReceiver, **overrides: object) -> HttpAlerts:
    settings = AlertSettings.model_validate({
        "healthcheck_url": receiver.healthcheck_url, "webhook_url": receiver.webhook_url,
        "attempts": 1, "timeout_seconds": 5, **overrides})
    return HttpAlerts(settings, new_alert_session(), Redactor(), sleep=lambda _s: None,
                      host="ghost-01")


def test_alerts_to_a_private_ca_server_work_with_the_configured_ca_bundle(
    tls_receiver: AlertReceiver, ca: ThrowawayCA, caplog: pytest.LogCaptureFixture
) -> None:
    assert tls_receiver.url.startswith("https://")
    with caplog.at_level(logging.ERROR):
        _alerts(tls_receiver, ca_bundle=str(ca.ca_cert)).finish(FAILED)
    assert tls_receiver.ping_actions() == ["exit 69"]
    assert len(tls_receiver.webhooks()) == 1
    assert caplog.records == []


def test_without_the_ca_the_system_store_refuses_the_private_ca_and_says_so(
    tls_receiver: AlertReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        _alerts(tls_receiver).finish(FAILED)
    assert tls_receiver.received == []
    bundle = select_ca_bundle(None)
    assert [r.getMessage() for r in caplog.records] == [
        f"alert to {channel} could not be delivered (SSLError: certificate verify failed; "
        f"CA bundle {bundle} after 1 attempts)" for channel in ("healthcheck", "webhook")]


def test_requests_ca_bundle_in_the_environment_cannot_replace_the_configured_ca(
    tls_receiver: AlertReceiver, ca: ThrowawayCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    _alerts(tls_receiver, ca_bundle=str(ca.ca_cert)).finish(FAILED)
    assert tls_receiver.ping_actions() == ["exit 69"]


def test_alerts_go_through_https_proxy_and_the_credential_fetch_never_does(
    tls_receiver: AlertReceiver, ca: ThrowawayCA, http_proxy: HttpProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, http_proxy.url)
    _alerts(tls_receiver, ca_bundle=str(ca.ca_cert)).finish(FAILED)
    port = tls_receiver.url.rsplit(":", 1)[1]
    # One tunnel (the session keeps it open for the webhook too), nothing else.
    tunnels = http_proxy.seen
    assert tunnels == [f"CONNECT 127.0.0.1:{port}"]
    assert tls_receiver.ping_actions() == ["exit 69"]
    assert len(tls_receiver.webhooks()) == 1

    creds = DevProxy(ProxyState("AKIDCANARYTLS00001", "tls-canary-secret-0001")).start()
    try:
        settings = CredentialsSettings.model_validate({"url": creds.url()})
        fetch_credentials(new_session(), settings, run_id="tls-run",
                          clock=lambda: datetime.now(UTC), sleep=lambda _s: None)
    finally:
        creds.stop()
    assert len(creds.state.requests) == 1
    assert http_proxy.seen == tunnels  # nothing more: the fetch went straight to loopback


def test_ca_bundle_is_the_configured_file_else_the_first_system_bundle_else_certifi() -> None:
    assert select_ca_bundle(Path("/etc/ghost-backup/ca.pem")) == "/etc/ghost-backup/ca.pem"
    pki = SYSTEM_CA_BUNDLES[1]
    assert select_ca_bundle(None, lambda p: p == pki) == str(pki)
    assert select_ca_bundle(None, lambda p: True) == "/etc/ssl/certs/ca-certificates.crt"
    assert select_ca_bundle(None, lambda p: False).endswith("cacert.pem")  # certifi


def test_a_missing_ca_bundle_file_is_logged_not_raised(
    tls_receiver: AlertReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        _alerts(tls_receiver, ca_bundle=str(tmp_path / "none.pem"),
                webhook_url=None).finish(FAILED)
    assert [r.getMessage() for r in caplog.records] == [
        "alert to healthcheck could not be delivered (OSError after 1 attempts)"]
