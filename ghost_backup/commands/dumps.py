"""Database dumps inside a run's credential window: dump -> gzip in the supervisor ->
``rclone rcat <key>.partial`` -> ``rclone moveto <key>``, one database after another.

A dump never leaves an object that looks complete: the stream goes to ``<key>.partial``, and
the supervisor closes rcat's input only after the dump exited 0 and ended with
``-- Dump completed`` (otherwise rcat is SIGKILLed with its input open, so no upload
completes, and the ``.partial`` is deleted). Only then is the object renamed to its final
key. If the supervisor itself is SIGKILLed, at worst a ``.partial`` without a gzip trailer
remains: nothing lists it as restorable, and the next run of that database deletes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from pydantic import SecretStr

from ghost_backup import rclone
from ghost_backup.commands.context import Deps, Window, remaining_seconds
from ghost_backup.databases import mysql, objects, sqlite
from ghost_backup.databases.gzipstream import Compressor
from ghost_backup.errors import DatabaseFailed, GhostBackupError, RcloneFailed, Terminated
from ghost_backup.host.process import PipeResult, run_bounded, run_captured, run_pipe
from ghost_backup.host.secret_files import credential_path, read_secret_token
from ghost_backup.logs import NOTICE
from ghost_backup.rclone.progress import format_bytes
from ghost_backup.settings import DatabaseSettings, Settings

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_SECONDS = 60.0
OBJECT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class DumpOutcome:
    """What one database's dump left: the object on success, the reason on failure."""

    name: str
    ok: bool
    key: str | None = None
    raw_bytes: int = 0
    stored_bytes: int = 0
    sha256: str | None = None
    seconds: float = 0.0
    error: str | None = None


def read_db_password(db: DatabaseSettings, deps: Deps) -> SecretStr | None:
    """Return the password of a socket/host database from its systemd credential (or None).

    It is registered with the redactor at once, so no log line can carry it. Raise
    DatabaseFailed if the credential is missing or not private to this service.
    """
    if db.password_credential is None:
        return None
    try:
        password = read_secret_token(credential_path(deps.env, db.password_credential),
                                     what="database password credential")
    except GhostBackupError as err:  # a database problem (82), not the credential proxy's
        raise DatabaseFailed(err.message) from None
    deps.redactor.add([password.get_secret_value()])
    return password


def fetch_schemas(db: DatabaseSettings, env: dict[str, str]) -> tuple[str, ...]:
    """Return the schemas to dump: the configured ones, or every user schema on the server.

    Raise DatabaseFailed if the server cannot be asked.
    """
    if db.databases:
        return db.databases
    done = _bounded(mysql.build_list_schemas_argv(db), env, "list the schemas")
    schemas = mysql.parse_schemas(done.stdout.decode("utf-8", "replace"))
    if not schemas:
        raise DatabaseFailed("the server holds no user schema to dump")
    return schemas


def _bounded(argv: tuple[str, ...], env: dict[str, str], what: str) -> _Done:
    try:
        done = run_bounded(argv, env, timeout_seconds=CLIENT_TIMEOUT_SECONDS)
    except OSError as err:
        raise DatabaseFailed(f"cannot start {argv[0]}: {err.strerror}") from None
    if done.timed_out:
        raise DatabaseFailed(f"could not {what} within {CLIENT_TIMEOUT_SECONDS:.0f}s")
    if done.returncode != 0:
        raise DatabaseFailed(f"could not {what}: {argv[0]} exited {done.returncode}: "
                             f"{mysql.format_client_error(done.stderr)}")
    return _Done(done.stdout)


@dataclass(frozen=True)
class _Done:
    stdout: bytes


def run_dumps(settings: Settings, deps: Deps, window: Window,
              on_tick: Callable[[], None]) -> tuple[DumpOutcome, ...]:
    """Dump every configured database into the destination, one after another.

    A failed dump is logged (warning: the run's own error line reports it) and recorded;
    the others still run. Raise Terminated if a signal arrives.
    """
    outcomes = []
    for db in settings.databases:
        started = deps.monotonic()
        try:
            outcome = _dump_one(_Job(settings, deps, window, on_tick), db)
        except Terminated:
            raise
        except GhostBackupError as err:
            message = deps.redactor.redact(err.message)
            log.warning("database %s: dump failed: %s", db.name, message)
            outcome = DumpOutcome(db.name, ok=False, error=message,
                                  seconds=round(deps.monotonic() - started, 3))
        outcomes.append(outcome)
    return tuple(outcomes)


