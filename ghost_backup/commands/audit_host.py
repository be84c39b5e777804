"""``ghost-backup audit-host``: look, read-only, for long-lived S3/R2 keys on this host."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ghost_backup.audit.plan import build_scan_plan
from ghost_backup.audit.report import format_report_json, format_report_text
from ghost_backup.audit.scan import read_host_locations, run_audit
from ghost_backup.errors import ExitCode


def run_audit_host(config: Path | None, env: Mapping[str, str], root: Path,
                   extra: Sequence[Path], *, as_json: bool) -> tuple[str, ExitCode]:
    """Return the report text and the exit code: 80 when a key-like value was found, else 74
    when the audit could not read everything it meant to, else 0."""
    locations, note = read_host_locations(config, env, root)
    report = run_audit(build_scan_plan(locations, extra), root, notes=[note] if note else [])
    text = format_report_json(report) if as_json else format_report_text(report)
    if not report.clean:
        return text, ExitCode.KEYS_ON_HOST
    return text, ExitCode.AUDIT_INCOMPLETE if report.gaps else ExitCode.OK
