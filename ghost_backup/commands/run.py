"""``ghost-backup run``: the nightly backup, the one place that sequences its effects.

    runtime dir proven tmpfs -> lock -> source guard -> rclone version
    -> rclone's listing of the source (empty to rclone? shrunk since the last success?)
    -> credential fetch (audit line) -> per-run dir + config -> [database dumps (READY,
    watchdog), each streamed to the destination] -> the backup as the last run's record or
    one listing shows it (shrink guard without a state file; deletion pre-flight)
    -> rclone child (READY, progress, watchdog, deadline), again with fresh keys while
    windows end -> [success: manifest (rclone's --dest-after, no listing), prune]
    -> finally: STOPPING, shred config, remove per-run dir, unlock
    -> state file + metrics textfile -> alerts

The shared lifecycle is :func:`~ghost_backup.commands.context.command_scope`; collaborators
arrive in :class:`~ghost_backup.commands.context.Deps`, wired by the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, cast

from ghost_backup import rclone
from ghost_backup.commands.context import (
    Deps,
    Scope,
    Window,
    command_scope,
    credential_deadline,
    fetch_audited_credentials,
    fetch_rclone_version,
    log_rclone_event,
    max_duration_seconds,
    new_run_id,
    open_hash_cache,
    remaining_seconds,
)
from ghost_backup.commands.guards import (
    Figures,
    build_backstop,
    check_rclone_sees_files,
    check_source,
    judge_deletes,
    judge_shrink,
    plan_deletes,
    resolve_delete_limit,
)
from ghost_backup.commands.history import (
    MirrorView,
    dest_after_path,
    fetch_mirror_view,
    fresh_window,
    record_history,
    take_mirror_record,
    write_manifest,
)
from ghost_backup.credentials.sources import CredentialSource, build_source
from ghost_backup.errors import (
    DatabaseFailed,
    DeleteGuardTripped,
    ExitCode,
    GhostBackupError,
    RcloneFailed,
    SourceRefused,
    StateUnreadable,
    TemporaryFailure,
)
from ghost_backup.host.notify import StatusThrottle, read_system_stopping
from ghost_backup.host.process import ChildResult, run_captured, run_child
from ghost_backup.host.runtime import select_runtime_dir
from ghost_backup.logs import NOTICE, Redactor, TailHandler
from ghost_backup.rclone.history import archive_folder
from ghost_backup.rclone.progress import (
    LogEvent,
    Stats,
    add_stats,
    format_bytes,
    format_progress,
    format_summary,
    is_failed_attempt,
    is_max_delete_refusal,
)
from ghost_backup.report import metrics, state
from ghost_backup.report.alerts import AlertEvent
from ghost_backup.settings import Settings

if TYPE_CHECKING:  # the dump modules load only when a [[database]] is configured
    from ghost_backup.commands.dumps import DumpOutcome

log = logging.getLogger(__name__)

STATUS_INTERVAL_SECONDS = 5.0
VERSION_TIMEOUT_SECONDS = 30.0
# A listing of 20 000 local files takes ~3 s (measured); a million, a few minutes.
LIST_TIMEOUT_SECONDS = 1800.0


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
    databases: tuple[DumpOutcome, ...] = field(default=())
    interrupted: bool = False  # stopped because the system is shutting down
    source: Figures | None = None

    @property
    def outcome(self) -> str:
        """Return ``success``, ``failure`` or ``interrupted`` (by a shutdown)."""
        if self.exit_code == ExitCode.OK:
            return "success"
        return "interrupted" if self.interrupted else "failure"


def _sync(settings: Settings, deps: Deps, window: Window, number: int,
          backstop: int | None) -> ChildResult:
    max_duration = max_duration_seconds(settings, deps, window.credentials)
    deadline = credential_deadline(settings, deps, window.credentials)
    # Each window archives into its own folder: a second --backup-dir run into the same
    # folder would overwrite the version the first window moved there (measured, 1.75.2).
    stamp = archive_folder(window.run_id, number)
    report = dest_after_path(window) if settings.destination.history_on else None
    if report is not None:
        report.unlink(missing_ok=True)  # an earlier window's report never counts
    argv = rclone.build_sync_argv(
        settings,
        config_path=window.config_path,
        work_dir=window.run_dir,
        max_duration_seconds=max_duration,
        archive_stamp=stamp,
        cache_dir=open_hash_cache(settings, window),
        max_delete=backstop,
        dest_after=report,
    )
    env = window.child_env(deps)
    status = StatusThrottle(deps.notifier, STATUS_INTERVAL_SECONDS, deps.monotonic)
    on_tick = watchdog_tick(deps)

    def on_started(pid: int) -> None:
        log.info("rclone started (pid %d), stops by itself within %ds", pid, max_duration)
        deps.notifier.send("READY=1")
        status.update(f"syncing {settings.source.path} (run {window.run_id})", force=True)

    refusals = [0]

    def on_event(event: LogEvent) -> None:
        # rclone logs one error per deletion --max-delete refused: a mass delete would flood
        # the journal past its rate limit (journald.conf RateLimitBurst=) and drop our own
        # error line. Relay the first, count the rest.
        if is_max_delete_refusal(event):
            refusals[0] += 1
            if refusals[0] > 1:
                return
        if is_failed_attempt(event) and report is not None:
            # rclone starts the whole sync again: the report would mix both attempts' lines
            # (an object the first copied and the second deleted would stay in it), so the
            # manifest comes from a listing instead.
            report.unlink(missing_ok=True)
        log_rclone_event(event)
        if event.stats is not None:
            status.update(format_progress(event.stats))

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
            deadline=deadline,
        )
    if result.last_stats is not None:  # the last figures win, however short the run
        status.update(format_progress(result.last_stats), force=True)
    if refusals[0] > 1:
        log.warning("rclone refused %d more deletions past --max-delete (lines not repeated)",
                    refusals[0] - 1)
    return result


def watchdog_tick(deps: Deps) -> Callable[[], None]:
    """Return a tick that sends ``WATCHDOG=1`` at most once per watchdog interval."""
    last_ping = [-float("inf")]

    def on_tick() -> None:
        if deps.watchdog_seconds is not None:
            now = deps.monotonic()
            if now - last_ping[0] >= deps.watchdog_seconds:
                last_ping[0] = now
                deps.notifier.send("WATCHDOG=1")

    return on_tick


def _dump_databases(settings: Settings, deps: Deps, window: Window,
                    facts: dict[str, object]) -> tuple[DumpOutcome, ...]:
    """Dump every database before the sync: a slow sync cannot eat their key lifetime."""
    if not settings.databases:
        return ()
    deps.notifier.send("READY=1")
    deps.notifier.send(f"STATUS=dumping {len(settings.databases)} database(s) "
                       f"(run {window.run_id})")
    from ghost_backup.commands.dumps import run_dumps  # noqa: PLC0415 -- only when configured

    outcomes: tuple[DumpOutcome, ...] = ()
    try:
        outcomes = run_dumps(settings, deps, window, watchdog_tick(deps))
    finally:
        facts["databases"] = outcomes
    return outcomes


def _keep_files_restore_point(settings: Settings, deps: Deps, window: Window) -> str:
    """After a good sync but a failed dump: write the night's manifest anyway, so the files
    of this night stay restorable (``restore --as-of``); prune nothing (a failed run).

    Return what to add to the run's error line (empty if the manifest was written).
    """
    if not settings.destination.history_on:
        return ""
    try:
        write_manifest(settings, deps, fresh_window(settings, deps, window, "run"))
    except GhostBackupError as err:
        return f"; the night's manifest was not written either: {err.message}"
    return "; the files' restore point was recorded"


def _prune_dumps(settings: Settings, deps: Deps, window: Window) -> None:
    """After a successful run: delete dumps older than ``retention.keep_days`` (the newest
    dump of each database is always kept), with the run's (or fresh) credentials."""
    if not settings.databases:
        return
    from ghost_backup.commands.dumps import prune_dumps  # noqa: PLC0415 -- only when configured

    window = fresh_window(settings, deps, window, "run")
    deleted = prune_dumps(settings, deps, window, keep_days=settings.retention.keep_days,
                          now=deps.clock())
    if deleted:
        log.log(NOTICE, "databases: pruned %d dump(s) older than %d days", deleted,
                settings.retention.keep_days)


