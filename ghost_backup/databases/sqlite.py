"""SQLite: an online, consistent copy through the backup API, and the integrity check.

``Connection.backup(dst, pages=-1)`` copies every page in one step, which is one read
transaction: one consistent state, whatever other connections commit meanwhile (in WAL mode
they go on writing; in rollback-journal mode a writer waits on its busy timeout for the step,
about a second for 50 MB). With smaller steps a write from another connection restarts the
copy, and a busy writer could starve it. The copy goes to a spool file in the state
directory (persistent disk, never tmpfs: databases can be large), created ``O_EXCL`` 0600
and removed by the caller whatever happens.

The unit mounts the source read-only (``ReadOnlyPaths=``). A rollback-journal database needs
only a read lock; a WAL database needs its ``-shm`` file, which SQLite (3.22 and later) then
uses read-only. Checked here: a WAL database on a read-only bind mount, copied while a writer
outside the mount commits, passes ``integrity_check``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from ghost_backup.errors import DatabaseFailed

SPOOL_DIR_NAME = "spool"
SPOOL_SUFFIX = ".sqlite.partial"


def spool_path(state_dir: Path, name: str) -> Path:
    """Return the spool file of database ``name`` (pure)."""
    return state_dir / SPOOL_DIR_NAME / f"{name}{SPOOL_SUFFIX}"


def remove_stale_spool(state_dir: Path) -> tuple[Path, ...]:
    """Remove spool files a crashed run left behind; return them."""
    spool = state_dir / SPOOL_DIR_NAME
    removed = []
    for path in spool.glob(f"*{SPOOL_SUFFIX}") if spool.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return tuple(removed)


def write_sqlite_copy(source: Path, target: Path, *, busy_timeout_seconds: float = 30) -> int:
    """Copy the live database ``source`` into the new file ``target``; return its size.

    Raise DatabaseFailed if the source is missing or unreadable, the target exists, or the
    disk lacks room for a copy of the source's size.
    """
    try:
        size = source.stat().st_size
    except OSError as err:
        raise DatabaseFailed(f"cannot read {source}: {err.strerror}") from None
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    free = os.statvfs(target.parent)
    if free.f_bavail * free.f_frsize < size:
        raise DatabaseFailed(f"not enough free space in {target.parent} for a copy of "
                             f"{source} ({size} bytes)")
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        raise DatabaseFailed(f"cannot create spool file {target}: {err.strerror}") from None
    os.close(fd)
    try:
        # mode=ro: the copy never writes the live database (it still takes its read lock).
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=busy_timeout_seconds)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst, pages=-1)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as err:
        raise DatabaseFailed(f"SQLite backup of {source} failed: {err}") from None
    return target.stat().st_size


def fetch_integrity(path: Path) -> str:
    """Return ``ok`` if ``PRAGMA integrity_check`` passes on ``path``, else its first finding."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.Error as err:
        return f"not a readable SQLite database ({err})"
    return str(rows[0][0]) if rows else "no answer"


def fetch_readable(path: Path) -> int:
    """Return the number of tables in ``path``, opened read-only (``check``; writes nothing).

    Raise DatabaseFailed if it cannot be opened or read as SQLite.
    """
    if not path.is_file():
        raise DatabaseFailed(f"{path} does not exist")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            (count,) = con.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        finally:
            con.close()
    except sqlite3.Error as err:
        raise DatabaseFailed(f"{path} is not a readable SQLite database ({err})") from None
    return int(count)
