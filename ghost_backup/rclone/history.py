"""The history at the destination: its layout, manifests, restore points, the as-of plan and
retention (all pure). Listing, reading and deleting at the bucket is
:mod:`ghost_backup.commands.history`.

Layout under ``destination.archive_path`` (a sibling of the mirror, so rclone's rule that
``--backup-dir`` must not overlap the destination holds without filters)::

    <archive_path>/<run id>/...        what run <run id> overwrote or deleted (--backup-dir)
    <archive_path>/<run id>.w2/...     the same for its 2nd, 3rd... credential window
    <archive_path>/<run id>.manifest   what the mirror held right after successful run <run id>

Each credential window needs its own folder: a second window archiving into the same folder
would replace the version the first one kept (measured, rclone 1.75.2). A manifest is written
only after a run succeeded, so manifests are the restore points; folders of failed runs still
hold versions that earlier points need. The manifest lives beside its folder, not inside it,
so no source file can collide with it.

Restore "as of" point P (a manifest M): every path of M is either still in the mirror
unchanged, or the first later run that touched it (overwrite or delete) moved exactly P's
version into its own folder. So: take each path from the earliest later folder holding it,
else from the mirror. Paths created after P are not in M and are never copied.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ghost_backup.rclone.command import (
    _probe_flags,
    build_common_flags,
    build_source_filter_flags,
    remote_path,
)
from ghost_backup.rclone.progress import format_bytes
from ghost_backup.settings import Settings

MANIFEST_SUFFIX = ".manifest"
MIRROR = ""  # the source of a restore group that is the mirror itself, not an archive folder
# Fields of the manifest lines (`rclone lsf -F psh -s TAB`): path, size, MD5. Size and MD5
# never hold a tab, so a path may: split from the right.
SEPARATOR = "\t"
_RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]+$")
_FOLDER_RE = re.compile(r"^(\d{8}T\d{6}Z-[0-9a-f]+)(?:\.w(\d+))?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A copy group whose files average fewer than this per directory is fetched with
# --no-traverse (a HEAD per file, Class B) instead of a LIST per directory (Class A,
# 12.5x the price on R2): measured 28 HEAD + 27 GET vs 11 LIST + 27 GET for 27 files.
_NO_TRAVERSE_FILES_PER_DIR = 12


# --- names -----------------------------------------------------------------------------------

def archive_folder(run_id: str, window: int = 1) -> str:
    """Return the archive folder of ``run_id``'s credential ``window`` (1: ``<run id>``,
    then ``<run id>.w2``, ``<run id>.w3``...)."""
    return run_id if window <= 1 else f"{run_id}.w{window}"


def manifest_name(run_id: str) -> str:
    """Return the manifest's name beside the archive folders: ``<run id>.manifest``."""
    return run_id + MANIFEST_SUFFIX


def parse_run_time(run_id: str) -> datetime | None:
    """Given a run id (``20261126T020000Z-3fa1c2``), return when it started (UTC), else None."""
    match = _RUN_ID_RE.match(run_id)
    if match is None:
        return None
    return datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def parse_folder(name: str) -> tuple[str, int] | None:
    """Given an archive folder name, return (run id, window), or None if it is not one."""
    match = _FOLDER_RE.match(name)
    if match is None:
        return None
    return match[1], int(match[2] or 1)


# --- manifests and listings -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Entry:
    """One object: its size and MD5 (empty when the backend had none, e.g. multipart)."""

    size: int
    md5: str = ""


Manifest = dict[str, Entry]


def split_manifest_line(line: str) -> tuple[str, int, str]:
    """Given one manifest line (no newline), return (path, size, MD5).

    Raise ValueError if it is not ``path<TAB>size<TAB>md5``.
    """
    rest, _, md5 = line.rpartition(SEPARATOR)
    path, sep, size = rest.rpartition(SEPARATOR)
    if not sep or not path or not size.isdigit():
        raise ValueError(f"not a manifest line: {line[:80]!r}")
    return path, int(size), md5


def parse_manifest(text: str) -> Manifest:
    """Given ``rclone lsf -R --files-only -F psh -s TAB`` output, return path -> Entry.

    Raise ValueError on a line that is not ``path<TAB>size<TAB>md5``.
    """
    out: Manifest = {}
    for line in text.splitlines():
        if line:
            path, size, md5 = split_manifest_line(line)
            out[path] = Entry(size, md5)
    return out


