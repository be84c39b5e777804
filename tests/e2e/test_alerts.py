"""Alerts from real runs: what the healthcheck and webhook receive, and that an alert which
cannot be delivered is logged at error but never changes the backup's exit code."""

from __future__ import annotations

import pytest

from ghost_backup.errors import ExitCode
from ghost_backup.report.alerts import build_ping_rid
from tests.helpers import Stack, error_lines, find_canaries, make_tree
from tests.support.devstack import free_port
from tests.support.httpproxy import HttpProxy


def _assert_no_canaries(stack: Stack, *texts: str) -> None:
    assert find_canaries(stack.secrets, texts=[*texts, *stack.alerts.bodies()],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_success_webhook_carries_host_run_id_outcome_and_summary_figures(stack: Stack) -> None:
    make_tree(stack.source, 7)
    stack.overrides["alerts"] = {"notify_success": True}
    done = stack.run("run")
    assert done.returncode == 0, done.stderr
    [hook] = stack.alerts.webhooks()
    assert hook["outcome"] == "success"
    assert hook["exit_code"] == 0
    assert hook["run_id"] in done.stderr
    assert hook["host"]
    assert hook["summary"]["files"] == 7
    assert stack.alerts.ping_actions() == ["start", "exit 0"]
    start, end = stack.alerts.pings()
    assert start.rid == end.rid == build_ping_rid(hook["run_id"])  # a UUID healthchecks accepts
    assert hook["run_id"] in start.body
    assert hook["run_id"] in end.body
    assert f"healthcheck ping id (rid) of run {hook['run_id']}: {start.rid}" in done.stderr
    _assert_no_canaries(stack, done.stderr)


def test_failure_ping_body_holds_the_error_and_the_last_log_lines(stack: Stack) -> None:
    make_tree(stack.source, 2)
    stack.proxy.state.mode = "wrong-keys"  # keys are handed out, then R2 refuses them
    # One attempt: three attempts' 403 lines (below the mirror's prefix) fill the 10 kB body
    # and its tail no longer reaches back to "rclone started".
    stack.overrides["rclone"] = {"extra_args": ["--retries", "1"]}
    done = stack.run("run")
    # The deletion pre-flight lists the backup first: R2's refusal shows there, as 65.
    assert done.returncode == ExitCode.CREDENTIALS_INVALID, done.stderr
    fail = stack.alerts.pings()[-1]
    assert (fail.status, fail.kind, fail.exit_status) == (
        200, "exit", ExitCode.CREDENTIALS_INVALID)
    assert fail.body.splitlines()[0] == (
        "cannot list the backup: the bucket refused the credentials (HTTP 401/403): the proxy "
        "handed out keys R2 does not accept for this bucket")
    assert "credentials received" in fail.body
    _assert_no_canaries(stack, done.stderr)


@pytest.mark.parametrize(("mode", "expected"), [
    ("ok", ExitCode.OK),
    ("status:401", ExitCode.PROXY_DENIED),
])
def test_undeliverable_alerts_are_logged_at_error_and_never_change_the_exit_code(
    stack: Stack, mode: str, expected: ExitCode
) -> None:
    make_tree(stack.source, 2)
    stack.proxy.state.mode = mode
    stack.alerts.answer_with(500)
    stack.overrides["alerts"] = {
        "healthcheck_url": f"http://127.0.0.1:{free_port()}/hc", "notify_success": True,
        "attempts": 1,
    }
    done = stack.run("run")
    assert done.returncode == expected, done.stderr
    undelivered = [line for line in error_lines(done.stderr) if "could not be delivered" in line]
    assert len(undelivered) == 3  # the start ping, the end ping, the webhook
    assert any("alert to webhook could not be delivered (HTTP 500" in line
               for line in undelivered)
    _assert_no_canaries(stack, done.stderr)


def test_alerts_honour_the_proxy_variables_and_the_credential_fetch_ignores_them(
    stack: Stack,
) -> None:
    make_tree(stack.source, 2)
    proxy = HttpProxy()
    try:
        # ALL_PROXY: requests honours it for http:// URLs (our loopback receiver and proxy);
        # rclone (Go) does not read it, so the S3 traffic stays direct.
        done = stack.run("run", env={"ALL_PROXY": proxy.url, "all_proxy": proxy.url})
    finally:
        proxy.stop()
    assert done.returncode == 0, done.stderr
    assert stack.alerts.ping_actions() == ["start", "exit 0"]
    through = [line.split()[1] for line in proxy.seen]
    assert [t.split("?")[0] for t in through] == [
        f"{stack.alerts.healthcheck_url}/start", f"{stack.alerts.healthcheck_url}/0"]
    assert len(stack.proxy.state.requests) == 1  # the fetch went straight to the proxy...
    assert not any("/credentials/" in t for t in through)  # ...never through HttpProxy
    _assert_no_canaries(stack, done.stderr)
