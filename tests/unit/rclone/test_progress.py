"""rclone JSON lines: stats, per-file lines, errors and garbage; progress formatting."""

from __future__ import annotations

import json

import pytest

from ghost_backup.host.notify import format_status
from ghost_backup.rclone.progress import (
    Stats,
    format_bytes,
    format_duration,
    format_progress,
    format_summary,
    is_failed_attempt,
    is_max_delete_refusal,
    is_routine_notice,
    parse_line,
)

STATS_LINE = json.dumps({
    "time": "2026-11-26T02:00:10Z", "level": "notice", "msg": "\nTransferred: ...\n",
    "source": "accounting/stats.go:549",
    "stats": {"bytes": 1288490188, "totalBytes": 3650722202, "transfers": 120,
              "totalTransfers": 400, "checks": 5, "totalChecks": 9, "listed": 410,
              "deletes": 2, "errors": 0, "elapsedTime": 95.2, "speed": 12582912,
              "eta": 180, "fatalError": False, "lastError": "", "newKeyFromTheFuture": 1,
              "transferring": [{"name": "x"}]},
})


def test_stats_line_parses_all_known_figures_and_ignores_new_ones() -> None:
    event = parse_line(STATS_LINE)
    assert event.priority == 5
    assert event.stats == Stats(bytes=1288490188, total_bytes=3650722202, transfers=120,
                                total_transfers=400, checks=5, total_checks=9, listed=410,
                                deletes=2, errors=0, elapsed_seconds=95.2, speed=12582912.0,
                                eta_seconds=180.0, fatal_error=False, last_error="")


def test_stats_with_missing_keys_and_null_eta() -> None:
    event = parse_line('{"level":"notice","msg":"x","stats":{"bytes":5,"eta":null}}')
    assert event.stats == Stats(bytes=5)


@pytest.mark.parametrize(
    ("line", "priority", "message", "obj"),
    [
        ('{"level":"info","msg":"Copied (new)","object":"a/b.txt","size":4}', 6,
         "Copied (new)", "a/b.txt"),
        ('{"level":"debug","msg":"x"}', 7, "x", None),
        ('{"level":"warning","msg":"w"}', 4, "w", None),
        ('{"level":"error","msg":"Failed to copy: 403","object":"f"}', 3,
         "Failed to copy: 403", "f"),
        ('{"level":"critical","msg":"c"}', 2, "c", None),
        ('{"level":"alert","msg":"a"}', 1, "a", None),
        ('{"level":"emergency","msg":"e"}', 0, "e", None),
        ('{"level":"weird","msg":"?"}', 4, "?", None),
        ("panic: runtime error: index out of range", 4,
         "panic: runtime error: index out of range", None),
        ('{"level":"info","msg":', 4, '{"level":"info","msg":', None),
        ("[1,2,3]", 4, "[1,2,3]", None),
        ('{"msg": 5, "level": 3, "object": 7}', 4, "", None),
        ("", 4, "", None),
    ],
)
def test_log_lines_keep_their_priority_and_garbage_is_kept_verbatim(
    line: str, priority: int, message: str, obj: str | None
) -> None:
    event = parse_line(line + "\n")
    assert (event.priority, event.message, event.object) == (priority, message, obj)
    assert event.stats is None


def test_progress_line_reads_like_an_operator_expects() -> None:
    event = parse_line(STATS_LINE)
    assert event.stats is not None
    assert format_progress(event.stats) == (
        "1.2 GiB / 3.4 GiB (35%), 120/400 files, 0 errors, 12.0 MiB/s, ETA 3m"
    )


def test_progress_line_without_totals_or_eta() -> None:
    assert format_progress(Stats()) == "0 B / 0 B, 0/0 files, 0 errors, 0 B/s, ETA -"


def test_summary_line() -> None:
    stats = Stats(bytes=2048, transfers=3, checks=7, deletes=1, errors=0)
    assert format_summary(stats, 65) == (
        "summary: 2.0 KiB transferred in 3 files, 7 checked, 1 deleted, 0 errors, "
        "duration 1m05s"
    )
    assert "0 B transferred in 0 files" in format_summary(None, 0)


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**3, "5.0 GiB"),
     (3 * 1024**5, "3072.0 TiB")],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.4, "59s"), (60, "1m"), (185, "3m05s"), (900, "15m"), (3900, "1h05m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_status_message_is_one_line() -> None:
    assert format_status("a\nb   c") == "STATUS=a b c"


@pytest.mark.parametrize(("line", "refusal"), [
    ('{"level":"error","msg":"Got fatal error on delete: --max-delete threshold reached",'
     '"object":"f6"}', True),
    ('{"level":"info","msg":"--max-delete threshold reached"}', False),
    ('{"level":"error","msg":"Cancelling sync due to fatal error: failed to delete 6 files"}',
     False),
])
def test_max_delete_refusal_is_recognised_only_at_error(line: str, refusal: bool) -> None:
    assert is_max_delete_refusal(parse_line(line)) is refusal


@pytest.mark.parametrize(("line", "routine"), [
    ('{"level":"info","msg":"Hasher is EXPERIMENTAL!","source":"hasher/hasher.go:135"}', True),
    ('{"level":"error","msg":"Hasher is EXPERIMENTAL!"}', False),
    ('{"level":"info","msg":"Copied (new)","object":"a.txt"}', False),
])
def test_the_hasher_banner_is_routine_and_nothing_else_is(line: str, routine: bool) -> None:
    assert is_routine_notice(parse_line(line)) is routine


@pytest.mark.parametrize(("line", "failed"), [
    ('{"level":"error","msg":"Attempt 1/3 failed with 2 errors and: directory not found"}', True),
    ('{"level":"error","msg":"Attempt 3/3 failed with 1 errors"}', True),
    ('{"level":"info","msg":"Attempt 2/3 succeeded"}', False),
    ('{"level":"info","msg":"Attempt 1/3 failed with 2 errors"}', False),
    ('{"level":"error","msg":"x.jpg: Failed to copy: Attempt 1/3 failed"}', False),
])
def test_a_failed_attempt_of_the_whole_sync_is_recognised(line: str, failed: bool) -> None:
    assert is_failed_attempt(parse_line(line)) is failed
