"""Progress: parse rclone's ``--use-json-log`` lines and format what operators read.

Pure functions only. rclone writes one JSON object per line on stderr with ``level``,
``msg`` and, on stats lines, a ``stats`` object (the same as rc ``core/stats``). Missing
and unknown keys are tolerated; a line that is not JSON (a Go panic, say) is kept verbatim.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

# rclone's lower-case level names, mapped 1:1 onto syslog priorities.
PRIORITY_BY_LEVEL = {
    "emergency": 0, "alert": 1, "critical": 2, "error": 3,
    "warning": 4, "notice": 5, "info": 6, "debug": 7,
}
_UNPARSED_PRIORITY = 4
_FAILED_ATTEMPT_RE = re.compile(r"Attempt \d+/\d+ failed")
# json.loads() minus its argument checks: one call per rclone line (docs/performance.md).
_decode_json = json.JSONDecoder().decode


@dataclass(frozen=True, slots=True)
class Stats:
    """One rclone stats record."""

    bytes: int = 0
    total_bytes: int = 0
    transfers: int = 0
    total_transfers: int = 0
    checks: int = 0
    total_checks: int = 0
    listed: int = 0
    deletes: int = 0
    errors: int = 0
    elapsed_seconds: float = 0.0
    speed: float = 0.0
    eta_seconds: float | None = None
    fatal_error: bool = False
    last_error: str = ""

    @property
    def activity(self) -> tuple[int, ...]:
        """Return the figures that move while rclone makes progress (elapsed time excluded)."""
        return (self.bytes, self.transfers, self.checks, self.listed, self.deletes, self.errors)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of rclone output: its syslog priority, message, object and stats if any."""

    priority: int
    message: str
    object: str | None = None
    stats: Stats | None = None
    # What ``--dry-run`` skipped ("copy", "delete", "move into backup dir", ...); rclone puts
    # it in the line's ``skipped`` field (operations.SkipDestructive).
    skipped: str | None = None
    size: int = 0


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _float(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def parse_stats(data: dict[str, Any]) -> Stats:
    """Given a ``stats`` object, return :class:`Stats`; absent or odd keys read as zero."""
    eta = data.get("eta")
    last_error = data.get("lastError")
    return Stats(
        bytes=_int(data, "bytes"),
        total_bytes=_int(data, "totalBytes"),
        transfers=_int(data, "transfers"),
        total_transfers=_int(data, "totalTransfers"),
        checks=_int(data, "checks"),
        total_checks=_int(data, "totalChecks"),
        listed=_int(data, "listed"),
        deletes=_int(data, "deletes"),
        errors=_int(data, "errors"),
        elapsed_seconds=_float(data, "elapsedTime"),
        speed=_float(data, "speed"),
        eta_seconds=float(eta) if isinstance(eta, int | float) and not isinstance(eta, bool)
        else None,
        fatal_error=data.get("fatalError") is True,
        last_error=last_error if isinstance(last_error, str) else "",
    )


# rclone lines that say nothing about this run and come every night: logged at debug only, so
# they neither worry an operator nor push useful lines out of the alert's log tail.
_ROUTINE_MESSAGES = frozenset({
    "Hasher is EXPERIMENTAL!",  # backend/hasher NewFs, once per run (our source overlay)
})


def is_routine_notice(event: LogEvent) -> bool:
    """Return True for a constant rclone line that carries no news (see _ROUTINE_MESSAGES)."""
    return event.priority >= 5 and event.message in _ROUTINE_MESSAGES


def add_stats(before: Stats, window: Stats) -> Stats:
    """Return the figures of a run so far: ``before`` plus one more credential window's.

    Counters add up; the totals, speed and ETA are the latest window's (each window's rclone
    plans the rest of the sync afresh).
    """
    return Stats(
        bytes=before.bytes + window.bytes,
        total_bytes=before.bytes + window.total_bytes,
        transfers=before.transfers + window.transfers,
        total_transfers=before.transfers + window.total_transfers,
        checks=before.checks + window.checks,
        total_checks=before.checks + window.total_checks,
        listed=before.listed + window.listed,
        deletes=before.deletes + window.deletes,
        errors=before.errors + window.errors,
        elapsed_seconds=before.elapsed_seconds + window.elapsed_seconds,
        speed=window.speed,
        eta_seconds=window.eta_seconds,
        fatal_error=window.fatal_error,
        last_error=window.last_error,
    )


def is_failed_attempt(event: LogEvent) -> bool:
    """Return True for rclone's line when a whole attempt failed and it starts another
    (``Attempt 1/3 failed with 2 errors``, ``--retries``): reports written during the sync
    (``--dest-after``) then hold the failed attempt's lines too."""
    return event.priority <= 3 and _FAILED_ATTEMPT_RE.match(event.message) is not None


def is_max_delete_refusal(event: LogEvent) -> bool:
    """Return True for rclone's error line when ``--max-delete`` refuses a deletion.

    rclone 1.75 deletes exactly ``--max-delete`` objects, then logs ``Got fatal error on
    delete: --max-delete threshold reached`` at error once per object it refused, and exits
    7 (which other fatal errors share).
    """
    return event.priority <= 3 and "max-delete" in event.message.replace(" ", "-").lower()


def parse_line(line: str) -> LogEvent:
    """Given one line of rclone stderr, return a :class:`LogEvent` (never raises)."""
    text = line.rstrip("\r\n")
    if not text.startswith("{"):
        return LogEvent(_UNPARSED_PRIORITY, text)
    try:
        data = _decode_json(text)
    except ValueError:
        return LogEvent(_UNPARSED_PRIORITY, text)
    if not isinstance(data, dict):
        return LogEvent(_UNPARSED_PRIORITY, text)
    level = data.get("level")
    priority = PRIORITY_BY_LEVEL.get(level, _UNPARSED_PRIORITY) if isinstance(level, str) else 4
    msg = data.get("msg")
    message = msg.strip() if isinstance(msg, str) else ""
    obj = data.get("object")
    stats = data.get("stats")
    skipped = data.get("skipped")
    return LogEvent(
        priority=priority,
        message=message,
        object=obj if isinstance(obj, str) else None,
        stats=parse_stats(stats) if isinstance(stats, dict) else None,
        skipped=skipped if isinstance(skipped, str) else None,
        size=_int(data, "size") if skipped is not None else 0,
    )


# --- `run --dry-run`: what the sync would do ------------------------------------------------

# rclone's SkipDestructive names (operations.go): a deletion is "delete", or "move into backup
# dir" when --backup-dir archives it; "move" archives the old version of a file about to be
# overwritten. Modification-time updates change no content and are not reported.
_WOULD_COPY = frozenset({"copy"})
_WOULD_DELETE = frozenset({"delete", "move into backup dir"})
_WOULD_ARCHIVE_REPLACED = frozenset({"move"})


@dataclass(frozen=True)
class DryRunPlan:
    """What a ``sync --dry-run`` reported: counts, bytes and the first ``keep`` paths."""

    copies: int = 0
    copy_bytes: int = 0
    deletes: int = 0
    delete_bytes: int = 0
    replaced: int = 0
    first_copies: tuple[str, ...] = ()
    first_deletes: tuple[str, ...] = ()


def add_dry_run_event(plan: DryRunPlan, event: LogEvent, *, keep: int) -> DryRunPlan:
    """Return ``plan`` with ``event`` counted if it is a skipped copy, deletion or archiving."""
    if event.skipped is None or event.object is None:
        return plan
    if event.skipped in _WOULD_COPY:
        first = plan.first_copies if len(plan.first_copies) >= keep else (
            *plan.first_copies, event.object)
        return replace(plan, copies=plan.copies + 1, copy_bytes=plan.copy_bytes + event.size,
                       first_copies=first)
    if event.skipped in _WOULD_DELETE:
        first = plan.first_deletes if len(plan.first_deletes) >= keep else (
            *plan.first_deletes, event.object)
        return replace(plan, deletes=plan.deletes + 1,
                       delete_bytes=plan.delete_bytes + event.size, first_deletes=first)
    if event.skipped in _WOULD_ARCHIVE_REPLACED:
        return replace(plan, replaced=plan.replaced + 1)
    return plan


def format_dry_run(plan: DryRunPlan, *, source: str, destination: str,
                   archive: str | None, max_delete: int | None) -> str:
    """Return the dry run's report: what would be copied and deleted, first paths of each.

    ``max_delete``: the deletion limit as a count (None: a percentage, or no limit).
    """
    lines = [f"dry run: {source} -> {destination} (nothing was changed)",
             f"would copy {plan.copies} file(s), {format_bytes(plan.copy_bytes)}"
             + (":" if plan.first_copies else "")]
    lines += [f"  {path}" for path in plan.first_copies]
    if plan.copies > len(plan.first_copies):
        lines.append(f"  ... and {plan.copies - len(plan.first_copies)} more")
    where = f" (moved to {archive}, not destroyed)" if archive else ""
    lines.append(f"would delete {plan.deletes} file(s), {format_bytes(plan.delete_bytes)}{where}"
                 + (":" if plan.first_deletes else ""))
    lines += [f"  {path}" for path in plan.first_deletes]
    if plan.deletes > len(plan.first_deletes):
        lines.append(f"  ... and {plan.deletes - len(plan.first_deletes)} more")
    if plan.replaced and archive:
        lines.append(f"would keep the previous version of {plan.replaced} overwritten file(s) "
                     f"in {archive}")
    if max_delete is not None and 0 < max_delete < plan.deletes:
        lines.append(f"a real run would refuse more than {max_delete} deletion(s) "
                     "(rclone.max_delete) and exit 79 before deleting anything")
    return "\n".join(lines) + "\n"


def format_bytes(count: float) -> str:
    """Return ``count`` bytes in binary units: ``512 B``, ``1.2 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover - loop always returns


def format_duration(seconds: float) -> str:
    """Return a short human duration: ``45s``, ``3m``, ``1h05m``."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        minutes, secs = divmod(total, 60)
        return f"{minutes}m" if secs == 0 or minutes >= 10 else f"{minutes}m{secs:02d}s"
    hours, rest = divmod(total, 3600)
    return f"{hours}h{rest // 60:02d}m"


def format_progress(stats: Stats) -> str:
    """Return the progress line, e.g. ``1.2 GiB / 3.4 GiB (35%), 120/400 files, 0 errors,
    12.0 MiB/s, ETA 3m``."""
    if stats.total_bytes > 0:
        percent = f" ({min(100, int(stats.bytes * 100 / stats.total_bytes))}%)"
    else:
        percent = ""
    eta = format_duration(stats.eta_seconds) if stats.eta_seconds is not None else "-"
    return (
        f"{format_bytes(stats.bytes)} / {format_bytes(stats.total_bytes)}{percent}, "
        f"{stats.transfers}/{stats.total_transfers} files, {stats.errors} errors, "
        f"{format_bytes(stats.speed)}/s, ETA {eta}"
    )


def format_summary(stats: Stats | None, duration_seconds: float) -> str:
    """Return the final one-line summary of a sync."""
    s = stats or Stats()
    return (
        f"summary: {format_bytes(s.bytes)} transferred in {s.transfers} files, "
        f"{s.checks} checked, {s.deletes} deleted, {s.errors} errors, "
        f"duration {format_duration(duration_seconds)}"
    )
