"""``ghost-backup restore``: copy the backup (or one archive folder, or a part of either) into
a directory, with fresh just-in-time credentials, then check it against the backup.

    target guard -> rclone version -> scope (runtime dir + lock) -> credential fetch
    -> [archive folder] -> rclone copy (progress; fresh credentials per window)
    -> rclone check --one-way (backup -> target)

Restore is ``copy``, never ``sync``: even ``--force`` over live data deletes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ghost_backup import rclone
from ghost_backup.commands.context import (
    COMBINED_NAME,
    Deps,
    Scope,
    Window,
    command_scope,
    fetch_audited_credentials,
    fetch_rclone_version,
    max_duration_seconds,
    new_run_id,
    raise_on_problems,
    read_check_report,
    remaining_seconds,
    run_rclone,
)
from ghost_backup.commands.guards import check_restore_target
from ghost_backup.errors import RcloneFailed, TemporaryFailure, UsageError
from ghost_backup.host.paths import create_private_dir, find_unsafe_entry, remove_dir_if_empty
from ghost_backup.host.process import run_captured
from ghost_backup.logs import NOTICE
from ghost_backup.rclone.progress import Stats, format_bytes
from ghost_backup.settings import Settings

log = logging.getLogger(__name__)

LIST_TIMEOUT_SECONDS = 120.0
# A restore larger than one credential lifetime continues with fresh credentials, each
# window bounded by --max-duration; this caps the number of windows (and proxy requests).
MAX_RESTORE_WINDOWS = 48


@dataclass(frozen=True)
class RestoreRequest:
    """What the operator asked ``restore`` to do."""

    target: Path
    subpath: str | None = None
    dry_run: bool = False
    from_archive: str | None = None
    force: bool = False


def check_subpath(subpath: str | None) -> str | None:
    """Return ``subpath`` without surrounding slashes; raise UsageError if it leaves the backup."""
    if subpath is None:
        return None
    cleaned = subpath.strip().strip("/")
    if not cleaned or ".." in cleaned.split("/") or "\n" in cleaned:
        raise UsageError("--path must be a relative path inside the backup, without '..'")
    return cleaned


def run_restore(settings: Settings, deps: Deps, request: RestoreRequest) -> str:
    """Restore the backup (or one archive folder, or a part of either) into ``request.target``.

    Return a one-line summary. Raise UsageError for an unsafe target or request,
    VerifyMismatch if the restored files do not match the backup afterwards.
    """
    subpath = check_subpath(request.subpath)
    target = check_restore_target(request.target, settings.source, force=request.force,
                                  subpath=subpath)
    if request.from_archive is not None and settings.destination.archive_path is None:
        raise UsageError("--from-archive needs destination.archive_path in the configuration")
    run_id = new_run_id(deps.clock())
    version = fetch_rclone_version(settings, deps.env)
    log.info("restore %s starting (rclone %s) into %s%s", run_id, version or "unknown", target,
             " (dry run)" if request.dry_run else "")
    with command_scope(settings, deps, run_id) as scope:
        credentials, _ = fetch_audited_credentials(settings, deps, run_id, command="restore")
        if not request.dry_run:
            _claim_target(scope, target, force=request.force, subpath=subpath)
        # replaced with fresh credentials when a window runs out
        window = scope.open_window(credentials)
        source_remote = rclone.remote_path(settings)
        if request.from_archive is not None:
            folder = _pick_archive(settings, deps, window, request.from_archive)
            source_remote = rclone.remote_path(
                settings, f"{settings.destination.archive_path}/{folder}")
        what = source_remote + (f" (only {subpath})" if subpath else "")
        log.log(NOTICE, "restoring %s -> %s", what, target)
        files = nbytes = 0
        for number in range(1, MAX_RESTORE_WINDOWS + 1):
            if number > 1:
                log.log(NOTICE, "restore: credential window %d ended after %d files; "
                        "fetching fresh credentials to continue", number - 1, files)
                window = _refresh(settings, deps, window, "restore")
            argv = rclone.build_restore_argv(
                settings, config_path=window.config_path, work_dir=window.run_dir,
                source_remote=source_remote, target=target, subpath=subpath,
                dry_run=request.dry_run,
                max_duration_seconds=max_duration_seconds(settings, deps, window.credentials),
            )
            result = run_rclone(settings, deps, argv, window.child_env(deps))
            stats = result.last_stats or Stats()
            files, nbytes = files + stats.transfers, nbytes + stats.bytes
            if result.returncode != 10:  # 10: --max-duration reached, keys about to expire
                break
            if stats.transfers == 0:
                raise TemporaryFailure(
                    "restore made no progress within a whole credential window (listing "
                    "alone outlasts the keys?); ask for longer-lived credentials or "
                    "restore a smaller --path")
        _judge_copy(result.returncode, stats, what, files)
        if request.dry_run:
            return (f"dry run: would restore {stats.total_transfers or stats.transfers} "
                    f"files from {what} into {target}; nothing was written")
        if remaining_seconds(deps, window.credentials) < settings.credentials.min_validity_seconds:
            window = _refresh(settings, deps, window, "restore")
        check_argv = rclone.build_check_argv(
            settings, config_path=window.config_path, work_dir=window.run_dir,
            left=source_remote, right=str(target),
            combined_path=window.run_dir / COMBINED_NAME,
            filters=rclone.build_subpath_filters(subpath),
        )
        report = read_check_report(settings, deps, window, check_argv, "restore check")
        raise_on_problems(report, "restore check")
    return (f"restored {files} files ({format_bytes(nbytes)}) from {what} into "
            f"{target}; verified {report.matching} files identical to the backup")


def _claim_target(scope: Scope, target: Path, *, force: bool, subpath: str | None) -> None:
    """Create the target now, exclusively and 0700 (or, with ``force``, re-check the existing
    tree): after the credential fetch, so whatever appeared meanwhile is refused, not used.

    A target we created and left empty (nothing restored) is removed when the scope ends.
    """
    if force and target.is_dir() and not target.is_symlink():
        problem = find_unsafe_entry(target, subpath)
        if problem is not None:
            raise UsageError(f"refusing to restore into {target}: {problem}")
        return
    try:
        create_private_dir(target)
    except FileExistsError:
        raise UsageError(f"restore target {target} appeared while credentials were fetched "
                         "(someone else created it); refusing to use it") from None
    except OSError as err:
        raise UsageError(f"cannot create restore target {target}: {err.strerror}") from None
    scope.on_exit(lambda: remove_dir_if_empty(target))


def _refresh(settings: Settings, deps: Deps, window: Window, command: str) -> Window:
    """Return ``window`` with fresh credentials (a new audited request, same run id).

    The config on tmpfs holds no key, so only rclone's environment changes.
    """
    fresh, _ = fetch_audited_credentials(settings, deps, window.run_id, command=command)
    return window.renewed(fresh)


def _judge_copy(returncode: int, stats: Stats, what: str, files: int) -> None:
    if returncode == 10:
        raise TemporaryFailure(
            f"restore still unfinished after {MAX_RESTORE_WINDOWS} credential windows; run the "
            "same command again with --force: files already restored are skipped")
    if returncode != 0:
        raise RcloneFailed(f"restore copy failed (rclone exit {returncode}); "
                           "see the rclone lines above")
    if files == 0 and stats.checks == 0 and stats.total_transfers == 0:
        raise UsageError(f"nothing to restore: no objects under {what}")


def _pick_archive(settings: Settings, deps: Deps, window: Window, wanted: str) -> str:
    argv = rclone.build_archive_list_argv(settings, config_path=window.config_path,
                                          work_dir=window.run_dir)
    result = run_captured(argv, window.child_env(deps), timeout_seconds=LIST_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise rclone.classify_list_failure(result.returncode, result.stderr,
                                           what="cannot list archive folders: ")
    try:
        folder = rclone.select_archive(tuple(result.stdout.splitlines()), wanted)
    except ValueError as err:
        raise UsageError(str(err)) from None
    log.info("restoring from archive folder %s", folder)
    return folder
