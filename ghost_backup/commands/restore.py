"""``ghost-backup restore``: copy the backup (or one archive folder, or a part of either) into
a directory, with fresh just-in-time credentials, then check it against the backup; or, with
``--as-of``, rebuild the tree exactly as the mirror held it right after a past run.

    target guard -> rclone version -> scope (runtime dir + lock) -> credential fetch
    -> [archive folder] -> rclone copy (progress; fresh credentials per window)
    -> rclone check --one-way (backup -> target)

    --as-of:  ... credential fetch -> lsf the history -> choose the point -> cat its manifest
    -> plan (each path from the earliest later archive folder, else the mirror)
    -> one rclone copy --files-from-raw per source (fresh credentials per window)
    -> every file hashed against the manifest (size and MD5)

Restore is ``copy``, never ``sync``: even ``--force`` over live data deletes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
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
from ghost_backup.commands.history import fetch_archive_listing, fetch_manifest
from ghost_backup.errors import RcloneFailed, TemporaryFailure, UsageError
from ghost_backup.host import files as private_files
from ghost_backup.host.paths import create_private_dir, find_unsafe_entry, remove_dir_if_empty
from ghost_backup.host.process import ChildResult, run_captured
from ghost_backup.logs import NOTICE
from ghost_backup.rclone import history as hist
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
    as_of: str | None = None


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
    if (request.from_archive is not None or request.as_of is not None) and (
            not settings.destination.history_on):
        raise UsageError("--from-archive and --as-of need the history "
                         "(destination.archive_path), which is off in the configuration")
    if request.from_archive is not None and request.as_of is not None:
        raise UsageError("--from-archive and --as-of exclude each other")
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
        if request.as_of is not None:
            return _restore_as_of(settings, deps, window, request.as_of, subpath=subpath,
                                  target=target, dry_run=request.dry_run)
        source_remote = rclone.remote_path(settings)
        if request.from_archive is not None:
            folder = _pick_archive(settings, deps, window, request.from_archive)
            source_remote = rclone.remote_path(
                settings, f"{settings.destination.archive_path}/{folder}")
        what = source_remote + (f" (only {subpath})" if subpath else "")
        log.log(NOTICE, "restoring %s -> %s", what, target)

        def argv_for(window: Window) -> tuple[str, ...]:
            return rclone.build_restore_argv(
                settings, config_path=window.config_path, work_dir=window.run_dir,
                source_remote=source_remote, target=target, subpath=subpath,
                dry_run=request.dry_run,
                max_duration_seconds=max_duration_seconds(settings, deps, window.credentials),
            )

        window, result, files, nbytes = _copy_in_windows(settings, deps, window, argv_for)
        stats = result.last_stats or Stats()
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


def _copy_in_windows(settings: Settings, deps: Deps, window: Window,
                     argv_for: Callable[[Window], tuple[str, ...]],
                     ) -> tuple[Window, ChildResult, int, int]:
    """Run one rclone copy, continuing with fresh credentials each time a window runs out.

    Return the last window, the last result, and the files and bytes copied in all windows.
    Raise TemporaryFailure if a whole window copied nothing.
    """
    files = nbytes = 0
    for number in range(1, MAX_RESTORE_WINDOWS + 1):
        if number > 1:
            log.log(NOTICE, "restore: credential window %d ended after %d files; "
                    "fetching fresh credentials to continue", number - 1, files)
            window = _refresh(settings, deps, window, "restore")
        result = run_rclone(settings, deps, argv_for(window), window)
        stats = result.last_stats or Stats()
        files, nbytes = files + stats.transfers, nbytes + stats.bytes
        # 10: rclone's --max-duration cutoff; or the supervisor stopped it before the keys
        # expired (a listing --max-duration does not bound): the window ended, not the copy.
        if result.returncode != 10 and not result.deadline_hit:
            break
        if stats.transfers == 0:
            raise TemporaryFailure(
                "restore made no progress within a whole credential window (listing "
                "alone outlasts the keys?); ask for longer-lived credentials or "
                "restore a smaller --path")
    return window, result, files, nbytes


def _restore_as_of(settings: Settings, deps: Deps, window: Window, as_of: str, *,
                   subpath: str | None, target: Path, dry_run: bool) -> str:
    """Rebuild ``target`` as the mirror was right after the point ``--as-of`` names.

    Raise UsageError for a point that cannot be rebuilt (older than ``retention.keep_days``,
    before the first restore point, a run that left no manifest), VerifyMismatch if a file
    written does not match the manifest.
    """
    listing = fetch_archive_listing(settings, deps, window)
    try:
        point = hist.select_point(listing, as_of, now=deps.clock(),
                                  keep_days=settings.retention.keep_days)
    except ValueError as err:
        raise UsageError(str(err)) from None
    wanted = hist.filter_subpath(fetch_manifest(settings, deps, window, point), subpath)
    what = f"the backup as of {hist.format_point(point)}" + (
        f" (only {subpath})" if subpath else "")
    if not wanted:
        raise UsageError(f"nothing to restore: no objects in {what}")
    groups = hist.plan_as_of(listing, point, wanted)
    total = sum(e.size for e in wanted.values())
    sources = ", ".join(f"{g.source or 'mirror'}: {len(g.paths)}" for g in groups)
    log.log(NOTICE, "restoring %s -> %s: %d files (%s) from %d places (%s)", what, target,
            len(wanted), format_bytes(total), len(groups), sources)
    if dry_run:
        return (f"dry run: would restore {len(wanted)} files ({format_bytes(total)}) from "
                f"{what} into {target}; nothing was written")
    copied = nbytes = 0
    for number, group in enumerate(groups):
        if remaining_seconds(deps, window.credentials) < settings.credentials.min_validity_seconds:
            window = _refresh(settings, deps, window, "restore")
        listed = private_files.write_private_file(
            window.run_dir, f"as-of-{number}.txt", "".join(p + "\n" for p in group.paths))

        def argv_for(window: Window, group: hist.CopyGroup = group,
                     listed: Path = listed) -> tuple[str, ...]:
            return hist.build_group_copy_argv(
                settings, config_path=window.config_path, work_dir=window.run_dir,
                group=group, files_from=listed, target=target,
                max_duration_seconds=max_duration_seconds(settings, deps, window.credentials))

        window, result, files, size = _copy_in_windows(settings, deps, window, argv_for)
        if result.returncode == 10:
            _judge_copy(10, Stats(), what, copied)
        if result.returncode != 0:
            raise RcloneFailed(f"restore copy from {group.source or 'the mirror'} failed "
                               f"(rclone exit {result.returncode}); see the rclone lines above")
        copied, nbytes = copied + files, nbytes + size
    report = check_against_manifest(target, wanted)
    raise_on_problems(report, "restore check")
    return (f"restored {copied} files ({format_bytes(nbytes)}) from {what} into {target}; "
            f"verified {report.matching} files identical to the manifest (size and MD5)")


def check_against_manifest(target: Path, wanted: hist.Manifest) -> rclone.CheckReport:
    """Hash every file of ``wanted`` under ``target``; return what matches the manifest.

    MD5 is what S3 keeps for every single-part object (the ETag); a manifest entry without one
    (a multipart upload) is checked by size only.
    """
    matching = 0
    differ: list[str] = []
    missing: list[str] = []
    for path, entry in sorted(wanted.items()):
        local = target / path
        if not local.is_file() or local.is_symlink():
            missing.append(path)
        elif local.stat().st_size != entry.size or (entry.md5 and _md5(local) != entry.md5):
            differ.append(path)
        else:
            matching += 1
    return rclone.CheckReport(matching=matching, differ=tuple(differ), missing=tuple(missing))


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
