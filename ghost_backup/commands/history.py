"""The history at the destination, with just-in-time credentials: write a run's manifest,
prune what retention no longer keeps, read points back, and ``ghost-backup history``.

The layout, the choice of points and the plans are pure (:mod:`ghost_backup.rclone.history`);
this module only lists, reads, uploads and deletes, through ``run_captured``.

    run (before the sync):  take the local mirror record -> lsf the archive's top level
                            -> the record if it still describes the mirror, else lsf the mirror
    run (after a successful sync):  the sync's --dest-after report (else lsf the mirror)
                            -> <run id>.manifest (+ the local record)
                            -> prune folders (each listed, then deleted) + manifests
    history:  scope -> credentials -> lsf the archive -> cat each manifest -> lsf the mirror

A no-change night therefore lists the mirror once (the sync's own listing) and the archive's
top level once, and uploads one manifest (docs/performance.md, "What the history adds").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ghost_backup.commands.context import (
    Deps,
    Window,
    command_scope,
    fetch_audited_credentials,
    new_run_id,
    remaining_seconds,
)
from ghost_backup.errors import GhostBackupError, RcloneFailed, UsageError
from ghost_backup.host import files
from ghost_backup.host.process import Captured, run_captured
from ghost_backup.logs import NOTICE
from ghost_backup.rclone import Inventory, classify_list_failure, parse_inventory
from ghost_backup.rclone import history as hist
from ghost_backup.rclone.progress import format_bytes
from ghost_backup.settings import Settings

if TYPE_CHECKING:  # the dump modules load only when a [[database]] is configured
    from ghost_backup.databases.objects import DumpObject

log = logging.getLogger(__name__)

DEST_AFTER_NAME = "dest-after.manifest"

# Upper bound of one listing or upload; a call never outlives the keys either (see _timeout).
CALL_TIMEOUT_SECONDS = 1800.0
_MIN_CALL_SECONDS = 10.0


def _timeout(settings: Settings, deps: Deps, window: Window) -> float:
    left = remaining_seconds(deps, window.credentials) - settings.credentials.safety_margin_seconds
    return max(_MIN_CALL_SECONDS, min(CALL_TIMEOUT_SECONDS, left))


def fresh_window(settings: Settings, deps: Deps, window: Window, command: str) -> Window:
    """Return ``window``, with fresh audited credentials if fewer than
    ``credentials.min_validity_seconds`` are left (a long sync used most of them)."""
    if remaining_seconds(deps, window.credentials) >= settings.credentials.min_validity_seconds:
        return window
    log.info("credentials expire soon; fetching fresh ones for the history step")
    fresh, _ = fetch_audited_credentials(settings, deps, window.run_id, command=command)
    return window.renewed(fresh)


def _call(settings: Settings, deps: Deps, window: Window, argv: tuple[str, ...]) -> Captured:
    return run_captured(argv, window.child_env(deps), timeout_seconds=_timeout(settings, deps,
                                                                               window))


def _is_missing(result: Captured) -> bool:
    # An archive prefix no run has written yet: S3 lists nothing (exit 0), a folder-backed
    # endpoint says "directory not found" (exit 3). A missing bucket is an error.
    return result.returncode == 3 and "NoSuchBucket" not in result.stderr


def fetch_archive_listing(settings: Settings, deps: Deps, window: Window) -> hist.ArchiveListing:
    """List ``<archive_path>`` once (one ListObjectsV2 call per 1000 objects) and parse it.

    Raise the typed listing failure (65 refused keys, 78 no bucket, 1 otherwise).
    """
    argv = hist.build_archive_listing_argv(settings, config_path=window.config_path,
                                           work_dir=window.run_dir)
    return _list_archive(settings, deps, window, argv, "cannot list the history: ")


def _list_archive(settings: Settings, deps: Deps, window: Window, argv: tuple[str, ...],
                  what: str) -> hist.ArchiveListing:
    result = _call(settings, deps, window, argv)
    if _is_missing(result):
        return hist.ArchiveListing((), ())
    if result.returncode != 0:
        raise classify_list_failure(result.returncode, result.stderr, what=what,
                                    redact=deps.redactor.redact)
    return hist.parse_archive_listing(result.stdout)


def fetch_mirror_listing(settings: Settings, deps: Deps, window: Window) -> str:
    """List the mirror as a manifest (through the sync's filters); return the text."""
    argv = hist.build_mirror_manifest_argv(settings, config_path=window.config_path,
                                           work_dir=window.run_dir)
    result = _call(settings, deps, window, argv)
    if _is_missing(result):
        return ""
    if result.returncode != 0:
        raise classify_list_failure(result.returncode, result.stderr,
                                    what="cannot list the mirror: ", redact=deps.redactor.redact)
    return result.stdout


def fetch_mirror_manifest(settings: Settings, deps: Deps, window: Window) -> hist.Manifest:
    """List the mirror as a manifest and parse it."""
    try:
        return hist.parse_manifest(fetch_mirror_listing(settings, deps, window))
    except ValueError as err:
        raise RcloneFailed(f"mirror listing not understood: {err}") from None


def fetch_manifest(settings: Settings, deps: Deps, window: Window, run_id: str) -> hist.Manifest:
    """Read ``<run id>.manifest`` from the history and parse it."""
    argv = hist.build_manifest_read_argv(settings, config_path=window.config_path,
                                         work_dir=window.run_dir, run_id=run_id)
    result = _call(settings, deps, window, argv)
    if result.returncode != 0:
        raise classify_list_failure(result.returncode, result.stderr,
                                    what=f"cannot read the manifest of run {run_id}: ",
                                    redact=deps.redactor.redact)
    try:
        return hist.parse_manifest(result.stdout)
    except ValueError as err:
        raise RcloneFailed(f"manifest of run {run_id} is damaged: {err}") from None


@dataclass(frozen=True)
class MirrorView:
    """What the mirror held when this run started, and the archive's top level then."""

    inventory: Inventory  # path -> size, through the sync's filters
    index: hist.ArchiveListing
    listed: bool  # False: the last run's record, no listing of the mirror spent


def take_mirror_record(settings: Settings) -> hist.MirrorRecord | None:
    """Read and delete ``<state.dir>/mirror.manifest``; return it, or None if absent or bad.

    Deleted before the sync starts, so a run that dies after changing the mirror leaves no
    record behind for the next one to trust.
    """
    path = settings.state.dir / hist.RECORD_NAME
    try:
        with path.open(encoding="utf-8") as lines:
            path.unlink()  # first: a record that cannot be read is gone all the same
            return hist.parse_record(lines)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        log.warning("cannot use the mirror record %s (%s); listing the mirror instead", path,
                    getattr(err, "strerror", None) or type(err).__name__)
        return None
    except ValueError:
        log.warning("mirror record %s is damaged; listing the mirror instead", path)
        return None


def write_mirror_record(settings: Settings, run_id: str, manifest: Path) -> None:
    """Keep the manifest file just uploaded as the next run's picture of the mirror (0600)."""
    path = settings.state.dir / hist.RECORD_NAME
    try:
        header = hist.render_record_header(run_id, hist.build_mirror_key(settings))
        files.write_file_atomically(path, header + manifest.read_text(encoding="utf-8"), 0o600)
    except OSError as err:
        log.warning("cannot write the mirror record %s (%s); the next run lists the mirror",
                    path, err.strerror)


def fetch_archive_index(settings: Settings, deps: Deps, window: Window, *,
                        what: str = "cannot list the history: ") -> hist.ArchiveListing:
    """List the top level of ``<archive_path>``: manifests and folder names, no objects.

    ``what`` starts the error line (the run's first listing with keys names the backup)."""
    argv = hist.build_archive_index_argv(settings, config_path=window.config_path,
                                         work_dir=window.run_dir)
    return _list_archive(settings, deps, window, argv, what)


def fetch_mirror_view(settings: Settings, deps: Deps, window: Window,
                      record: hist.MirrorRecord | None) -> MirrorView:
    """Before the sync: return what the mirror holds, from the last run's ``record`` when it
    still describes the mirror (one small listing), else from a listing of the mirror."""
    index = fetch_archive_index(settings, deps, window, what="cannot list the backup: ")
    if record is not None:
        why = hist.judge_record(record, index, hist.build_mirror_key(settings))
        if why is None:
            log.info("history: the mirror is as run %s left it (its record); not listed",
                     record.run_id)
            return MirrorView(Inventory(record.sizes), index, False)
        log.info("history: not using the mirror record of run %s: %s; listing the mirror",
                 record.run_id, why)
    try:
        sizes = hist.parse_manifest_sizes(
            fetch_mirror_listing(settings, deps, window).splitlines())
    except ValueError as err:
        raise RcloneFailed(f"mirror listing not understood: {err}") from None
    return MirrorView(Inventory(sizes), index, True)


def dest_after_path(window: Window) -> Path:
    """Return where the sync writes what the mirror holds after it (``--dest-after``)."""
    return window.run_dir / DEST_AFTER_NAME


def _summarize(path: Path) -> tuple[int, int] | None:
    """Return (objects, bytes) of a manifest file, read line by line; None if unusable."""
    try:
        with path.open(encoding="utf-8") as lines:
            return hist.summarize_manifest(lines)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        log.warning("rclone's --dest-after report is unusable (%s); listing the mirror",
                    type(err).__name__)
        return None


def write_manifest(settings: Settings, deps: Deps, window: Window) -> int:
    """Record what the mirror holds now as ``<run id>.manifest``; return its object count.

    Called only after a successful sync: the manifest is what makes the run a restore point.
    It is the sync's own ``--dest-after`` report (rclone's listing plus what it copied and
    deleted: no request), uploaded as the file rclone wrote, else a listing of the mirror.
    Either way it is a file in the tmpfs run dir (the config's 0700 directory), never held
    whole in memory on the report's path, and it is kept as the local mirror record.
    """
    local = window.run_dir / hist.manifest_name(window.run_id)
    report = dest_after_path(window)
    summary = _summarize(report) if report.exists() else None
    if summary is not None:
        report.replace(local)
    else:
        local = files.write_private_file(window.run_dir, local.name,
                                         fetch_mirror_listing(settings, deps, window))
        summary = _summarize(local)
        if summary is None:
            raise RcloneFailed("mirror listing not understood; the run's manifest was not "
                               "written")
    argv = hist.build_manifest_upload_argv(settings, config_path=window.config_path,
                                           work_dir=window.run_dir, local=local,
                                           run_id=window.run_id)
    result = _call(settings, deps, window, argv)
    if result.returncode != 0:
        raise classify_list_failure(result.returncode, result.stderr,
                                    what="cannot write the run's manifest: ",
                                    redact=deps.redactor.redact)
    objects, total = summary
    log.info("history: recorded %s (%d objects, %s)", hist.manifest_name(window.run_id),
             objects, format_bytes(total))
    write_mirror_record(settings, window.run_id, local)
    return objects


def fetch_folder(settings: Settings, deps: Deps, window: Window,
                 folder: hist.Folder) -> hist.Folder:
    """Return ``folder`` with its objects, listed (one ListObjectsV2 call per 1000)."""
    argv = hist.build_folder_listing_argv(settings, config_path=window.config_path,
                                          work_dir=window.run_dir, name=folder.name)
    result = _call(settings, deps, window, argv)
    if _is_missing(result):
        return folder
    if result.returncode != 0:
        raise classify_list_failure(result.returncode, result.stderr,
                                    what=f"cannot list history folder {folder.name}: ",
                                    redact=deps.redactor.redact)
    return hist.Folder(folder.name, folder.run_id, folder.window,
                       dict(parse_inventory(result.stdout).sizes))


def remove_old_history(settings: Settings, deps: Deps, window: Window,
                       index: hist.ArchiveListing | None = None) -> hist.PrunePlan:
    """Delete archive folders and manifests of runs older than ``retention.keep_days``.

    Only after a successful run, never the mirror. ``index``: the archive's top level as
    listed before the sync (this run's own folder is never old enough to matter), else
    listed now. Each folder to prune is listed, then deleted bounded by that object count,
    and logged with its figures. Raise RcloneFailed if a delete fails (what was deleted
    before stays deleted; the rest waits for the next successful run).
    """
    listing = index if index is not None else fetch_archive_index(settings, deps, window)
    plan = hist.select_prune(listing, now=deps.clock(), keep_days=settings.retention.keep_days,
                             max_folders=settings.retention.max_prune_folders)
    if not plan.folders and not plan.manifests:
        log.info("history: nothing older than %d days to prune (%d restore points kept)",
                 settings.retention.keep_days, len(listing.manifests))
        return plan
    log.log(NOTICE, "history: pruning %d folders and %d manifests of runs before %s "
            "(retention.keep_days = %d)", len(plan.folders), len(plan.manifests),
            plan.cutoff.isoformat(timespec="seconds"), settings.retention.keep_days)
    for listed in plan.folders:
        folder = fetch_folder(settings, deps, window, listed)
        log.info("history: pruning folder %s: %d objects, %s", folder.name,
                 len(folder.objects), format_bytes(folder.bytes))
        argv = hist.build_prune_folder_argv(settings, config_path=window.config_path,
                                            work_dir=window.run_dir, folder=folder)
        result = _call(settings, deps, window, argv)
        if result.returncode != 0:
            raise RcloneFailed(f"pruning history folder {folder.name} failed (rclone exit "
                               f"{result.returncode}); the rest waits for the next run")
    for run_id in plan.manifests:
        argv = hist.build_prune_manifest_argv(settings, config_path=window.config_path,
                                              work_dir=window.run_dir, run_id=run_id)
        result = _call(settings, deps, window, argv)
        if result.returncode != 0:
            raise RcloneFailed(f"pruning manifest of run {run_id} failed (rclone exit "
                               f"{result.returncode})")
    if plan.deferred:
        log.warning("history: %d more old folders wait for the next run "
                    "(retention.max_prune_folders = %d)", plan.deferred,
                    settings.retention.max_prune_folders)
    return plan


def record_history(settings: Settings, deps: Deps, window: Window,
                   view: MirrorView | None = None) -> Window:
    """After a successful sync: write the run's manifest, then prune old history.

    ``view``: the mirror as this run found it (its archive index serves the prune). Return
    the window used (fresh credentials if the sync used up the first ones). Does nothing
    when the history is off.
    """
    if not settings.destination.history_on:
        return window
    window = fresh_window(settings, deps, window, "run")
    write_manifest(settings, deps, window)
    remove_old_history(settings, deps, window, view.index if view is not None else None)
    return window


def run_history(settings: Settings, deps: Deps, *, as_json: bool) -> str:
    """List the restore points, newest first, plus ``now``; return the text (or JSON).

    Raise UsageError when the history is off.
    """
    if not settings.destination.history_on:
        raise UsageError("the history is off (destination.archive_path = \"\"): only the "
                         "mirror can be restored")
    run_id = new_run_id(deps.clock())
    with command_scope(settings, deps, run_id) as scope:
        credentials, _ = fetch_audited_credentials(settings, deps, run_id, command="history")
        window = scope.open_window(credentials)
        listing = fetch_archive_listing(settings, deps, window)
        manifests: dict[str, hist.Manifest] = {}
        for point in listing.manifests:
            try:
                manifests[point] = fetch_manifest(settings, deps, window, point)
            except GhostBackupError as err:
                log.warning("history: skipping %s: %s", point, err.message)
        mirror = fetch_mirror_manifest(settings, deps, window)
        dumps = _dump_listing(settings, deps, window)
    points = hist.build_history(listing, manifests, mirror)
    from ghost_backup.databases import objects  # noqa: PLC0415 -- pure, light; see above

    if as_json:
        return json.dumps({"keep_days": settings.retention.keep_days,
                           "points": hist.render_history_json(points),
                           **({"databases": objects.render_dump_history_json(dumps)}
                              if settings.databases else {})}, indent=2) + "\n"
    return (hist.format_history(points, settings.retention.keep_days)
            + objects.format_dump_history(dumps, settings.retention.keep_days))


def _dump_listing(settings: Settings, deps: Deps, window: Window
                  ) -> dict[str, tuple[DumpObject, ...]]:
    """Return each database's complete dumps (oldest first); a listing that fails is logged."""
    if not settings.databases:
        return {}
    from ghost_backup.commands.dumps import list_dumps  # noqa: PLC0415 -- only when configured

    dumps: dict[str, tuple[DumpObject, ...]] = {}
    for db in settings.databases:
        try:
            dumps[db.name], _ = list_dumps(settings, deps, window, db)
        except GhostBackupError as err:
            log.warning("history: cannot list the dumps of %s: %s", db.name, err.message)
    return dumps