def parse_manifest_sizes(lines: Iterable[str]) -> dict[str, int]:
    """Given manifest lines, return path -> size only (what the deletion pre-flight needs,
    at a third of :func:`parse_manifest`'s memory). Raise ValueError on a damaged line."""
    out: dict[str, int] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        if line:
            path, size, _ = split_manifest_line(line)
            out[path] = size
    return out


def summarize_manifest(lines: Iterable[str]) -> tuple[int, int]:
    """Given manifest lines, return (objects, bytes), checking every line as it goes (the
    file is never held whole). Raise ValueError on a damaged line."""
    objects = total = 0
    for raw in lines:
        line = raw.rstrip("\n")
        if line:
            total += split_manifest_line(line)[1]
            objects += 1
    return objects, total


def render_manifest(manifest: Manifest) -> str:
    """Return the manifest text for ``manifest`` (the format :func:`parse_manifest` reads)."""
    return "".join(f"{path}{SEPARATOR}{e.size}{SEPARATOR}{e.md5}\n"
                   for path, e in sorted(manifest.items()))


@dataclass(frozen=True)
class Folder:
    """One archive folder: the run and window that filled it, and its objects' sizes."""

    name: str
    run_id: str
    window: int
    objects: dict[str, int]

    @property
    def bytes(self) -> int:
        """Return the folder's total size."""
        return sum(self.objects.values())


@dataclass(frozen=True)
class ArchiveListing:
    """What ``<archive_path>`` holds: manifests (restore points) and folders, oldest first."""

    manifests: tuple[str, ...]
    folders: tuple[Folder, ...]
    other: tuple[str, ...] = ()

    def folders_after(self, run_id: str) -> tuple[Folder, ...]:
        """Return the folders of runs later than ``run_id``, oldest first."""
        return tuple(f for f in self.folders if f.run_id > run_id)

    def folders_of(self, run_id: str) -> tuple[Folder, ...]:
        """Return the folders (windows) of ``run_id``."""
        return tuple(f for f in self.folders if f.run_id == run_id)


def parse_archive_listing(text: str) -> ArchiveListing:
    """Given ``rclone lsf -R --files-only -F ps -s TAB`` of ``<archive_path>``, return it
    grouped: manifests (run ids) and folders, each sorted oldest first. Given the top level
    only (``lsf -F ps``, folders as ``<name>/``), the folders come without their objects.

    Entries that are neither (an operator's own files) are kept in ``other`` and never
    touched by pruning.
    """
    manifests: list[str] = []
    folders: dict[str, dict[str, int]] = {}
    other: list[str] = []
    for line in text.splitlines():
        if not line:
            continue
        path, _, size = line.rpartition(SEPARATOR)
        top, slash, rel = path.partition("/")
        if not slash:
            run_id = top.removesuffix(MANIFEST_SUFFIX)
            if top.endswith(MANIFEST_SUFFIX) and parse_run_time(run_id) is not None:
                manifests.append(run_id)
            else:
                other.append(path)
        elif parse_folder(top) is not None:
            objects = folders.setdefault(top, {})
            if rel:  # "<folder>/" alone is the folder itself (a listing of the top level)
                objects[rel] = int(size) if size.isdigit() else 0
        else:
            other.append(path)
    built = []
    for name, objects in folders.items():
        run_id, window = parse_folder(name) or (name, 1)
        built.append(Folder(name, run_id, window, objects))
    built.sort(key=lambda f: (f.run_id, f.window))
    return ArchiveListing(tuple(sorted(set(manifests))), tuple(built), tuple(sorted(other)))


# --- the mirror record (what the last successful run left, kept in the state dir) --------------

RECORD_NAME = "mirror.manifest"
_RECORD_HEADER = "# ghost-backup mirror record"


@dataclass(frozen=True)
class MirrorRecord:
    """The manifest a successful run uploaded, kept beside the state file: the next run's
    picture of the mirror without listing it (no secret: paths, sizes and MD5s). Read back,
    only the sizes are kept (path -> size)."""

    run_id: str
    key: str
    sizes: dict[str, int]


def build_mirror_key(settings: Settings) -> str:
    """Return a fingerprint of what the record describes: the destination and the filters.

    A record made for another bucket, prefix, endpoint or filter set never describes this
    run's mirror (the manifest lists the mirror through the sync's own filters).
    """
    facts = [settings.destination.model_dump(mode="json"),
             list(build_source_filter_flags(settings))]
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def render_record_header(run_id: str, key: str) -> str:
    """Return the record file's first line; the manifest as uploaded follows it."""
    return f"{_RECORD_HEADER} {run_id} {key}\n"


