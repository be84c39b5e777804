"""`ghost-backup alert --unit NAME`: what ghost-backup-alert@.service runs on OnFailure=."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghost_backup.report.alerts import build_unit_failure_event
from tests.helpers import GHOST_BACKUP, render_toml
from tests.receiver import AlertReceiver

UNIT = "ghost-backup.service"


@pytest.mark.parametrize(
    ("env", "code", "phrase"),
    [
        ({"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_CODE": "exited",
          "MONITOR_EXIT_STATUS": "69", "MONITOR_INVOCATION_ID": "ab12"},
         69, "result exit-code, exit status 69 (proxy_unavailable"),
        ({"MONITOR_SERVICE_RESULT": "watchdog", "MONITOR_EXIT_CODE": "killed",
          "MONITOR_EXIT_STATUS": "ABRT"}, 1, "result watchdog, killed ABRT"),
        ({"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_CODE": "exited",
          "MONITOR_EXIT_STATUS": "42"}, 42, "exit status 42 (unknown exit code"),
        ({}, 1, "result unknown, unknown unknown"),
    ],
)
def test_build_unit_failure_event_names_result_and_status(
    env: dict[str, str], code: int, phrase: str
) -> None:
    event = build_unit_failure_event(UNIT, env)
    assert event.exit_code == code
    assert event.outcome == "unit-failed"
    assert phrase in event.message
    assert event.message.startswith(f"{UNIT} failed: ")


def test_build_unit_failure_event_points_at_the_failed_invocation() -> None:
    event = build_unit_failure_event(UNIT, {"MONITOR_INVOCATION_ID": "0123abcd"})
    assert f"journalctl -u {UNIT} _SYSTEMD_INVOCATION_ID=0123abcd" in event.message
    assert event.run_id == "0123abcd"


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    server = AlertReceiver()
    yield server
    server.stop()


def test_alert_command_logs_crit_and_sends_fail_ping_and_webhook(
    tmp_path: Path, receiver: AlertReceiver
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(render_toml({
        "destination": {"bucket": "ghost-test", "endpoint": "http://127.0.0.1:9"},
        "alerts": {"healthcheck_url": receiver.healthcheck_url,
                   "webhook_url": receiver.webhook_url, "attempts": 1},
    }))
    env = {"PATH": "/usr/bin:/bin", "JOURNAL_STREAM": "", "MONITOR_SERVICE_RESULT": "exit-code",
           "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "69"}
    done = subprocess.run([GHOST_BACKUP, "--config", str(config), "alert", "--unit", UNIT],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{UNIT} failed: result exit-code, exit status 69" in done.stderr
    assert receiver.ping_actions() == ["exit 69"]
    hook = next(r for r in receiver.received if r.path == "/hook")
    body = json.loads(hook.body)
    assert body["outcome"] == "unit-failed"
    assert body["exit_code"] == 69


def test_alert_command_logs_crit_even_when_config_is_missing(tmp_path: Path) -> None:
    done = subprocess.run(
        [GHOST_BACKUP, "--config", str(tmp_path / "absent.toml"), "alert", "--unit", UNIT],
        env={"PATH": "/usr/bin:/bin", "JOURNAL_STREAM": "1:1"},
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 78
    assert f"{UNIT} failed" in done.stderr