@dataclass(frozen=True)
class _Job:
    """What every step of one run's dumps shares."""

    settings: Settings
    deps: Deps
    window: Window
    on_tick: Callable[[], None]

    def argv(self, build: Callable[..., tuple[str, ...]], **kwargs: str) -> tuple[str, ...]:
        return build(self.settings, config_path=self.window.config_path,
                     work_dir=self.window.run_dir, **kwargs)


def _dump_one(job: _Job, db: DatabaseSettings) -> DumpOutcome:
    settings, deps, window = job.settings, job.deps, job.window
    key = objects.build_dump_key(settings, db, window.run_id)
    partial = key + objects.PARTIAL_SUFFIX
    margin = settings.credentials.safety_margin_seconds
    budget = remaining_seconds(deps, window.credentials) - margin
    timeout = min(float(db.timeout_seconds), budget)
    if timeout <= 0:
        raise DatabaseFailed("no time left in the credential window")
    codec = Compressor(db.compression_level)
    rcat = job.argv(rclone.build_rcat_argv, key=partial)
    log.info("database %s: dumping to %s", db.name, partial)
    if db.kind == "sqlite":
        result = _sqlite_pipe(job, db, rcat, codec, timeout)
    else:
        env = mysql.build_client_env(deps.env, read_db_password(db, deps))
        schemas = fetch_schemas(db, env)
        log.info("database %s: schemas %s", db.name, ", ".join(schemas))
        result = _pipe(job, (mysql.build_dump_argv(db, schemas), env), rcat, codec,
                       accept=lambda rc: mysql.classify_dump_end(rc, codec.tail),
                       timeout=timeout)
    _judge(job, db, result, partial)
    _object_call(job, job.argv(rclone.build_moveto_argv, key=partial, new_key=key),
                 "rename the finished dump")
    log.log(NOTICE, "database %s: dump stored as %s (%s raw, %s stored, %.1fs)", db.name,
            key, format_bytes(result.raw_bytes), format_bytes(codec.stored_bytes),
            result.seconds)
    _remove_stale_partials(job, db, keep=partial)
    return DumpOutcome(db.name, ok=True, key=key, raw_bytes=result.raw_bytes,
                       stored_bytes=codec.stored_bytes, sha256=codec.sha256,
                       seconds=round(result.seconds, 3))


def _pipe(job: _Job, producer: tuple[tuple[str, ...], dict[str, str]] | BinaryIO,
          rcat: tuple[str, ...], codec: Compressor, *, accept: Callable[[int], str | None],
          timeout: float) -> PipeResult:
    argv, env = producer if isinstance(producer, tuple) else (producer, {})
    # While the pipe runs, SIGTERM is recorded and handled by the loop (abort), not raised.
    with job.deps.stop.deferred():
        try:
            return run_pipe(
                argv, env, rcat, job.window.child_env(job.deps),
                transform=codec.feed, flush=codec.finish, accept=accept, stop=job.deps.stop,
                on_tick=job.on_tick, timeout_seconds=timeout,
                stall_timeout_seconds=job.settings.rclone.stall_timeout_seconds,
            )
        except OSError as err:
            raise DatabaseFailed(f"cannot start the dump: {err.strerror}") from None


def _sqlite_pipe(job: _Job, db: DatabaseSettings, rcat: tuple[str, ...], codec: Compressor,
                 timeout: float) -> PipeResult:
    assert db.path is not None  # noqa: S101 -- the settings model requires it for sqlite
    state_dir = job.settings.state.dir
    spool = sqlite.spool_path(state_dir, db.name)
    for stale in sqlite.remove_stale_spool(state_dir):
        log.warning("database %s: removed spool file %s left by a run that died",
                    db.name, stale.name)
    try:
        with job.deps.stop.deferred():
            size = sqlite.write_sqlite_copy(db.path, spool)
        if job.deps.stop.requested:
            raise Terminated("stopped by a signal during the SQLite copy; nothing was uploaded")
        log.info("database %s: consistent copy of %s taken (%s)", db.name, db.path,
                 format_bytes(size))
        with spool.open("rb") as copy:
            return _pipe(job, copy, rcat, codec, accept=lambda _rc: None, timeout=timeout)
    finally:
        spool.unlink(missing_ok=True)


