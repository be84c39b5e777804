"""The orchestrator: the one place that sequences the backup's effects.

    runtime dir proven tmpfs -> lock -> source guard -> rclone version
    -> credential fetch (audit line) -> per-run dir + config -> rclone child (READY, progress,
    watchdog) -> finally: STOPPING, shred config, remove per-run dir, unlock
    -> state file + metrics textfile -> alerts

Everything it calls is a leaf module; collaborators arrive in :class:`Deps`, wired by the CLI.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from ghost_backup import credentials as creds_mod
from ghost_backup import ephemeral, metrics, rclone, state
from ghost_backup.alerts import AlertEvent, AlertSink
from ghost_backup.credential_sources import CredentialSource, SourceContext, build_source
from ghost_backup.errors import ExitCode, GhostBackupError, RcloneFailed
from ghost_backup.logs import NOTICE, Redactor, TailHandler, level_for_priority
from ghost_backup.notify import Notifier, StatusThrottle
from ghost_backup.progress import (
    LogEvent,
    Stats,
    format_progress,
    format_summary,
    is_max_delete_refusal,
)
from ghost_backup.settings import Settings
from ghost_backup.source import check_source
from ghost_backup.supervisor import ChildResult, StopRequest, run_captured, run_child

log = logging.getLogger(__name__)
rclone_log = logging.getLogger("ghost_backup.rclone")

STATUS_INTERVAL_SECONDS = 5.0
VERSION_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Deps:
    """Collaborators of a run, wired once in the CLI (tests pass their own)."""

    session: requests.Session
    clock: Callable[[], datetime]
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    notifier: Notifier
    alerts: AlertSink
    redactor: Redactor
    stop: StopRequest
    env: Mapping[str, str]
    watchdog_seconds: float | None = None


@dataclass(frozen=True)
class RunReport:
    """The outcome of one run: what the state file, metrics and alerts are built from."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    exit_code: ExitCode
    message: str
    stats: Stats | None = None
    credential_requested_at: datetime | None = None
    credential_expires_at: datetime | None = None
    rclone_returncode: int | None = None
    rclone_version: str | None = None
    stale_dirs_removed: tuple[str, ...] = field(default=())

    @property
    def outcome(self) -> str:
        """Return ``success`` or ``failure``."""
        return "success" if self.exit_code == ExitCode.OK else "failure"