def format_dump_failures(outcomes: tuple[DumpOutcome, ...]) -> str | None:
    """Return the one-line summary of failed dumps, or None if every dump succeeded."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return None
    return "database dump failed: " + "; ".join(f"{o.name} ({o.error})" for o in failed)


def run_backup(settings: Settings, deps: Deps, *, allow_shrink: bool = False) -> RunReport:
    """Run one backup from start to cleanup and return its report (never raises an Exception).

    Known failures become the report's exit code and message, logged at error priority; any
    other exception (a bug) becomes exit 70 the same way. The state file, the metrics and the
    alert channels hear about every outcome. ``allow_shrink`` (``run --allow-shrink``) lets
    this one run past the shrink guard and the deletion limit, with a warning.
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
        code, message = _run(settings, deps, run_id, source, facts, allow_shrink=allow_shrink)
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
        databases=_dumps(facts.get("databases")),
        interrupted=facts.get("interrupted") is True,
        source=_figures(facts.get("source")),
    )
    record_run(settings, report, deps.redactor, invocation_id=deps.env.get("INVOCATION_ID"))
    if facts.get("marker") is True and not report.interrupted:
        _remove_marker(settings)
    if report.interrupted:
        # A warning, not a page: healthchecks' /log leaves the check's status alone; no
        # webhook. The marker stays, so ghost-backup-resume.service reruns it at next boot.
        deps.alerts.notice(run_id, f"backup run {run_id} {message}")
    else:
        deps.alerts.finish(AlertEvent(
            run_id=run_id,
            outcome=report.outcome,
            exit_code=int(code),
            message=message,
            summary=summary_fields(report),
            log_tail=tuple(tail.lines),
        ))
    deps.redactor.forget()
    return report


