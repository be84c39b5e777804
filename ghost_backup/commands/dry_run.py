"""``ghost-backup run --dry-run``: what tonight's sync would copy and delete, changing nothing.

The same path as ``run`` up to the sync (runtime dir, lock, source guard, rclone version, an
audited just-in-time credential fetch, the per-run config), then ``rclone sync --dry-run``
with the same filters and archive settings. rclone's "Skipped copy/delete as --dry-run is
set" lines are counted instead of logged one by one (and its progress figures, which count
those skipped copies as transfers, are not logged). No state file, metrics or alert: a
dry run is not a backup and must not look like one to monitoring.
"""

from __future__ import annotations

import logging

from ghost_backup import rclone
from ghost_backup.commands.context import (
    Deps,
    command_scope,
    fetch_audited_credentials,
    fetch_rclone_version,
    log_rclone_event,
    max_duration_seconds,
    new_run_id,
    open_hash_cache,
    run_rclone,
)
from ghost_backup.commands.guards import check_source
from ghost_backup.errors import RcloneFailed, TemporaryFailure
from ghost_backup.rclone.progress import DryRunPlan, LogEvent, add_dry_run_event, format_dry_run
from ghost_backup.settings import Settings

log = logging.getLogger(__name__)

SHOWN_PATHS = 20


def run_dry_run(settings: Settings, deps: Deps, *, shown: int = SHOWN_PATHS) -> str:
    """Run ``rclone sync --dry-run`` with just-in-time credentials and return the report:
    counts and sizes of what would be copied and deleted, and the first ``shown`` paths of each.

    Raise the same typed errors as ``run`` (source refused, credentials, rclone failure).
    """
    check_source(settings.source)
    if settings.rclone.log_level == "ERROR":  # the "Skipped ..." lines are NOTICE
        settings = settings.model_copy(
            update={"rclone": settings.rclone.model_copy(update={"log_level": "NOTICE"})})
    run_id = new_run_id(deps.clock())
    plan = [DryRunPlan()]

    def on_event(event: LogEvent) -> None:
        if event.skipped is not None:
            plan[0] = add_dry_run_event(plan[0], event, keep=shown)
        elif event.stats is None:  # a dry run's figures count skipped copies as transfers
            log_rclone_event(event)

    with command_scope(settings, deps, run_id) as scope:
        fetch_rclone_version(settings, deps.env)
        credentials, _ = fetch_audited_credentials(settings, deps, run_id, command="dry-run")
        window = scope.open_window(credentials)
        argv = rclone.build_sync_argv(
            settings, config_path=window.config_path, work_dir=window.run_dir,
            max_duration_seconds=max_duration_seconds(settings, deps, credentials),
            archive_stamp=run_id, dry_run=True,
            cache_dir=open_hash_cache(settings, window))
        result = run_rclone(settings, deps, argv, window, on_event=on_event)
    if result.deadline_hit:
        raise TemporaryFailure("the dry run did not finish before its credentials expired "
                               "(rclone was stopped); ask for longer-lived credentials")
    if result.returncode != 0:
        error = rclone.classify_exit(result.returncode, terminated=result.terminated,
                                     max_delete_hit=result.max_delete_hit)
        raise error or RcloneFailed(f"rclone sync --dry-run exited {result.returncode}")
    archive = settings.destination.archive_path
    return format_dry_run(
        plan[0], source=str(settings.source.path), destination=rclone.remote_path(settings),
        archive=rclone.remote_path(settings, f"{archive}/<run id>") if archive else None,
        max_delete=settings.rclone.max_delete if isinstance(settings.rclone.max_delete, int)
        else None)