def new_run_id(now: datetime) -> str:
    """Return a sortable, unique run id such as ``20261126T020000Z-3fa1c2``."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


_LOG_TARGET = {priority: (level_for_priority(priority), {"priority": priority})
               for priority in range(8)}


def log_rclone_event(event: LogEvent) -> None:
    """Write one rclone line to our log at its own priority (stats lines as progress)."""
    if event.stats is not None:
        rclone_log.log(NOTICE, "progress: %s", format_progress(event.stats),
                       extra={"priority": 5})
        return
    # The hot path: one call per copied file. Arguments stay lazy; the priority's extra dict
    # is built once per priority, not once per line (docs/performance.md).
    level, extra = _LOG_TARGET.get(event.priority) or (
        level_for_priority(event.priority), {"priority": event.priority})
    if event.object:
        rclone_log.log(level, "rclone: %s: %s", event.message, event.object, extra=extra)
    else:
        rclone_log.log(level, "rclone: %s", event.message, extra=extra)


def _sync(
    settings: Settings,
    deps: Deps,
    credentials: creds_mod.Credentials,
    run_id: str,
    run_dir: Path,
) -> ChildResult:
    config_path = ephemeral.write_private_file(
        run_dir, rclone.CONFIG_NAME, rclone.render_config(settings)
    )
    remaining = (credentials.expires_at - deps.clock()).total_seconds()
    max_duration = max(1, int(remaining - settings.credentials.safety_margin_seconds))
    argv = rclone.build_sync_argv(
        settings,
        config_path=config_path,
        work_dir=run_dir,
        max_duration_seconds=max_duration,
        archive_stamp=run_id,
    )
    env = rclone.build_child_env(deps.env, credentials)
    status = StatusThrottle(deps.notifier, STATUS_INTERVAL_SECONDS, deps.monotonic)
    last_ping = [-float("inf")]

    def on_started(pid: int) -> None:
        log.info("rclone started (pid %d), stops by itself within %ds", pid, max_duration)
        deps.notifier.send("READY=1")
        status.update(f"syncing {settings.source.path} (run {run_id})", force=True)

    refusals = [0]

    def on_event(event: LogEvent) -> None:
        # rclone logs one error per deletion --max-delete refused: a mass delete would flood
        # the journal past its rate limit (journald.conf RateLimitBurst=) and drop our own
        # error line. Relay the first, count the rest.
        if is_max_delete_refusal(event):
            refusals[0] += 1
            if refusals[0] > 1:
                return
        log_rclone_event(event)
        if event.stats is not None:
            status.update(format_progress(event.stats))

    def on_tick() -> None:
        if deps.watchdog_seconds is not None:
            now = deps.monotonic()
            if now - last_ping[0] >= deps.watchdog_seconds:
                last_ping[0] = now
                deps.notifier.send("WATCHDOG=1")

    tick = 1.0 if deps.watchdog_seconds is None else min(1.0, deps.watchdog_seconds / 2)
    # While rclone lives, SIGTERM is forwarded to it (and waited for), never raised here.
    with deps.stop.deferred():
        result = run_child(
            argv,
            env,
            on_event=on_event,
            on_started=on_started,
            on_tick=on_tick,
            stop=deps.stop,
            tick_seconds=tick,
            stall_timeout_seconds=settings.rclone.stall_timeout_seconds,
            term_timeout_seconds=settings.rclone.term_timeout_seconds,
            clock=deps.monotonic,
        )
    if result.last_stats is not None:  # the last figures win, however short the run
        status.update(format_progress(result.last_stats), force=True)
    if refusals[0] > 1:
        log.warning("rclone refused %d more deletions past --max-delete (lines not repeated)",
                    refusals[0] - 1)
    return result


def run_backup(settings: Settings, deps: Deps) -> RunReport:
    """Run one backup from start to cleanup and return its report (never raises a known error).

    Known failures become the report's exit code and message, logged at error priority;
    the alert channels hear about every outcome.
    """
    started_at = deps.clock()
    run_id = new_run_id(started_at)
    tail = TailHandler(deps.redactor)
    logging.getLogger().addHandler(tail)
    source = build_source(settings)
    facts: dict[str, object] = {}
    try:
        deps.alerts.start(run_id)
        log.info("backup run %s starting: %s -> %s", run_id, settings.source.path,
                 rclone.remote_path(settings))
        code, message = _run(settings, deps, run_id, source, facts)
    finally:
        logging.getLogger().removeHandler(tail)
    finished_at = deps.clock()
    stats = facts.get("stats")
    report = RunReport(
        run_id=run_id,
        started_at=started_at,
        finished_at=finished_at,
        exit_code=code,
        message=message,
        stats=stats if isinstance(stats, Stats) else None,
        credential_requested_at=_dt(facts.get("requested_at")),
        credential_expires_at=_dt(facts.get("expires_at")),
        rclone_returncode=_int(facts.get("returncode")),
        rclone_version=_str(facts.get("rclone_version")),
    )
    record_run(settings, report, deps.redactor)
    event = AlertEvent(
        run_id=run_id,
        outcome=report.outcome,
        exit_code=int(code),
        message=message,
        summary=summary_fields(report),
        log_tail=tuple(tail.lines),
    )
    deps.alerts.finish(event)
    deps.redactor.forget()
    return report


def _dt(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def fetch_rclone_version(settings: Settings, env: Mapping[str, str]) -> str | None:
    """Return rclone's version (``v1.75.2``), or None if its answer is not understood.

    Raise RcloneFailed if rclone cannot be started: better to know before fetching keys.
    """
    result = run_captured(rclone.build_version_argv(settings), rclone.build_plain_env(env),
                          timeout_seconds=VERSION_TIMEOUT_SECONDS)
    parsed = rclone.parse_version(result.stdout) if result.returncode == 0 else None
    if parsed is None:
        log.warning("%s version did not report a version (exit %d)",
                    settings.rclone.binary, result.returncode)
        return None
    text, numbers = parsed
    if numbers < rclone.MIN_VERSION:
        log.warning("rclone %s is older than the oldest tested version v%s",
                    text, ".".join(map(str, rclone.MIN_VERSION)))
    return text


def record_run(settings: Settings, report: RunReport, redactor: Redactor) -> None:
    """Write the state file and, if configured, the metrics textfile for ``report``.

    A failure to write is logged at error and does not change the run's outcome (the backup
    itself is what the exit code reports); a stale last-success metric then alerts.
    """
    try:
        previous = state.read_last_run(settings.state.dir)
    except GhostBackupError as err:
        log.warning("previous state unreadable (%s); starting a new record", err.message)
        previous = None
    figures = summary_fields(report)
    record = state.build_last_run(
        run_id=report.run_id,
        started_at=report.started_at,
        finished_at=report.finished_at,
        exit_code=int(report.exit_code),
        message=redactor.redact(report.message),
        figures={k: v for k, v in figures.items() if isinstance(v, int)},
        credential_requested_at=report.credential_requested_at,
        credential_expires_at=report.credential_expires_at,
        rclone_version=report.rclone_version,
        previous=previous,
    )
    try:
        path = state.write_last_run(settings.state.dir, redactor.redact(
            state.render_last_run(record)))
        log.debug("state written to %s", path)
    except OSError as err:
        log.error("cannot write state file in %s: %s", settings.state.dir, err.strerror)
    textfile = settings.metrics.textfile_path
    if textfile is not None:
        try:
            metrics.write_textfile(textfile, redactor.redact(metrics.render_metrics(record)))
        except OSError as err:
            log.error("cannot write metrics textfile %s: %s", textfile, err.strerror)


def summary_fields(report: RunReport) -> dict[str, object]:
    """Return the run's figures for alerts and state (no secrets by construction)."""
    s = report.stats or Stats()
    return {
        "bytes": s.bytes,
        "files": s.transfers,
        "checks": s.checks,
        "deletes": s.deletes,
        "errors": s.errors,
        "duration_seconds": round((report.finished_at - report.started_at).total_seconds(), 3),
    }