def _judge(job: _Job, db: DatabaseSettings, result: PipeResult, partial: str) -> None:
    if result.aborted is None and result.consumer_rc == 0:
        return
    # Whatever happened, no .partial may stay: rcat was killed with its input open (no
    # upload completed), but a previous attempt's object could exist.
    with job.deps.stop.deferred():
        try:
            _object_call(job, job.argv(rclone.build_deletefile_argv, key=partial),
                         "delete the partial upload", missing_ok=True)
        except GhostBackupError as err:
            log.warning("database %s: %s", db.name, err.message)
    if job.deps.stop.requested:
        raise Terminated(f"database {db.name}: dump stopped by a signal; nothing was stored")
    if result.aborted is not None:
        detail = mysql.format_client_error(result.producer_err)
        raise DatabaseFailed(result.aborted + (f": {detail}" if detail else ""))
    detail = mysql.format_client_error(result.consumer_out)
    raise RcloneFailed(f"rclone rcat exited {result.consumer_rc}" +
                       (f": {detail}" if detail else ""))


def _object_call(job: _Job, argv: tuple[str, ...], what: str, *,
                 missing_ok: bool = False) -> str:
    result = run_captured(argv, job.window.child_env(job.deps),
                          timeout_seconds=OBJECT_TIMEOUT_SECONDS)
    if result.returncode == 0:
        return result.stdout
    if missing_ok and result.returncode in (3, 4):  # directory / file not found
        return ""
    detail = mysql.format_client_error(result.stderr.encode())
    raise RcloneFailed(f"could not {what} (rclone exit {result.returncode}): {detail}")


def list_dumps(settings: Settings, deps: Deps, window: Window, db: DatabaseSettings,
               ) -> tuple[tuple[objects.DumpObject, ...], tuple[str, ...]]:
    """Return ``db``'s complete dumps at the destination (oldest first) and its partials.

    Raise RcloneFailed if the listing fails.
    """
    job = _Job(settings, deps, window, lambda: None)
    argv = job.argv(rclone.build_dump_list_argv, prefix=objects.dump_prefix(settings, db))
    text = _object_call(job, argv, f"list the dumps of {db.name}", missing_ok=True)
    return objects.parse_dump_listing(text, db)


def _remove_stale_partials(job: _Job, db: DatabaseSettings, *, keep: str) -> None:
    try:
        _dumps, partials = list_dumps(job.settings, job.deps, job.window, db)
        for name in partials:
            key = f"{objects.dump_prefix(job.settings, db)}/{name}"
            if key == keep:
                continue
            _object_call(job, job.argv(rclone.build_deletefile_argv, key=key),
                         "delete a stale partial dump", missing_ok=True)
            log.warning("database %s: deleted %s left by a run that died", db.name, name)
    except GhostBackupError as err:
        log.warning("database %s: stale partial dumps not cleaned: %s", db.name, err.message)


def prune_dumps(settings: Settings, deps: Deps, window: Window, *, keep_days: int,
                now: datetime) -> int:
    """Delete dumps older than ``keep_days`` (the newest of each database is always kept).

    Return how many were deleted. A failure is logged and ends pruning (the backup stands).
    """
    deleted = 0
    job = _Job(settings, deps, window, lambda: None)
    for db in settings.databases:
        try:
            dumps, _ = list_dumps(settings, deps, window, db)
            for dump in objects.select_expired(dumps, now=now, keep_days=keep_days):
                key = f"{objects.dump_prefix(settings, db)}/{dump.name}"
                _object_call(job, job.argv(rclone.build_deletefile_argv, key=key),
                             "delete an expired dump", missing_ok=True)
                deleted += 1
                log.info("database %s: deleted dump %s (older than %d days)", db.name,
                         dump.name, keep_days)
        except GhostBackupError as err:
            log.warning("database %s: dump retention not applied: %s", db.name, err.message)
    return deleted
