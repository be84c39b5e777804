"""Dump objects at the destination: their names, listing, selection and retention (pure).

``<databases_path>/<name>/<run id>.sql.gz`` (``.sqlite.gz`` for SQLite). The run id starts with
the run's UTC time (``20261128T020000Z-3fa1c2``), so names sort by time. A dump is uploaded as
``<key>.partial`` and renamed only once complete: ``*.partial`` objects are never listed as
restorable, and the next run deletes stale ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ghost_backup.rclone.progress import format_bytes
from ghost_backup.settings import DatabaseSettings, Settings

PARTIAL_SUFFIX = ".partial"
_RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)(-[0-9a-f]+)?$")


def dump_suffix(db: DatabaseSettings) -> str:
    """Return the object suffix of ``db``'s dumps."""
    return ".sql.gz" if db.kind == "mysql" else ".sqlite.gz"


def dump_prefix(settings: Settings, db: DatabaseSettings) -> str:
    """Return the bucket prefix holding ``db``'s dumps (no trailing slash)."""
    return f"{settings.destination.databases_path}/{db.name}"


def build_dump_key(settings: Settings, db: DatabaseSettings, run_id: str) -> str:
    """Return the object key (inside the bucket) of ``db``'s dump in run ``run_id``."""
    return f"{dump_prefix(settings, db)}/{run_id}{dump_suffix(db)}"


@dataclass(frozen=True)
class DumpObject:
    """One complete dump at the destination."""

    name: str  # file name below the database's prefix
    run_id: str
    taken_at: datetime
    size: int


def parse_dump_listing(text: str, db: DatabaseSettings) -> tuple[tuple[DumpObject, ...],
                                                                   tuple[str, ...]]:
    """Given ``rclone lsf --format sp --separator ';'`` output of a database's prefix, return
    its complete dumps (oldest first) and the names of ``*.partial`` leftovers."""
    suffix = dump_suffix(db)
    dumps: list[DumpObject] = []
    partials: list[str] = []
    for line in text.splitlines():
        size_text, _, name = line.strip().partition(";")
        if not name or "/" in name:
            continue
        if name.endswith(PARTIAL_SUFFIX):
            partials.append(name)
            continue
        if not name.endswith(suffix):
            continue
        run_id = name.removesuffix(suffix)
        match = _RUN_ID_RE.match(run_id)
        if match is None:
            continue
        taken = datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        size = int(size_text) if size_text.isdigit() else -1
        dumps.append(DumpObject(name, run_id, taken, size))
    return tuple(sorted(dumps, key=lambda d: (d.taken_at, d.run_id))), tuple(sorted(partials))


def parse_as_of(text: str) -> datetime:
    """Given ``--as-of``, return the moment it means (UTC).

    ``now`` or ``latest``; a date ``YYYY-MM-DD`` (the end of that UTC day); a run id or its
    time part (``20261128T020000Z``); an ISO timestamp with an offset. Raise ValueError.
    """
    key = text.strip()
    if key in ("now", "latest"):
        return datetime.max.replace(tzinfo=UTC)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", key):
        day = datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)
        return day + timedelta(days=1) - timedelta(microseconds=1)
    match = _RUN_ID_RE.match(key)
    if match is not None:
        return datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(key)
    except ValueError:
        raise ValueError(f"--as-of {text!r} is not 'latest', a date (YYYY-MM-DD), a run id or "
                         "an ISO timestamp with an offset") from None
    if moment.tzinfo is None:
        raise ValueError(f"--as-of {text!r} has no timezone; add Z or an offset")
    return moment.astimezone(UTC)


def select_dump(dumps: tuple[DumpObject, ...], as_of: str) -> DumpObject:
    """Return the newest dump taken at or before ``as_of`` (a full run id matches exactly).

    Raise ValueError (naming the nearest choices) when there is none.
    """
    exact = [d for d in dumps if d.run_id == as_of.strip()]
    if exact:
        return exact[0]
    moment = parse_as_of(as_of)
    before = [d for d in dumps if d.taken_at <= moment]
    if before:
        return before[-1]
    oldest = dumps[0].run_id if dumps else "none"
    raise ValueError(f"no dump taken at or before {as_of!r} (oldest: {oldest})")


def select_expired(dumps: tuple[DumpObject, ...], *, now: datetime,
                   keep_days: int) -> tuple[DumpObject, ...]:
    """Return the dumps older than ``keep_days``; the newest dump is always kept."""
    cutoff = now - timedelta(days=keep_days)
    return tuple(d for d in dumps[:-1] if d.taken_at < cutoff)


def format_dump_history(dumps: dict[str, tuple[DumpObject, ...]], keep_days: int) -> str:
    """Return the ``history`` lines of the database dumps, newest first per database."""
    if not dumps:
        return ""
    lines = ["", f"{'DATABASE DUMP (UTC)':<20} {'DATABASE':<16} {'RUN ID':<24} {'SIZE':>10}"]
    for name, objs in dumps.items():
        if not objs:
            lines.append(f"{'(none)':<20} {name:<16} {'-':<24} {'-':>10}")
        for obj in reversed(objs):
            lines.append(f"{obj.taken_at:%Y-%m-%d %H:%M:%S} {name:<16} {obj.run_id:<24} "
                         f"{format_bytes(obj.size):>10}")
    lines.append(f"restore one with: ghost-backup restore-db NAME --as-of RUN_ID|YYYY-MM-DD "
                 f"(dumps kept {keep_days} days, the newest always)")
    return "\n".join(lines) + "\n"


def render_dump_history_json(dumps: dict[str, tuple[DumpObject, ...]]
                             ) -> dict[str, list[dict[str, object]]]:
    """Return the dumps as JSON-ready dicts, newest first per database."""
    return {name: [{"run_id": o.run_id, "taken_at": o.taken_at.isoformat().replace(
        "+00:00", "Z"), "object": o.name, "bytes": o.size} for o in reversed(objs)]
        for name, objs in dumps.items()}

