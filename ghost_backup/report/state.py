"""The state file: ``<state.dir>/last-run.json``, the record of the last backup run.

Written after every run, whatever its outcome, so ``ghost-backup status``, the metrics textfile
and an on-call engineer can see what happened without reading the journal. It holds figures and
timestamps only: never a key (the orchestrator also passes the text through the redactor, and
the end-to-end tests search it for the canary keys).

The file is replaced atomically (write a temporary file in the same directory, fsync, rename,
fsync the directory), so a reader never sees half a file and a crash leaves the previous
record in place. Mode 0644: nothing in it is secret. Under the shipped unit
(``DynamicUser=``) the state directory is under ``/var/lib/private``, which only root can
enter: the metrics reach other users through the root ``post-stop`` hook
(:mod:`ghost_backup.report.metrics`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ghost_backup import __version__
from ghost_backup.errors import ExitCode, StateUnreadable
from ghost_backup.host.files import write_file_atomically
from ghost_backup.rclone.progress import format_bytes

log = logging.getLogger(__name__)

STATE_FILE_NAME = "last-run.json"
# Present while a run holds the lock; kept when a shutdown interrupts it (and by a power cut
# or SIGKILL), so ghost-backup-resume.service (ConditionPathExists=) runs it at next boot.
RUN_MARKER_NAME = "run-in-progress"
SCHEMA_VERSION = 1
PUBLIC_FILE_MODE = 0o644


class DumpRecord(BaseModel):
    """One database dump of the run: its object on success, the reason on failure."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    ok: bool
    object: str | None = None
    raw_bytes: int = 0
    stored_bytes: int = 0
    sha256: str | None = None
    seconds: float = 0.0
    error: str | None = None


class LastRun(BaseModel):
    """What ``last-run.json`` holds. Timestamps are UTC; figures come from rclone's stats."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    outcome: Literal["success", "failure", "interrupted"]
    exit_code: int
    exit_name: str
    message: str
    bytes: int = 0
    files: int = 0
    checks: int = 0
    deletes: int = 0
    errors: int = 0
    credential_requested_at: datetime | None = None
    credential_expires_at: datetime | None = None
    credential_ttl_seconds: float | None = None
    rclone_version: str | None = None
    ghost_backup_version: str = __version__
    last_success_at: datetime | None = None
    last_success_run_id: str | None = None
    databases: tuple[DumpRecord, ...] = ()
    invocation_id: str | None = None  # systemd's $INVOCATION_ID: the alert unit's dedupe key
    # What the source held as rclone saw it (the shrink guard's baseline is the last
    # successful run's figures).
    source_files: int | None = None
    source_bytes: int | None = None
    last_success_source_files: int | None = None
    last_success_source_bytes: int | None = None


def exit_name(code: int) -> str:
    """Return the name of exit code ``code`` in our table (``UNKNOWN`` if it is not there)."""
    try:
        return ExitCode(code).name
    except ValueError:
        return "UNKNOWN"


def build_last_run(
    *,
    run_id: str,
    started_at: datetime,
    finished_at: datetime,
    exit_code: int,
    message: str,
    figures: dict[str, int],
    credential_requested_at: datetime | None,
    credential_expires_at: datetime | None,
    rclone_version: str | None,
    previous: LastRun | None,
    databases: tuple[DumpRecord, ...] = (),
    interrupted: bool = False,
    invocation_id: str | None = None,
    source: tuple[int, int] | None = None,
) -> LastRun:
    """Given one run's facts and the previous record, return the new record.

    ``last_success_at`` is this run's end when it succeeded, otherwise carried over from
    ``previous``: that is what the "no successful backup for N hours" alert keys on.
    ``source`` (files, bytes as rclone listed them) likewise becomes the shrink guard's
    baseline only when the run succeeded.
    """
    success = exit_code == 0
    ttl = None
    if credential_requested_at is not None and credential_expires_at is not None:
        ttl = round((credential_expires_at - credential_requested_at).total_seconds(), 3)
    return LastRun(
        run_id=run_id,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=round((finished_at - started_at).total_seconds(), 3),
        outcome="success" if success else ("interrupted" if interrupted else "failure"),
        exit_code=exit_code,
        exit_name=exit_name(exit_code),
        message=message,
        bytes=figures.get("bytes", 0),
        files=figures.get("files", 0),
        checks=figures.get("checks", 0),
        deletes=figures.get("deletes", 0),
        errors=figures.get("errors", 0),
        credential_requested_at=credential_requested_at,
        credential_expires_at=credential_expires_at,
        credential_ttl_seconds=ttl,
        rclone_version=rclone_version,
        last_success_at=finished_at if success else (previous and previous.last_success_at),
        last_success_run_id=run_id if success else (previous and previous.last_success_run_id),
        databases=databases,
        invocation_id=invocation_id,
        source_files=source[0] if source else None,
        source_bytes=source[1] if source else None,
        last_success_source_files=(
            source[0] if success and source else (previous and previous.last_success_source_files)),
        last_success_source_bytes=(
            source[1] if success and source else (previous and previous.last_success_source_bytes)),
    )


def render_last_run(record: LastRun) -> str:
    """Return the state file's text (stable key order, one field per line)."""
    return json.dumps(record.model_dump(mode="json"), indent=2) + "\n"