def parse_record(lines: Iterable[str]) -> MirrorRecord:
    """Given a record file's lines (a file object reads it line by line), return it; raise
    ValueError if it is not one."""
    rest = iter(lines)
    header = next(rest, "")
    fields = header.removeprefix(_RECORD_HEADER).split()
    if not header.endswith("\n") or not header.startswith(_RECORD_HEADER) \
            or len(fields) != 2 or parse_run_time(fields[0]) is None:
        raise ValueError("not a mirror record")
    return MirrorRecord(fields[0], fields[1], parse_manifest_sizes(rest))


def judge_record(record: MirrorRecord, index: ArchiveListing, key: str) -> str | None:
    """Return why ``record`` does not describe the mirror now, or None when it does.

    It does when it was made for this destination and filters, its run's manifest is the
    newest restore point, and no later run left an archive folder (a later run that failed
    after overwriting or deleting). A later run that only added objects cannot hide: every
    run deletes the record before its sync starts.
    """
    if record.key != key:
        return "it was made for another destination or other filters"
    newest = index.manifests[-1] if index.manifests else None
    if newest != record.run_id:
        return f"the newest restore point is {newest or 'none'}, not {record.run_id}"
    later = [f.name for f in index.folders if f.run_id > record.run_id]
    if later:
        return f"run {later[0]} changed the mirror after it"
    return None


# --- choosing a point ------------------------------------------------------------------------

def parse_when(when: str) -> tuple[str | None, datetime]:
    """Given ``--as-of WHEN``, return (the run id if one was named, the latest start time).

    WHEN is a run id; a date ``YYYY-MM-DD`` (UTC), meaning the last run that started that day;
    or an ISO 8601 timestamp with a zone (``2026-11-26T03:00:00Z``). Raise ValueError otherwise.
    """
    text = when.strip()
    started = parse_run_time(text)
    if started is not None:
        return text, started
    if _DATE_RE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--as-of {when!r} is not a valid date") from None
        return None, datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            days=1, microseconds=-1)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--as-of {when!r} is not a run id, a date (YYYY-MM-DD) or an ISO timestamp"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"--as-of {when!r} has no time zone: add Z (UTC) or an offset")
    return None, moment.astimezone(UTC)


def format_point(run_id: str) -> str:
    """Return ``2026-11-26 02:00:13 UTC (run 20261126T020013Z-3fa1c2)``."""
    started = parse_run_time(run_id)
    when = f"{started:%Y-%m-%d %H:%M:%S} UTC" if started else "unknown time"
    return f"{when} (run {run_id})"


def select_point(listing: ArchiveListing, when: str, *, now: datetime,
                 keep_days: int) -> str:
    """Return the run id (manifest) that ``--as-of WHEN`` names.

    The point is the latest successful run that started at or before WHEN (or the run WHEN
    names). Raise ValueError with the oldest restorable point when WHEN is older than
    ``keep_days`` or than every manifest, or names a run that left no manifest.
    """
    named, latest = parse_when(when)
    kept = [r for r in listing.manifests if (parse_run_time(r) or now) >= now - timedelta(
        days=keep_days)]
    oldest = f"the oldest restorable point is {format_point(kept[0])}" if kept else (
        "there is no restorable point yet (no run has finished successfully with history on)")
    if named is not None and named not in listing.manifests:
        raise ValueError(f"run {named} is not a restore point (it did not finish successfully, "
                         f"or was pruned); {oldest}; see `ghost-backup history`")
    if latest < now - timedelta(days=keep_days):
        raise ValueError(f"--as-of {when} is older than retention.keep_days ({keep_days} days): "
                         f"{oldest}")
    candidates = [r for r in kept if (parse_run_time(r) or latest) <= latest]
    if named is not None:
        candidates = [named] if named in kept else []
    if not candidates:
        raise ValueError(f"no restore point at or before {when}: {oldest}")
    return candidates[-1]


# --- the as-of plan ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CopyGroup:
    """Files to copy from one place: an archive folder (``source`` = its name) or the mirror
    (``source`` = :data:`MIRROR`)."""

    source: str
    paths: tuple[str, ...]
    no_traverse: bool


def filter_subpath(manifest: Manifest, subpath: str | None) -> Manifest:
    """Return the part of ``manifest`` at or below ``subpath`` (all of it when None)."""
    if not subpath:
        return dict(manifest)
    prefix = subpath.strip("/")
    return {p: e for p, e in manifest.items() if p == prefix or p.startswith(prefix + "/")}