def fetch_audited_credentials(
    settings: Settings,
    deps: Deps,
    run_id: str,
    *,
    command: str,
    source: CredentialSource | None = None,
) -> tuple[creds_mod.Credentials, datetime]:
    """Fetch credentials from the configured source, logging the two audit lines.

    Return the credentials and the time they were requested; their secrets are registered
    with the redactor before anything else can log them. Every command (``run``, ``check``,
    ``restore``, ``verify``) gets its credentials here, so the audit trail is the same for
    all of them: run id, provider, command, request time and source, then the expiry.
    """
    source = source or build_source(settings)
    provider = source.provider
    requested_at = deps.clock()
    log.log(NOTICE, "credential request: run_id=%s provider=%s command=%s requested_at=%s "
            "source=%s", run_id, provider, command, requested_at.isoformat(timespec="seconds"),
            source.name)
    context = SourceContext(session=deps.session, clock=deps.clock, sleep=deps.sleep,
                            env=deps.env, run_id=run_id, remember=deps.redactor.add)
    credentials = source.fetch(context)
    deps.redactor.add(credentials.secret_values())
    valid_for = int((credentials.expires_at - deps.clock()).total_seconds())
    log.log(NOTICE, "credentials received: run_id=%s provider=%s requested_at=%s "
            "expires_at=%s valid_for=%ds session_token=%s source=%s",
            run_id, provider, requested_at.isoformat(timespec="seconds"),
            credentials.expires_at.isoformat(timespec="seconds"), valid_for,
            "yes" if credentials.session_token else "no", source.name)
    return credentials, requested_at


def _run(
    settings: Settings, deps: Deps, run_id: str, source: CredentialSource,
    facts: dict[str, object],
) -> tuple[ExitCode, str]:
    lock_fd: int | None = None
    run_dir: Path | None = None
    started = deps.monotonic()
    try:
        ephemeral.ensure_runtime_dir(settings.runtime.dir)
        lock_fd = ephemeral.acquire_lock(settings.runtime.dir)
        for stale in ephemeral.remove_stale_run_dirs(settings.runtime.dir):
            log.warning("removed stale run directory %s left by a run that died", stale.name)
        check_source(settings.source)
        facts["rclone_version"] = fetch_rclone_version(settings, deps.env)

        credentials, requested_at = fetch_audited_credentials(
            settings, deps, run_id, command="run", source=source
        )
        facts["requested_at"] = requested_at
        facts["expires_at"] = credentials.expires_at

        run_dir = ephemeral.create_run_dir(settings.runtime.dir, run_id)
        result = _sync(settings, deps, credentials, run_id, run_dir)
        del credentials
        facts["stats"] = result.last_stats
        facts["returncode"] = result.returncode
        if result.stalled:
            raise RcloneFailed(
                f"rclone stalled: no progress for {settings.rclone.stall_timeout_seconds}s; "
                "it was stopped"
            )
        verdict = rclone.classify_exit(
            result.returncode, terminated=result.terminated, max_delete_hit=result.max_delete_hit
        )
        if verdict.code != ExitCode.OK:
            raise GhostBackupError(verdict.message, exit_code=verdict.code)
        log.log(NOTICE, "backup run %s finished successfully", run_id)
        return ExitCode.OK, "backup finished"
    except GhostBackupError as err:
        log.error("backup run %s failed: %s", run_id, err.message)
        return err.exit_code, err.message
    finally:
        with deps.stop.deferred():
            deps.notifier.send("STOPPING=1")
            if run_dir is not None:
                ephemeral.remove_run_dir(run_dir)
            if lock_fd is not None:
                ephemeral.release_lock(lock_fd)
            stats = facts.get("stats")
            if "returncode" in facts:
                log.log(NOTICE, "backup run %s %s",
                        run_id, format_summary(stats if isinstance(stats, Stats) else None,
                                               deps.monotonic() - started))

