"""The credential proxy misbehaves in every way we know of; the backup fails closed.

One parametrized suite against the real dev proxy on loopback (and a closed port and a
black hole for the network cases). For every hostile case: the documented exit code, rclone
never started and nothing in the bucket, exactly one error-priority line, an alert delivered
to both channels, nothing left in the runtime dir, zero canary hits.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import pytest

from ghost_backup.errors import ExitCode
from tests.helpers import Stack, error_lines, find_canaries, make_tree
from tests.support.devproxy import Blackhole
from tests.support.devstack import free_port

# Short, so the whole matrix runs in about a minute; the retry logic is the same.
FAST_RETRIES = {
    "timeout_seconds": 1,
    "connect_timeout_seconds": 0.5,
    "max_attempts": 4,
    "max_total_seconds": 2,
    "backoff_initial_seconds": 0.05,
}


@dataclass(frozen=True)
class Case:
    """One hostile behaviour and what the run must do about it."""

    mode: str  # dev proxy mode, or "closed-port" / "blackhole"
    exit_code: ExitCode
    says: str  # a fragment of the one error line
    requests: str = "one"  # at the proxy: "one" (not retried), "several" (retried), "none"


HOSTILE = {
    # The network: retried, then the proxy is declared unavailable.
    "connection refused": Case("closed-port", ExitCode.PROXY_UNAVAILABLE,
                               "ConnectionError", "none"),
    "connect timeout": Case("blackhole", ExitCode.PROXY_UNAVAILABLE, "ConnectTimeout", "none"),
    "connection reset": Case("reset", ExitCode.PROXY_UNAVAILABLE, "ConnectionError", "several"),
    "accepts, never answers": Case("hang", ExitCode.PROXY_UNAVAILABLE, "ReadTimeout", "several"),
    "body trickles slower than the read timeout": Case(
        "trickle:1.5", ExitCode.PROXY_UNAVAILABLE, "Timeout", "several"),
    "body trickles past the whole-answer deadline": Case(
        "trickle:0.2", ExitCode.PROXY_UNAVAILABLE, "Timeout", "several"),
    # HTTP statuses.
    "503 forever": Case("status:503", ExitCode.PROXY_UNAVAILABLE, "HTTP 503", "several"),
    "429 with Retry-After, forever": Case(
        "throttled:1", ExitCode.PROXY_UNAVAILABLE, "HTTP 429", "several"),
    "401": Case("status:401", ExitCode.PROXY_DENIED, "HTTP 401"),
    "403": Case("status:403", ExitCode.PROXY_DENIED, "HTTP 403"),
    "404": Case("status:404", ExitCode.PROXY_UNAVAILABLE, "HTTP 404"),
    "302 (redirects are not followed)": Case(
        "status:302", ExitCode.PROXY_UNAVAILABLE, "HTTP 302"),
    # Bodies that are not the contract.
    "200 with HTML": Case("html", ExitCode.CREDENTIALS_INVALID, "not JSON"),
    "200 with invalid JSON": Case("invalid-json", ExitCode.CREDENTIALS_INVALID, "not valid JSON"),
    "200 with a JSON array": Case("array", ExitCode.CREDENTIALS_INVALID, "JSON list"),
    "200 with a JSON string": Case("string", ExitCode.CREDENTIALS_INVALID, "JSON str"),
    "200 with {}": Case("empty-object", ExitCode.CREDENTIALS_INVALID, "access_key_id is missing"),
    "Aembit Edge shape, credentialType Unknown": Case(
        "aembit-unknown", ExitCode.CREDENTIALS_INVALID, "Aembit"),
    "body over the size cap": Case("huge", ExitCode.CREDENTIALS_INVALID, "larger than"),
    "body over the size cap, no Content-Length": Case(
        "huge:chunked", ExitCode.CREDENTIALS_INVALID, "larger than"),
    "secret_access_key a number": Case(
        "number:secret_access_key", ExitCode.CREDENTIALS_INVALID, "int, not a string"),
    "access_key_id a number": Case(
        "number:access_key_id", ExitCode.CREDENTIALS_INVALID, "int, not a string"),
    "session_token a number": Case(
        "number:session_token", ExitCode.CREDENTIALS_INVALID, "int, not a string"),
    # expires_at outside the accepted window or form.
    "expires_at in the past": Case("expired", ExitCode.CREDENTIALS_INVALID, "already expired"),
    "expires_at below min_validity_seconds": Case(
        "too-soon", ExitCode.CREDENTIALS_INVALID, "min_validity_seconds"),
    "expires_at above max_validity_seconds": Case(
        "too-far", ExitCode.CREDENTIALS_INVALID, "max_validity_seconds"),
    "expires_at unparseable": Case(
        "unparseable-expiry", ExitCode.CREDENTIALS_INVALID, "not an RFC 3339"),
    "expires_at without a timezone": Case(
        "naive-expiry", ExitCode.CREDENTIALS_INVALID, "no timezone"),
    # A hostile review's answers: each once escaped as an unexpected exception (exit 70, no
    # state file, no /fail, no webhook). Now each is a clean 65.
    'expires_at "²" (isdigit, but int() refuses it)': Case(
        "hostile:superscript-expiry", ExitCode.CREDENTIALS_INVALID, "plausible Unix time"),
    "expires_at 9999-12-31T23:59:59-14:00 (overflows in UTC)": Case(
        "hostile:overflow-expiry", ExitCode.CREDENTIALS_INVALID, "out of range"),
    "expires_at a 5,000-digit number": Case(
        "hostile:huge-int-expiry", ExitCode.CREDENTIALS_INVALID, "not valid JSON"),
    "expires_at a 5,000-digit string": Case(
        "hostile:huge-digit-string-expiry", ExitCode.CREDENTIALS_INVALID, "plausible Unix time"),
    "a 20,000-deep nested array under the size cap": Case(
        "hostile:deep-nesting", ExitCode.CREDENTIALS_INVALID, "not valid JSON"),
    "a key holding a lone surrogate": Case(
        "hostile:lone-surrogate", ExitCode.CREDENTIALS_INVALID, "outside printable ASCII"),
    # No error message carries bytes from the answer (checked for "LEAKME" below).
    "Aembit shape with a credentialType to quote": Case(
        "hostile:quoting-credential-type", ExitCode.CREDENTIALS_INVALID, "credentialType"),
    "a content type to quote": Case(
        "hostile:quoting-content-type", ExitCode.CREDENTIALS_INVALID, "content type is not JSON"),
}
for _field in ("access_key_id", "secret_access_key", "expires_at"):
    HOSTILE[f"{_field} missing"] = Case(
        f"missing:{_field}", ExitCode.CREDENTIALS_INVALID, f"{_field} is missing")
    for _how, _label in (("null", "null"), ("null-string", 'the string "null"'),
                         ("empty", "empty"), ("blank", "whitespace")):
        HOSTILE[f"{_field} {_label}"] = Case(
            f"{_how}:{_field}", ExitCode.CREDENTIALS_INVALID, _field)


@pytest.fixture
def hostile_stack(stack: Stack) -> Stack:
    """A stack with a small source tree and fast retries."""
    make_tree(stack.source, 5)
    stack.overrides["credentials"] = dict(FAST_RETRIES)
    return stack


def _point_at(stack: Stack, mode: str) -> Blackhole | None:
    if mode == "closed-port":
        stack.overrides["credentials"]["url"] = (
            f"http://127.0.0.1:{free_port()}/credentials/r2-backup")
    elif mode == "blackhole":
        hole = Blackhole()
        stack.overrides["credentials"]["url"] = hole.url
        return hole
    else:
        stack.proxy.state.mode = mode
    return None


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_proxy_fails_closed_with_alert_and_nothing_written(
    hostile_stack: Stack, case: Case
) -> None:
    stack = hostile_stack
    hole = _point_at(stack, case.mode)
    try:
        done = stack.run("run", timeout=60)
    finally:
        if hole is not None:
            hole.close()

    assert done.returncode == case.exit_code, done.stderr
    # rclone never started, nothing reached the bucket.
    assert "rclone started" not in done.stderr
    assert list(stack.bucket_root.iterdir()) == []
    # Exactly one clear error line, at error priority, saying what went wrong.
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    assert case.says in errors[0]
    # Retried only what can heal, and said so with the attempt number and the error type.
    seen = len(stack.proxy.state.requests)
    if case.requests == "one":
        assert seen == 1
        assert "retrying" not in done.stderr
    elif case.requests == "several":
        assert seen >= 2
        assert "credential fetch attempt 1/4 failed (" in done.stderr
    else:
        assert seen == 0
        assert "credential fetch attempt 1/4 failed (" in done.stderr
    # Both alert channels heard about it.
    hooks = stack.alerts.webhooks()
    assert [(h["outcome"], h["exit_code"]) for h in hooks] == [("failure", case.exit_code)]
    assert case.says in hooks[0]["message"]
    assert stack.alerts.ping_actions() == ["start", f"exit {case.exit_code}"]
    # Nothing written: the runtime dir is empty, the (released) lock empty too.
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    assert stack.lock_path.stat().st_size == 0
    assert find_canaries(
        stack.secrets, texts=[done.stdout, done.stderr, *stack.alerts.bodies()],
        dirs=[stack.tmp, stack.runtime_dir.parent]) == []
    # The state file records the failure (a crash used to skip it), quoting nothing answered.
    record = json.loads((stack.tmp / "state" / "last-run.json").read_text())
    assert record["exit_code"] == case.exit_code
    assert find_canaries(["LEAKME"], texts=[done.stderr, *stack.alerts.bodies()],
                         dirs=[stack.tmp / "state"]) == []


def test_429_retry_after_is_honoured_between_attempts(hostile_stack: Stack) -> None:
    stack = hostile_stack
    stack.proxy.state.mode = "throttled:1"
    done = stack.run("run", timeout=60)
    assert done.returncode == ExitCode.PROXY_UNAVAILABLE
    times = [r["monotonic"] for r in stack.proxy.state.requests]
    assert len(times) >= 2
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times))


def test_500_three_times_then_200_succeeds(hostile_stack: Stack) -> None:
    stack = hostile_stack
    stack.proxy.state.mode = "fail-then-ok:3"
    done = stack.run("run", timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(stack.proxy.state.requests) == 4
    for attempt in (1, 2, 3):
        assert f"credential fetch attempt {attempt}/4 failed (HTTP 500); retrying" in done.stderr
    assert "rclone started" in done.stderr
    assert len(list(stack.bucket_dir.rglob("*.dat"))) == 5
    assert error_lines(done.stderr) == []
    assert stack.alerts.ping_actions() == ["start", "exit 0"]
    assert find_canaries(
        stack.secrets, texts=[done.stdout, done.stderr, *stack.alerts.bodies()],
        dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_credentials_are_fetched_fresh_for_every_run_never_reused(hostile_stack: Stack) -> None:
    stack = hostile_stack
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    stack.proxy.state.mode = "status:503"
    second = stack.run("run")
    assert second.returncode == ExitCode.PROXY_UNAVAILABLE, second.stderr
    assert "rclone started" not in second.stderr
    ids = [r["request_id"] for r in stack.proxy.state.requests]
    assert len(ids) >= 3
    assert ids[0] != ids[1]
    assert len(set(ids[1:])) == 1  # retries within one run share its id
    assert find_canaries(
        stack.secrets, texts=[first.stderr, second.stderr, *stack.alerts.bodies()],
        dirs=[stack.tmp, stack.runtime_dir.parent]) == []