def _use_no_traverse(paths: tuple[str, ...]) -> bool:
    dirs = {p.rpartition("/")[0] for p in paths}
    return len(paths) < _NO_TRAVERSE_FILES_PER_DIR * max(1, len(dirs))


def plan_as_of(listing: ArchiveListing, point: str, wanted: Manifest) -> tuple[CopyGroup, ...]:
    """Return where each path of ``wanted`` (point's manifest, maybe cut to a --path) is now.

    Each path comes from the earliest archive folder of a run after ``point`` that holds it
    (that run replaced or deleted exactly point's version), else from the mirror.
    """
    remaining = set(wanted)
    groups: list[CopyGroup] = []
    for folder in listing.folders_after(point):
        take = tuple(sorted(remaining.intersection(folder.objects)))
        if take:
            groups.append(CopyGroup(folder.name, take, _use_no_traverse(take)))
            remaining.difference_update(take)
    if remaining:
        rest = tuple(sorted(remaining))
        groups.append(CopyGroup(MIRROR, rest, _use_no_traverse(rest)))
    return tuple(groups)


# --- retention -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrunePlan:
    """What one successful run deletes from the history: folders (with object counts and
    bytes, for the log and ``--max-delete``) and manifests, oldest first."""

    cutoff: datetime
    folders: tuple[Folder, ...]
    manifests: tuple[str, ...]
    deferred: int = 0

    @property
    def objects(self) -> int:
        """Return how many archived objects the plan deletes."""
        return sum(len(f.objects) for f in self.folders)


def select_prune(listing: ArchiveListing, *, now: datetime, keep_days: int,
                 max_folders: int) -> PrunePlan:
    """Return the folders and manifests of runs older than ``keep_days``, oldest first.

    Folders and manifests share one cutoff (run start time, never object age: archived
    objects keep the source's mtime), so every manifest kept still has every later folder.
    The newest manifest is never pruned. At most ``max_folders`` folders go per run; a
    manifest goes only once every folder of its run and of every earlier run is gone, so a
    partial prune never leaves a point that cannot be rebuilt.
    """
    cutoff = now - timedelta(days=keep_days)

    def old(run_id: str) -> bool:
        started = parse_run_time(run_id)
        return started is not None and started < cutoff

    newest = listing.manifests[-1] if listing.manifests else None
    candidates = [f for f in listing.folders if old(f.run_id)]
    folders = tuple(candidates[:max_folders])
    deferred = len(candidates) - len(folders)
    left = {f.run_id for f in candidates[max_folders:]}
    first_left = min(left) if left else None
    manifests = tuple(r for r in listing.manifests
                      if old(r) and r != newest and (first_left is None or r < first_left))
    return PrunePlan(cutoff, folders, manifests, deferred)


# --- what each point changed (for `history`) -----------------------------------------------

@dataclass(frozen=True)
class Change:
    """How one manifest differs from the one before it."""

    added: int = 0
    modified: int = 0
    deleted: int = 0
    bytes_written: int = 0

    @property
    def objects(self) -> int:
        """Return how many objects changed."""
        return self.added + self.modified + self.deleted


def diff_manifests(before: Manifest | None, after: Manifest) -> Change:
    """Return what changed from ``before`` to ``after`` (everything added when None).

    ``bytes_written`` is the size of the added and modified objects.
    """
    old = before or {}
    added = [p for p in after if p not in old]
    modified = [p for p in after if p in old and old[p] != after[p]]
    deleted = sum(1 for p in old if p not in after)
    written = sum(after[p].size for p in (*added, *modified))
    return Change(len(added), len(modified), deleted, written)


@dataclass(frozen=True)
class HistoryPoint:
    """One line of ``ghost-backup history``: a restore point, or ``now`` (run_id None)."""

    run_id: str | None
    objects: int
    bytes: int
    change: Change | None
    archived_objects: int = 0
    archived_bytes: int = 0