def _system_stopping(settings: Settings, deps: Deps) -> bool:
    runtime_dir = select_runtime_dir(settings.runtime.dir, settings.runtime.manual_dir, deps.env)
    return read_system_stopping(runtime_dir)


def _remove_marker(settings: Settings) -> None:
    try:
        state.remove_run_marker(settings.state.dir)
    except OSError as err:
        log.error("cannot remove %s: %s (the next boot reruns the backup)",
                  state.RUN_MARKER_NAME, err.strerror)


def _dt(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _figures(value: object) -> Figures | None:
    return value if isinstance(value, Figures) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _dumps(value: object) -> tuple[DumpOutcome, ...]:
    return cast("tuple[DumpOutcome, ...]", value) if isinstance(value, tuple) else ()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def record_run(settings: Settings, report: RunReport, redactor: Redactor, *,
               invocation_id: str | None = None) -> None:
    """Write the state file and the staged metrics textfile for ``report``.

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
        databases=tuple(state.DumpRecord(
            name=d.name, ok=d.ok, object=d.key, raw_bytes=d.raw_bytes,
            stored_bytes=d.stored_bytes, sha256=d.sha256, seconds=d.seconds,
            error=redactor.redact(d.error) if d.error else None) for d in report.databases),
        interrupted=report.interrupted,
        invocation_id=invocation_id,
        source=(report.source.files, report.source.bytes) if report.source else None,
    )
    try:
        path = state.write_last_run(settings.state.dir, redactor.redact(
            state.render_last_run(record)))
        log.debug("state written to %s", path)
    except OSError as err:
        log.error("cannot write state file in %s: %s", settings.state.dir, err.strerror)
    # The textfile is staged next to the state; the unit's root ExecStopPost=+ hook
    # (`ghost-backup post-stop`) publishes it where node_exporter can read it.
    try:
        metrics.write_staged_textfile(settings.state.dir,
                                      redactor.redact(metrics.render_metrics(record)))
    except OSError as err:
        log.error("cannot write metrics textfile in %s: %s", settings.state.dir, err.strerror)


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
        **({"databases_dumped": sum(d.ok for d in report.databases),
            "databases_failed": sum(not d.ok for d in report.databases)}
           if report.databases else {}),
    }


def _window_ended(result: ChildResult) -> bool:
    """Return True if rclone stopped because its credential window ended (not a failure).

    Exit 10 is rclone's own ``--max-duration`` cutoff; a deadline stop is ours (SIGTERM, or
    SIGKILL if it lingered).
    """
    return not result.terminated and (result.returncode == 10 or result.deadline_hit)


def _sync_in_windows(
    settings: Settings, deps: Deps, scope: Scope, source: CredentialSource,
    facts: dict[str, object], *, prepare: Callable[[Window], int | None],
) -> tuple[ChildResult, Window]:
    """Sync, continuing with fresh credentials while windows end; return the last result
    and the window (with the keys) it ran in.

    ``prepare`` runs once, with the first window's keys, before the first sync (the
    database dumps, the deletion pre-flight) and returns rclone's ``--max-delete``
    backstop. Raise TemporaryFailure when a window copied nothing or the last window
    ended too; the message says how far the run got.
    """
    limit = settings.credentials.max_windows
    window: Window | None = None
    backstop: int | None = None
    totals = Stats()
    for number in range(1, limit + 1):
        if number > 1:
            log.log(NOTICE, "credential window %d ended: %d files (%s) copied so far; "
                    "fetching fresh credentials to continue", number - 1, totals.transfers,
                    format_bytes(totals.bytes))
        credentials, requested_at = fetch_audited_credentials(
            settings, deps, scope.run_id, command="run", source=source, window=number)
        facts["requested_at"] = requested_at
        facts["expires_at"] = credentials.expires_at
        if window is None:
            window = scope.open_window(credentials)
            del credentials
            backstop = prepare(window)
        else:
            window = window.renewed(credentials)
            del credentials
        result = _sync(settings, deps, window, number, backstop)
        stats = result.last_stats or Stats()
        totals = add_stats(totals, stats)
        facts["stats"] = totals
        facts["returncode"] = result.returncode
        if result.stalled:
            raise RcloneFailed(
                f"rclone stalled: no progress for {settings.rclone.stall_timeout_seconds}s; "
                "it was stopped"
            )
        if not _window_ended(result):
            return result, window
        if stats.transfers == 0 and stats.deletes == 0:
            raise TemporaryFailure(
                f"credential window {number} ended before rclone copied a single file "
                f"({totals.transfers} files, {format_bytes(totals.bytes)} copied in all); "
                "a listing or one file outlasts the keys: ask for longer-lived credentials")
    raise TemporaryFailure(
        f"sync unfinished after {limit} credential windows (credentials.max_windows): "
        f"{totals.transfers} files ({format_bytes(totals.bytes)}) copied; the next run "
        "continues from there")


def fetch_inventory(settings: Settings, deps: Deps, window: Window | None) -> rclone.Inventory:
    """List the source (``window`` None: no keys needed) or the backup, as the sync sees them.

    Raise SourceRefused if the source cannot be listed, the listing failure's typed error if
    the backup cannot. A backup prefix that does not exist yet lists as empty.
    """
    if window is None:
        location, config, env = str(settings.source.path), None, rclone.build_plain_env(deps.env)
        timeout = LIST_TIMEOUT_SECONDS
    else:
        location, config, env = rclone.remote_path(settings), window.config_path, \
            window.child_env(deps)
        left = remaining_seconds(deps, window.credentials)
        timeout = max(1.0, min(LIST_TIMEOUT_SECONDS,
                               left - settings.credentials.safety_margin_seconds))
    argv = rclone.build_inventory_argv(settings, location=location, config_path=config,
                                       remote=window is not None)
    result = run_captured(argv, env, timeout_seconds=timeout)
    if result.returncode == 0:
        return rclone.parse_inventory(result.stdout)
    if window is None:
        last = next((ln for ln in reversed(result.stderr.splitlines()) if ln.strip()), "")
        raise SourceRefused(deps.redactor.redact(
            f"cannot list source {location} through rclone (exit {result.returncode}): "
            f"{last[-200:]}; nothing synced"))
    if result.returncode == 3 and "directory not found" in result.stderr:
        return rclone.parse_inventory("")  # the first run: nothing backed up there yet
    raise rclone.classify_list_failure(result.returncode, result.stderr,
                                       what="cannot list the backup: ",
                                       redact=deps.redactor.redact)


def _state_baseline(settings: Settings) -> Figures | None:
    """Return the source figures of the last successful run, if the state file has them."""
    try:
        previous = state.read_last_run(settings.state.dir)
    except StateUnreadable as err:
        log.warning("shrink guard: %s; comparing with the backup instead", err.message)
        return None
    if previous is None or previous.last_success_source_files is None:
        return None
    return Figures(previous.last_success_source_files, previous.last_success_source_bytes or 0)


def _guard_shrink(settings: Settings, now: Figures, before: Figures, what: str,
                  allow_shrink: bool) -> None:
    why = judge_shrink(now, before, fraction=settings.source.min_fraction_of_last, what=what)
    if why is None:
        return
    if allow_shrink:
        log.warning("--allow-shrink: %s (source.min_fraction_of_last = %g); syncing anyway "
                    "for this run", why, settings.source.min_fraction_of_last)
        return
    raise SourceRefused(
        f"shrink guard: {why} (source.min_fraction_of_last = "
        f"{settings.source.min_fraction_of_last:g}); nothing synced. If the source really "
        "shrank, run `ghost-backup run --allow-shrink` once")


def _preflight(settings: Settings, deps: Deps, window: Window, listing: rclone.Inventory,
               view: MirrorView | None, *, baseline_known: bool,
               allow_shrink: bool) -> int | None:
    """Judge the shrink (no state file) and the deletions against the backup: ``view`` (the
    history's picture of the mirror), else one listing of it.

    Return rclone's ``--max-delete`` backstop. Raise SourceRefused or DeleteGuardTripped
    before anything at the destination is touched.
    """
    setting = settings.rclone.max_delete
    if baseline_known and setting == 0:
        return None
    backup = view.inventory if view is not None else fetch_inventory(settings, deps, window)
    now = Figures(listing.files, listing.bytes)
    if not baseline_known and backup.files:
        _guard_shrink(settings, now, Figures(backup.files, backup.bytes), "the backup",
                      allow_shrink)
    plan = plan_deletes(listing, backup)
    limit = resolve_delete_limit(setting, plan.held)
    log.info("pre-flight: the backup holds %d objects; the sync deletes %d and resizes %d "
             "(rclone.max_delete = %r allows %s deletions)", plan.held, plan.deletes,
             plan.resized, setting, "any number of" if limit is None else limit)
    why = judge_deletes(plan, limit, setting)
    if why is not None:
        if not allow_shrink:
            raise DeleteGuardTripped(
                f"deletion guard: {why}; nothing was deleted. If the source really lost "
                "them, run `ghost-backup run --allow-shrink` once")
        log.warning("--allow-shrink: %s; deleting them for this run", why)
        # The operator allowed this run's deletions: with the history on, rclone would count
        # every overwrite as one more, and no backstop slack fits a deliberate mass change.
        return None
    return build_backstop(plan, limit, history=bool(settings.destination.archive_path))


def _run(
    settings: Settings, deps: Deps, run_id: str, source: CredentialSource,
    facts: dict[str, object], *, allow_shrink: bool,
) -> tuple[ExitCode, str]:
    started = deps.monotonic()
    try:
        with command_scope(settings, deps, run_id) as scope:
            try:  # under the lock: only this run can own the marker now
                state.write_run_marker(settings.state.dir, run_id)
                facts["marker"] = True
            except OSError as err:
                log.warning("cannot write %s in %s: %s (a shutdown during this run will not "
                            "be resumed at boot)", state.RUN_MARKER_NAME, settings.state.dir,
                            err.strerror)
            check_source(settings.source)
            facts["rclone_version"] = fetch_rclone_version(settings, deps.env, cached=True)
            listing = fetch_inventory(settings, deps, None)
            check_rclone_sees_files(settings.source.path, listing)
            now = Figures(listing.files, listing.bytes)
            facts["source"] = now
            log.info("source as rclone sees it: %s", now.describe())
            baseline = _state_baseline(settings)
            if baseline is not None:
                _guard_shrink(settings, now, baseline, "the last successful run", allow_shrink)
            dump_failures: list[str | None] = [None]
            views: list[MirrorView | None] = [None]

            def prepare(window: Window) -> int | None:
                # Dumps first: a guard refusing the file sync must not cost a night's dumps.
                dump_failures[0] = format_dump_failures(
                    _dump_databases(settings, deps, window, facts))
                record = take_mirror_record(settings)  # gone before this run can change it
                if settings.destination.history_on:
                    views[0] = fetch_mirror_view(settings, deps, window, record)
                return _preflight(settings, deps, window, listing, views[0],
                                  baseline_known=baseline is not None, allow_shrink=allow_shrink)

            result, window = _sync_in_windows(settings, deps, scope, source, facts,
                                              prepare=prepare)
            dump_failure = dump_failures[0]
            error: GhostBackupError | None = rclone.classify_exit(
                result.returncode, terminated=result.terminated,
                max_delete_hit=result.max_delete_hit,
            )
            if result.stalled:
                error = RcloneFailed(
                    f"rclone stalled: no progress for {settings.rclone.stall_timeout_seconds}s; "
                    "it was stopped"
                )
            if error is not None:
                if dump_failure:  # the sync's failure decides the code; both are reported
                    error.message = f"{error.message}; {dump_failure}"
                raise error
            if dump_failure:
                raise DatabaseFailed(f"{dump_failure}; the file sync finished"
                                     + _keep_files_restore_point(settings, deps, window))
            # Only a successful run prunes old history (files and dumps).
            window = record_history(settings, deps, window, views[0])
            _prune_dumps(settings, deps, window)
            log.log(NOTICE, "backup run %s finished successfully", run_id)
            return ExitCode.OK, "backup finished"
    except GhostBackupError as err:
        if err.exit_code == ExitCode.TERMINATED and _system_stopping(settings, deps):
            facts["interrupted"] = True
            log.warning("backup run %s interrupted by system shutdown; the next boot resumes "
                        "it (ghost-backup-resume.service)", run_id)
            return err.exit_code, "interrupted by system shutdown; resumes at next boot"
        log.error("backup run %s failed: %s", run_id, err.message)
        return err.exit_code, err.message
    except Exception as err:  # a bug must still leave state, /fail and the webhook
        # The scope above has already shredded the run dir and released the lock. The message
        # names the exception's type only: its text might quote a key or a proxy's answer
        # (the traceback appears with --verbose, redacted by value like every line).
        message = f"internal error ({type(err).__name__}): a bug; run with --verbose and report it"
        log.error("backup run %s failed: %s", run_id, message, exc_info=True)
        return ExitCode.INTERNAL, message
    finally:
        if "returncode" in facts:
            stats = facts.get("stats")
            log.log(NOTICE, "backup run %s %s",
                    run_id, format_summary(stats if isinstance(stats, Stats) else None,
                                           deps.monotonic() - started))
