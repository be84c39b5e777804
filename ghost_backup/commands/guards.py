"""The source guards: refuse to sync from a tree that looks unmounted, empty, shrunken or
wrong, and refuse a sync that would delete too much.

``rclone sync`` mirrors deletions, and it has no guard against an existing but empty source
(rclone#1032): an unmounted ``/var/mnt/storage`` is an empty directory, and syncing it would
delete the whole backup. :func:`check_source` runs before any credential is requested; the
guards below it are pure and decide from rclone's own listings
(:mod:`ghost_backup.rclone.inventory`), never from ``os.walk``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ghost_backup.errors import SourceRefused, UsageError
from ghost_backup.host.paths import find_unsafe_ancestor, find_unsafe_entry
from ghost_backup.rclone.inventory import Inventory
from ghost_backup.rclone.progress import format_bytes
from ghost_backup.settings import SourceSettings


def check_source(settings: SourceSettings) -> None:
    """Raise SourceRefused unless the source is a readable, non-empty (mounted) directory."""
    path: Path = settings.path
    if not path.exists():
        raise SourceRefused(f"source {path} does not exist; nothing synced, nothing deleted")
    if path.is_symlink() or not path.is_dir():
        raise SourceRefused(f"source {path} is not a directory")
    if settings.require_mountpoint and not os.path.ismount(path):
        raise SourceRefused(
            f"source {path} is not a mount point (data disk not mounted?); refusing to sync "
            "an empty directory over the backup (set source.require_mountpoint = false if "
            "the data really lives on the root filesystem)"
        )
    try:
        empty = not _holds_a_file(path)
    except OSError as err:
        raise SourceRefused(f"cannot list source {path}: {err.strerror}") from None
    if empty:
        raise SourceRefused(
            f"source {path} holds no files; refusing to sync (it would delete the whole backup)"
        )
    if settings.sentinel is not None and not (path / settings.sentinel).is_file():
        raise SourceRefused(
            f"sentinel file {settings.sentinel} missing in source {path}; refusing to sync"
        )


def check_restore_target(
    target: Path, source: SourceSettings, *, force: bool, subpath: str | None = None
) -> Path:
    """Return the resolved restore target; raise UsageError if restoring there is unsafe.

    Refused without ``force``: the live source path, anything inside it or containing it
    (a restore would overwrite the data being served), and any existing path: restore
    creates its target itself, mode 0700, so no one else can plant a link in it. Always
    refused: a target that is a symlink or not a directory, a target below a directory
    another user could write to (they could swap the target for a link), and with ``force``
    an existing tree holding a symlink or a directory another user can write to (rclone
    writes through symlinked directories): the directories on the way to ``subpath`` and
    everything below it.
    """
    if target.is_symlink():
        raise UsageError(f"restore target {target} is a symlink; name the directory itself")
    resolved = target.resolve()
    live = source.path.resolve()
    if resolved.exists() and not resolved.is_dir():
        raise UsageError(f"restore target {resolved} exists and is not a directory")
    if not resolved.parent.is_dir():
        raise UsageError(f"the parent of restore target {resolved} does not exist")
    _refuse_unsafe(resolved, find_unsafe_ancestor,
                   "another user could swap the target for a link while we write; restore "
                   "below directories only root can write to (/root, /var, ...)")
    overlaps = resolved == live or live in resolved.parents or resolved in live.parents
    if overlaps and not force:
        raise UsageError(
            f"refusing to restore into {resolved}: it overlaps the live source {live}; "
            "restore elsewhere and move files, or pass --force to overwrite live data "
            "(files are added and overwritten, never deleted)"
        )
    if resolved.is_dir() and not force:
        raise UsageError(
            f"restore target {resolved} already exists; name a new directory (restore "
            "creates it, mode 0700), or pass --force to restore into this one (files are "
            "overwritten, never deleted)"
        )
    if resolved.is_dir():
        _refuse_unsafe(resolved, lambda path: find_unsafe_entry(path, subpath),
                       "rclone would write through it; remove it or restore into a new "
                       "directory and move the files")
    return resolved


def _refuse_unsafe(path: Path, finder: Callable[[Path], str | None], why: str) -> None:
    try:
        problem = finder(path)
    except OSError as err:
        raise UsageError(f"cannot inspect restore target {path}: {err.strerror}") from None
    if problem is not None:
        raise UsageError(f"refusing to restore into {path}: {problem}; {why}")


def _holds_a_file(path: Path) -> bool:
    """Return True as soon as any non-directory entry is found below ``path``.

    A tree of empty directories (a wiped disk, a half-restored one) counts as empty: rclone
    would delete every object in the backup to mirror it. Stops at the first file found.
    """
    def fail(err: OSError) -> None:
        raise err

    return any(files for _root, _dirs, files in os.walk(path, onerror=fail))


# --- the guards that decide from rclone's own view (pure) -----------------------------------

@dataclass(frozen=True)
class Figures:
    """How many files and bytes a tree holds (as rclone sees it)."""

    files: int
    bytes: int

    def describe(self) -> str:
        """Return ``1234 files (5.6 MiB)``."""
        return f"{self.files} files ({format_bytes(self.bytes)})"


def check_rclone_sees_files(path: Path, source: Inventory) -> None:
    """Raise SourceRefused if rclone would see no file in the source (``source``: its listing).

    Excluded files, symlinks and files on other filesystems are not in the listing: a source
    of only those is empty to rclone, and syncing it would delete the whole backup.
    """
    if source.files == 0:
        raise SourceRefused(
            f"source {path} holds no files rclone would copy (everything there is excluded, "
            "a symlink, or on another filesystem); refusing to sync (it would delete the "
            "whole backup)"
        )


def judge_shrink(
    now: Figures, before: Figures, *, fraction: float, what: str
) -> str | None:
    """Return why ``now`` is a suspicious shrink from ``before`` (None: it is not).

    Suspicious: fewer files, or fewer bytes, than ``fraction`` of ``before``. ``what`` names
    the baseline (``the last successful run``, ``the backup``).
    """
    if fraction <= 0:
        return None
    low_files = now.files < fraction * before.files
    low_bytes = before.bytes > 0 and now.bytes < fraction * before.bytes
    if not (low_files or low_bytes):
        return None
    return (f"the source holds {now.describe()}, less than {fraction:g} of the "
            f"{before.describe()} of {what}")


def resolve_delete_limit(setting: int | str, held: int) -> int | None:
    """Return how many deletions ``rclone.max_delete`` allows when the backup holds ``held``.

    ``"10%"`` is 10 % of ``held``, rounded up; a count is itself; 0 disables the guard (None).
    """
    if isinstance(setting, int):
        return setting or None
    percent = float(setting.rstrip("%"))
    return math.ceil(percent * held / 100)


@dataclass(frozen=True)
class DeletePlan:
    """What a sync would delete and overwrite at the backup, from two listings."""

    deletes: int
    resized: int
    held: int


def plan_deletes(source: Inventory, backup: Inventory) -> DeletePlan:
    """Return the deletions (in the backup, not in the source) and size changes of a sync.

    Exact for deletions, whatever the history settings: with ``--backup-dir`` rclone counts
    every overwrite as a delete against ``--max-delete`` (measured, 1.75.2), so the guard
    counts deletions itself. Same-size edits are invisible here (sizes only).
    """
    deletes = resized = 0
    for path, size in backup.sizes.items():
        mine = source.sizes.get(path)
        if mine is None:
            deletes += 1
        elif mine != size:
            resized += 1
    return DeletePlan(deletes=deletes, resized=resized, held=backup.files)


def judge_deletes(plan: DeletePlan, limit: int | None, setting: int | str) -> str | None:
    """Return why ``plan`` exceeds the deletion ``limit`` (None: within it, or no limit)."""
    if limit is None or plan.deletes <= limit:
        return None
    return (f"the sync would delete {plan.deletes} of the {plan.held} objects in the backup; "
            f"rclone.max_delete = {setting!r} allows {limit}")


def build_backstop(plan: DeletePlan, limit: int | None, *, history: bool) -> int | None:
    """Return rclone's ``--max-delete``: the planned deletions plus ``limit`` more.

    With the history on (``--backup-dir``) rclone counts every overwrite as a delete too,
    and same-size edits are invisible to a size listing, so the backstop then leaves room
    for every object the backup holds (nothing is destroyed either way: it is moved into
    the history). None: no limit.
    """
    if limit is None:
        return None
    return (plan.held if history else plan.deletes) + limit