def build_history(listing: ArchiveListing, manifests: dict[str, Manifest],
                  mirror: Manifest | None) -> tuple[HistoryPoint, ...]:
    """Return the restore points newest first, ``now`` (the mirror) on top when given.

    A point whose manifest equals the previous one (the run changed nothing) is left out,
    except the oldest, which is where history starts.
    """
    points: list[HistoryPoint] = []
    previous: Manifest | None = None
    for run_id in listing.manifests:
        current = manifests.get(run_id)
        if current is None:
            continue
        change = diff_manifests(previous, current) if previous is not None else None
        if change is None or change.objects:
            archived = listing.folders_of(run_id)
            points.append(HistoryPoint(
                run_id, len(current), sum(e.size for e in current.values()), change,
                sum(len(f.objects) for f in archived), sum(f.bytes for f in archived)))
        previous = current
    if mirror is not None:
        change = diff_manifests(previous, mirror) if previous is not None else None
        points.append(HistoryPoint(None, len(mirror), sum(e.size for e in mirror.values()),
                                   change))
    return tuple(reversed(points))


def format_history(points: tuple[HistoryPoint, ...], keep_days: int) -> str:
    """Return the ``history`` table: newest first, one restore point a line."""
    head = (f"{'WHEN (UTC)':<20} {'RUN ID':<24} {'OBJECTS':>8} {'SIZE':>10}  "
            f"{'CHANGED (+added ~modified -deleted)':<36} {'WRITTEN':>10}")
    lines = [head]
    for p in points:
        started = parse_run_time(p.run_id) if p.run_id else None
        when = f"{started:%Y-%m-%d %H:%M:%S}" if started else "now"
        changed = (f"{p.change.objects} (+{p.change.added} ~{p.change.modified} "
                   f"-{p.change.deleted})" if p.change else "(oldest kept point)")
        written = format_bytes(p.change.bytes_written) if p.change else "-"
        lines.append(f"{when:<20} {p.run_id or '(mirror)':<24} {p.objects:>8} "
                     f"{format_bytes(p.bytes):>10}  {changed:<36} {written:>10}")
    lines.append(f"restore one with: ghost-backup restore --to DIR --as-of RUN_ID|YYYY-MM-DD "
                 f"(history kept {keep_days} days)")
    return "\n".join(lines) + "\n"


def render_history_json(points: tuple[HistoryPoint, ...]) -> list[dict[str, object]]:
    """Return the points as JSON-ready dicts (newest first)."""
    out: list[dict[str, object]] = []
    for p in points:
        started = parse_run_time(p.run_id) if p.run_id else None
        item: dict[str, object] = {
            "point": p.run_id or "now",
            "run_id": p.run_id,
            "started_at": started.isoformat() if started else None,
            "objects": p.objects,
            "bytes": p.bytes,
        }
        if p.change is not None:
            item.update(changed_objects=p.change.objects, added=p.change.added,
                        modified=p.change.modified, deleted=p.change.deleted,
                        bytes_written=p.change.bytes_written)
        if p.run_id is not None:
            item.update(archived_objects=p.archived_objects, archived_bytes=p.archived_bytes)
        out.append(item)
    return out


# --- argv (pure) ------------------------------------------------------------------------------

# Listing a prefix, deleting a folder or uploading never need rclone's HEAD of the path as an
# object (it is a prefix): `--s3-no-head-object` skips it, so a no-change night's history
# steps cost LIST and one PUT, no HEAD (measured with benchmarks/nights.py: 4 HEAD a night
# without it). Reading or deleting one manifest keeps the HEAD: it is how rclone learns that
# the path is an object (with the flag, `cat` printed nothing).
_NO_HEAD = ("--s3-no-head-object",)


def _flags(config_path: Path, work_dir: Path) -> tuple[str, ...]:
    return (*_probe_flags(config_path, work_dir), *_NO_HEAD)

def archive_remote(settings: Settings, name: str = "") -> str:
    """Return ``r2:<bucket>/<archive_path>[/<name>]``."""
    base = settings.destination.archive_path
    return remote_path(settings, f"{base}/{name}" if name else base)


def build_mirror_manifest_argv(settings: Settings, *, config_path: Path,
                               work_dir: Path) -> tuple[str, ...]:
    """Return the argv listing the mirror as a manifest (path, size, MD5; one a line).

    One ListObjectsV2 call per 1000 objects with ``--fast-list``; the MD5 comes from the ETag,
    so no HEAD per object (multipart uploads excepted). The sync's own filters apply: the
    same listing is the deletion pre-flight's picture of the backup, and objects the sync
    never touches (excluded since) are not part of any night's restore point.
    """
    argv = [settings.rclone.binary, "lsf", "-R", "--files-only", "--format", "psh",
            "--separator", SEPARATOR, remote_path(settings), *_flags(config_path, work_dir),
            *build_source_filter_flags(settings)]
    if settings.rclone.fast_list:
        argv.append("--fast-list")
    return tuple(argv)