def parse_last_run(text: str) -> LastRun:
    """Given the state file's text, return the record. Raise StateUnreadable if it is not one."""
    try:
        return LastRun.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        raise StateUnreadable("state file is not a ghost-backup run record; "
                              "it is replaced by the next run") from None


def state_file(state_dir: Path) -> Path:
    """Return the path of the state file in ``state_dir``."""
    return state_dir / STATE_FILE_NAME


def read_last_run(state_dir: Path) -> LastRun | None:
    """Return the recorded last run, or None if no run has been recorded yet.

    Raise StateUnreadable if the file exists but cannot be read or parsed.
    """
    path = state_file(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise StateUnreadable(f"cannot read state file {path}: {err.__class__.__name__}") from None
    return parse_last_run(text)


def write_last_run(state_dir: Path, text: str) -> Path:
    """Write the state file text into ``state_dir`` (created 0755 if missing); return its path."""
    state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = state_file(state_dir)
    write_file_atomically(path, text, PUBLIC_FILE_MODE)
    return path


def format_last_run(record: LastRun | None, *, now: datetime, path: Path) -> str:
    """Return the human text of ``ghost-backup status`` for ``record``."""
    if record is None:
        return f"no backup run recorded yet ({path} does not exist)\n"
    age = now - record.finished_at
    hours = age.total_seconds() / 3600
    lines = [
        f"last run:      {record.run_id} ({record.outcome}, exit {record.exit_code} "
        f"{record.exit_name})",
        f"finished:      {_ts(record.finished_at)} ({hours:.1f} h ago), "
        f"took {record.duration_seconds:.0f}s",
        f"message:       {record.message}",
        f"transferred:   {record.files} files, {format_bytes(record.bytes)}; "
        f"{record.checks} checked, "
        f"{record.deletes} deleted, {record.errors} errors",
    ]
    if record.credential_expires_at is not None:
        lines.append(
            f"credentials:   requested {_ts(record.credential_requested_at)}, expired "
            f"{_ts(record.credential_expires_at)} (valid {record.credential_ttl_seconds:.0f}s)"
        )
    elif record.credential_requested_at is not None:
        lines.append(f"credentials:   requested {_ts(record.credential_requested_at)}, "
                     "none usable received")
    else:
        lines.append("credentials:   none received (the run stopped before or at the fetch)")
    if record.last_success_at is not None:
        since = (now - record.last_success_at).total_seconds() / 3600
        lines.append(f"last success:  {_ts(record.last_success_at)} ({since:.1f} h ago, run "
                     f"{record.last_success_run_id})")
    else:
        lines.append("last success:  never recorded")
    for dump in record.databases:
        lines.append(
            f"database:      {dump.name}: "
            + (f"{dump.object} ({format_bytes(dump.stored_bytes)} stored, {dump.seconds:.0f}s)"
               if dump.ok else f"FAILED: {dump.error}"))
    lines.append(f"rclone:        {record.rclone_version or 'unknown'}; ghost-backup "
                 f"{record.ghost_backup_version}")
    return "\n".join(lines) + "\n"


def _ts(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


def write_run_marker(state_dir: Path, run_id: str) -> Path:
    """Create ``<state_dir>/run-in-progress`` holding ``run_id``; return its path."""
    state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = state_dir / RUN_MARKER_NAME
    write_file_atomically(path, f"{run_id}\n", PUBLIC_FILE_MODE)
    return path


def remove_run_marker(state_dir: Path) -> None:
    """Remove ``<state_dir>/run-in-progress`` (the run ended, or was stopped on purpose)."""
    (state_dir / RUN_MARKER_NAME).unlink(missing_ok=True)
