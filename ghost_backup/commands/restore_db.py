"""``ghost-backup restore-db NAME --as-of WHEN``: stream one dump back into a database.

    settings -> [[database]] NAME -> scope (runtime dir + lock) -> credential fetch
    -> rclone lsf <databases_path>/NAME -> select_dump (newest at or before WHEN)
    -> [--dry-run: print and stop]
    -> rclone cat KEY -> gunzip in the supervisor (CRC and size checked) -> the client

``mysql``: the client is ``mariadb``/``mysql`` inside the container (``docker exec -i``,
password from the container's own environment, as for the dump) or against a socket.
It executes the dump as it streams: restore into an empty server or schema (a dump holds
``CREATE TABLE``s; existing tables are dropped and recreated by it), and if the stream fails
half-way, drop the schema and run the command again. ``sqlite``: the file is written next to
the target, checked with ``PRAGMA integrity_check``, then renamed over it; Ghost must be
stopped, and stale ``-wal``/``-shm`` files are removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ghost_backup import rclone
from ghost_backup.commands.context import (
    Deps,
    Window,
    command_scope,
    fetch_audited_credentials,
    new_run_id,
    remaining_seconds,
)
from ghost_backup.commands.dumps import list_dumps, read_db_password
from ghost_backup.databases import mysql, objects, sqlite
from ghost_backup.databases.gzipstream import Decompressor
from ghost_backup.errors import DatabaseFailed, Terminated, UsageError
from ghost_backup.host.process import PipeResult, run_pipe
from ghost_backup.logs import NOTICE
from ghost_backup.rclone.progress import format_bytes
from ghost_backup.settings import DatabaseSettings, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreDbRequest:
    """What the operator asked ``restore-db`` to do."""

    name: str
    as_of: str = "latest"
    to_container: str | None = None
    to_socket: Path | None = None
    to_file: Path | None = None
    dry_run: bool = False
    force: bool = False


def select_database(settings: Settings, request: RestoreDbRequest) -> DatabaseSettings:
    """Return the ``[[database]]`` named in ``request``; raise UsageError for a bad request."""
    db = next((d for d in settings.databases if d.name == request.name), None)
    if db is None:
        known = ", ".join(d.name for d in settings.databases) or "none configured"
        raise UsageError(f"no [[database]] named {request.name!r} (known: {known})")
    if db.kind == "sqlite" and (request.to_container or request.to_socket):
        raise UsageError(f"database {db.name} is SQLite: use --to-file, not "
                         "--to-container/--to-socket")
    if db.kind == "mysql" and request.to_file is not None:
        raise UsageError(f"database {db.name} is MySQL: use --to-container or --to-socket")
    if request.to_container and request.to_socket:
        raise UsageError("give --to-container or --to-socket, not both")
    if request.to_socket is not None and not request.to_socket.is_absolute():
        raise UsageError("--to-socket must be an absolute path")
    return db


def describe_target(db: DatabaseSettings, request: RestoreDbRequest) -> str:
    """Return where the dump goes, in words."""
    if db.kind == "sqlite":
        return f"file {request.to_file or db.path}"
    if request.to_socket is not None:
        return f"socket {request.to_socket}"
    if request.to_container is not None:
        return f"container {request.to_container}"
    return (f"container {db.container}" if db.container else
            f"socket {db.socket}" if db.socket else f"{db.host}:{db.port}")


def run_restore_db(settings: Settings, deps: Deps, request: RestoreDbRequest) -> str:
    """Restore one dump of ``request.name``; return a one-line summary.

    Raise UsageError for a bad request or an unknown dump, DatabaseFailed if the stream or
    the client fails.
    """
    db = select_database(settings, request)
    target = describe_target(db, request)
    sqlite_target = request.to_file or db.path
    if db.kind == "sqlite" and sqlite_target is not None and sqlite_target.exists() \
            and not request.force and not request.dry_run:
        raise UsageError(f"{sqlite_target} exists: stop Ghost and pass --force to replace it, "
                         "or --to-file a new path")
    run_id = new_run_id(deps.clock())
    with command_scope(settings, deps, run_id) as scope:
        credentials, _ = fetch_audited_credentials(settings, deps, run_id, command="restore-db")
        window = scope.open_window(credentials)
        dumps, _partials = list_dumps(settings, deps, window, db)
        try:
            dump = objects.select_dump(dumps, request.as_of)
        except ValueError as err:
            raise UsageError(str(err)) from None
        key = f"{objects.dump_prefix(settings, db)}/{dump.name}"
        if request.dry_run:
            return (f"dry run: would restore {key} ({format_bytes(dump.size)}, taken "
                    f"{dump.taken_at:%Y-%m-%d %H:%M:%S}Z) into {target}; nothing was written")
        log.log(NOTICE, "restoring database %s from %s into %s", db.name, key, target)
        if db.kind == "sqlite":
            assert sqlite_target is not None  # noqa: S101 -- required for sqlite
            result = _restore_sqlite(settings, deps, window, key, sqlite_target)
        else:
            result = _restore_mysql(settings, deps, window, key, db=db, request=request)
    return (f"restored database {db.name} from {key} into {target} "
            f"({format_bytes(result.sent_bytes)} written in {result.seconds:.1f}s)")


def _stream(settings: Settings, deps: Deps, window: Window, key: str, *,
            consumer: tuple[str, ...] | BinaryIO, consumer_env: dict[str, str]) -> PipeResult:
    codec = Decompressor()
    cat = rclone.build_cat_argv(settings, config_path=window.config_path,
                                work_dir=window.run_dir, key=key)

    def accept(returncode: int) -> str | None:
        if returncode != 0:
            return f"rclone cat exited {returncode}"
        if not codec.complete:
            return "the dump object ends before its gzip trailer (truncated)"
        return None

    with deps.stop.deferred():
        try:
            result = run_pipe(
                cat, window.child_env(deps), consumer, consumer_env,
                transform=codec.feed, flush=codec.finish, accept=accept, stop=deps.stop,
                on_tick=lambda: None,
                timeout_seconds=max(1.0, remaining_seconds(deps, window.credentials)),
                stall_timeout_seconds=settings.rclone.stall_timeout_seconds,
            )
        except OSError as err:
            raise DatabaseFailed(f"cannot start the restore: {err.strerror}") from None
    if deps.stop.requested:
        raise Terminated("restore-db stopped by a signal; the target may hold part of the dump")
    if result.aborted is not None:
        detail = mysql.format_client_error(result.producer_err or result.consumer_out)
        raise DatabaseFailed(f"restore failed: {result.aborted}" +
                             (f": {detail}" if detail else "") +
                             "; the target may hold part of the dump")
    return result


def _restore_mysql(settings: Settings, deps: Deps, window: Window, key: str, *,
                   db: DatabaseSettings, request: RestoreDbRequest) -> PipeResult:
    password = None if (request.to_container or (db.container and not request.to_socket)) \
        else read_db_password(db, deps)
    argv = mysql.build_restore_argv(db, container=request.to_container,
                                    socket=request.to_socket)
    result = _stream(settings, deps, window, key, consumer=argv,
                     consumer_env=mysql.build_client_env(deps.env, password))
    if result.consumer_rc != 0:
        raise DatabaseFailed(
            f"the client exited {result.consumer_rc} while restoring: "
            f"{mysql.format_client_error(result.consumer_out)}; the target may hold part "
            "of the dump")
    return result


def _restore_sqlite(settings: Settings, deps: Deps, window: Window, key: str,
                    target: Path) -> PipeResult:
    partial = target.with_name(target.name + ".restore-partial")
    try:
        fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        raise DatabaseFailed(f"cannot create {partial}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            result = _stream(settings, deps, window, key, consumer=out, consumer_env={})
            out.flush()
            os.fsync(out.fileno())
        verdict = sqlite.fetch_integrity(partial)
        if verdict != "ok":
            raise DatabaseFailed(f"the restored file fails PRAGMA integrity_check: {verdict}")
        for suffix in ("-wal", "-shm", "-journal"):
            stale = target.with_name(target.name + suffix)
            if stale.exists():
                stale.unlink()
                log.warning("removed %s (it belonged to the replaced database)", stale)
        partial.replace(target)
        return result
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