def build_archive_listing_argv(settings: Settings, *, config_path: Path,
                               work_dir: Path) -> tuple[str, ...]:
    """Return the argv listing every object under ``<archive_path>`` (path, size)."""
    argv = [settings.rclone.binary, "lsf", "-R", "--files-only", "--format", "ps",
            "--separator", SEPARATOR, archive_remote(settings), *_flags(config_path, work_dir)]
    if settings.rclone.fast_list:
        argv.append("--fast-list")
    return tuple(argv)


def build_archive_index_argv(settings: Settings, *, config_path: Path,
                             work_dir: Path) -> tuple[str, ...]:
    """Return the argv listing the top level of ``<archive_path>``: the manifests and the
    folder names, one ListObjectsV2 call per 1000 of them, whatever the folders hold."""
    return (settings.rclone.binary, "lsf", "--format", "ps", "--separator", SEPARATOR,
            archive_remote(settings), *_flags(config_path, work_dir))


def build_folder_listing_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                              name: str) -> tuple[str, ...]:
    """Return the argv listing every object of archive folder ``name`` (path, size)."""
    argv = [settings.rclone.binary, "lsf", "-R", "--files-only", "--format", "ps",
            "--separator", SEPARATOR, archive_remote(settings, name),
            *_flags(config_path, work_dir)]
    if settings.rclone.fast_list:
        argv.append("--fast-list")
    return tuple(argv)


def build_manifest_upload_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                               local: Path, run_id: str) -> tuple[str, ...]:
    """Return the argv uploading ``local`` (a file named ``<run id>.manifest``) beside the
    archive folders.

    A new name each run: no HEAD before (``--no-check-dest``) or after (``--s3-no-head``) the
    PUT, which carries ``Content-MD5``. ``copy`` of the file into the prefix, not ``copyto``:
    rclone 1.75.2's ``copyto --no-check-dest`` stores the object under the local file's name
    (measured), so the local file carries the manifest's name.
    """
    if local.name != manifest_name(run_id):
        raise ValueError(f"the local manifest must be named {manifest_name(run_id)}")
    return (settings.rclone.binary, "copy", str(local), archive_remote(settings),
            *_flags(config_path, work_dir), "--no-check-dest", "--s3-no-head")


def build_manifest_read_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                             run_id: str) -> tuple[str, ...]:
    """Return the argv printing ``<run id>.manifest`` on stdout."""
    # No --s3-no-head-object here: rclone finds out that the path is an object by a HEAD.
    return (settings.rclone.binary, "cat", archive_remote(settings, manifest_name(run_id)),
            *_probe_flags(config_path, work_dir))


def build_prune_folder_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                            folder: Folder) -> tuple[str, ...]:
    """Return the argv deleting one archive folder, bounded by the objects it was listed with.

    ``--max-delete`` is the listed count: if anything appeared since, rclone stops (exit 7)
    instead of deleting more than was logged.
    """
    return (settings.rclone.binary, "delete", archive_remote(settings, folder.name),
            "--max-delete", str(max(1, len(folder.objects))),
            *_flags(config_path, work_dir))


def build_prune_manifest_argv(settings: Settings, *, config_path: Path, work_dir: Path,
                              run_id: str) -> tuple[str, ...]:
    """Return the argv deleting ``<run id>.manifest`` (one object, nothing else)."""
    return (settings.rclone.binary, "deletefile", archive_remote(settings, manifest_name(run_id)),
            *_probe_flags(config_path, work_dir))  # an object: found by a HEAD, as with cat


def build_group_copy_argv(
    settings: Settings,
    *,
    config_path: Path,
    work_dir: Path,
    group: CopyGroup,
    files_from: Path,
    target: Path,
    max_duration_seconds: int | None,
) -> tuple[str, ...]:
    """Return the argv copying one restore group's listed files into ``target``.

    ``copy``, never ``sync``. ``--files-from-raw`` holds exact paths (rclone refuses other
    filters next to it: a ``--path`` is applied to the manifest instead).
    """
    source = remote_path(settings) if group.source == MIRROR else archive_remote(
        settings, group.source)
    argv = [settings.rclone.binary, "copy", source, str(target),
            *build_common_flags(settings, config_path, work_dir),
            "--files-from-raw", str(files_from)]
    if group.no_traverse:
        argv.append("--no-traverse")
    if max_duration_seconds is not None:
        argv += ["--max-duration", f"{max_duration_seconds}s", "--cutoff-mode", "soft"]
    return tuple(argv)
