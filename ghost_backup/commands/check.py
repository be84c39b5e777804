"""``ghost-backup check``: the preflight checklist (settings, rclone, source, runtime dir,
credentials, bucket listable). Writes nothing at the destination: the bucket is only listed."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ghost_backup import rclone
from ghost_backup.commands.context import (
    Deps,
    Window,
    command_scope,
    fetch_audited_credentials,
    fetch_rclone_version,
    new_run_id,
)
from ghost_backup.commands.dumps import fetch_schemas, read_db_password
from ghost_backup.commands.guards import check_source
from ghost_backup.credentials.model import Credentials
from ghost_backup.credentials.sources import build_source
from ghost_backup.databases import mysql, sqlite
from ghost_backup.errors import (
    DatabaseFailed,
    ExitCode,
    GhostBackupError,
    RcloneFailed,
    Terminated,
)
from ghost_backup.host.process import run_bounded, run_captured
from ghost_backup.settings import DatabaseSettings, Settings

log = logging.getLogger(__name__)

LIST_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class CheckItem:
    """One line of the ``check`` checklist; ``code`` is None when it passed or was skipped."""

    name: str
    passed: bool | None
    detail: str
    code: ExitCode | None = None
    warning: bool = False  # passed, but the operator should know (``[warn]``)


def format_checklist(items: tuple[CheckItem, ...]) -> str:
    """Return the checklist text: ``[ok]``, ``[warn]``, ``[FAIL]`` or ``[skip]`` per item."""
    marks = {True: "[ok]  ", False: "[FAIL]", None: "[skip]"}
    lines = [f"{'[warn]' if item.warning else marks[item.passed]} {item.name}: {item.detail}"
             for item in items]
    return "\n".join(lines) + "\n"


def format_checklist_json(items: tuple[CheckItem, ...], *, checked_at: datetime,
                          problems: tuple[str, ...] = ()) -> str:
    """Return the checklist as JSON, shaped like ``status --json``: ``outcome``,
    ``exit_code``, ``exit_name`` and ``message`` first, then one object per item
    (``status`` is ``ok``, ``warn``, ``fail`` or ``skip``); ``problems`` lists a bad
    config's problems."""
    code = first_failure(items)
    failed = next((item for item in items if item.passed is False), None)
    statuses = {True: "ok", False: "fail", None: "skip"}
    payload: dict[str, object] = {
        "outcome": "success" if code == ExitCode.OK else "failure",
        "exit_code": int(code),
        "exit_name": code.name,
        "message": "every check passed" if failed is None else f"{failed.name}: {failed.detail}",
        "checked_at": checked_at.isoformat(timespec="seconds"),
        "items": [{"name": item.name,
                   "status": "warn" if item.warning else statuses[item.passed],
                   "detail": item.detail,
                   "exit_code": None if item.code is None else int(item.code)}
                  for item in items],
    }
    if problems:
        payload["problems"] = list(problems)
    return json.dumps(payload, indent=2) + "\n"


def first_failure(items: tuple[CheckItem, ...]) -> ExitCode:
    """Return the exit code of the first failed item, or OK."""
    return next((item.code for item in items if item.passed is False and item.code),
                ExitCode.OK)


def run_check(settings: Settings, deps: Deps) -> tuple[CheckItem, ...]:
    """Run every preflight check that can run and return the checklist.

    Nothing is written at the destination (the bucket is only listed). Checks that depend
    on a failed one are reported as skipped.
    """
    items: list[CheckItem] = []

    def record(name: str, step: Callable[[], str]) -> bool:
        try:
            items.append(CheckItem(name, True, step()))
            return True
        except Terminated:
            raise  # a stop signal stops the whole check, not one line of it
        except GhostBackupError as err:
            items.append(CheckItem(name, False, err.message, err.exit_code))
            return False

    def skip(name: str, why: str) -> None:
        items.append(CheckItem(name, None, why))

    items.append(CheckItem("settings", True, "configuration is valid"))
    items.append(_history_item(settings))
    record("rclone", lambda: _check_rclone_version(settings, deps))
    record("source", lambda: _check_source(settings))
    for db in settings.databases:
        record(f"database {db.name}", functools.partial(check_database, settings, deps, db))
    run_id = new_run_id(deps.clock())
    try:
        with command_scope(settings, deps, run_id) as scope:
            items.append(CheckItem("runtime dir", True,
                                   f"{scope.runtime_dir} is private tmpfs; lock free"))
            credentials: list[Credentials] = []

            def fetch() -> str:
                fetched, _ = fetch_audited_credentials(settings, deps, run_id, command="check")
                credentials.append(fetched)
                valid = int((credentials[0].expires_at - deps.clock()).total_seconds())
                return (f"{build_source(settings).provider} gave keys valid {valid}s "
                        f"(until {credentials[0].expires_at.isoformat(timespec='seconds')})")

            if not record("credentials", fetch):
                skip("bucket", "needs credentials")
                return tuple(items)
            window = scope.open_window(credentials[0])
            record("bucket", lambda: _check_bucket(settings, deps, window))
    except Terminated:
        raise
    except GhostBackupError as err:
        items.append(CheckItem("runtime dir", False, err.message, err.exit_code))
        skip("credentials", "needs a safe runtime dir and the lock")
        skip("bucket", "needs a safe runtime dir and the lock")
    return tuple(items)


def _history_item(settings: Settings) -> CheckItem:
    dest = settings.destination
    if dest.history_on:
        return CheckItem("history", True, (
            f"on: overwritten and deleted objects kept under {dest.archive_path}/ for "
            f"{settings.retention.keep_days} days (restore --as-of)"))
    log.warning("history is off (destination.archive_path = \"\"): every deletion and "
                "overwrite at the destination is final")
    return CheckItem("history", True, (
        "OFF (destination.archive_path = \"\"): every deletion and overwrite at the "
        "destination is final, and no past night can be restored"), warning=True)


def _check_rclone_version(settings: Settings, deps: Deps) -> str:
    version = fetch_rclone_version(settings, deps.env)
    if version is None:
        raise RcloneFailed(f"{settings.rclone.binary} did not report an rclone version")
    parsed = rclone.parse_version(f"rclone {version}")
    minimum = "v" + ".".join(map(str, rclone.MIN_VERSION))
    if parsed is None or parsed[1] < rclone.MIN_VERSION:
        raise RcloneFailed(f"rclone {version} is older than {minimum}, the oldest tested; "
                           "upgrade the sysext image or rclone.binary")
    return f"{version} at {settings.rclone.binary} (>= {minimum})"


def _check_source(settings: Settings) -> str:
    check_source(settings.source)
    return f"{settings.source.path} passes the guard (exists, mounted or allowed, not empty)"


def _check_bucket(settings: Settings, deps: Deps, window: Window) -> str:
    argv = rclone.build_list_argv(settings, config_path=window.config_path,
                                  work_dir=window.run_dir)
    result = run_captured(argv, window.child_env(deps), timeout_seconds=LIST_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise rclone.classify_list_failure(result.returncode, result.stderr,
                                           redact=deps.redactor.redact)
    entries = len([line for line in result.stdout.splitlines() if line.strip()])
    return f"{rclone.remote_path(settings)} is reachable and listable ({entries} top-level entries)"


def check_database(settings: Settings, deps: Deps, db: DatabaseSettings) -> str:
    """Prove ``db``'s dump path works without writing anything; return what was found.

    ``mysql``: the container runs (``inspect``), the client logs in with the same password
    path as the dump (``SELECT 1``) and lists the schemas. ``sqlite``: the file opens
    read-only. Raise DatabaseFailed otherwise.
    """
    notes = _datadir_notes(settings, db)
    if db.kind == "sqlite":
        assert db.path is not None  # noqa: S101 -- the settings model requires it for sqlite
        tables = sqlite.fetch_readable(db.path)
        return f"{db.path} opens read-only ({tables} tables){notes}"
    where = f"container {db.container}" if db.container else f"socket {db.socket}" \
        if db.socket else f"{db.host}:{db.port}"
    env = mysql.build_client_env(deps.env, read_db_password(db, deps))
    if db.container is not None:
        _run_client(mysql.build_inspect_argv(db), env, "inspect the container", expect="true")
    _run_client(mysql.build_probe_argv(db), env, "log in", expect="1")
    schemas = fetch_schemas(db, env)
    other = _non_innodb(db, env, schemas)
    if other:
        notes += (f"; warning: {len(other)} table(s) not InnoDB ({', '.join(other[:3])}): "
                  "a dump is consistent only for InnoDB tables")
    return f"{where}: user {db.user} logs in; would dump {', '.join(schemas)}{notes}"


def _non_innodb(db: DatabaseSettings, env: dict[str, str], schemas: tuple[str, ...]
                ) -> list[str]:
    try:
        done = run_bounded(mysql.build_non_innodb_argv(db, schemas), env,
                           timeout_seconds=LIST_TIMEOUT_SECONDS)
    except OSError:
        return []
    if done.returncode != 0 or done.timed_out:
        return []
    return [line.strip() for line in done.stdout.decode("utf-8", "replace").splitlines()
            if line.strip()]


def _run_client(argv: tuple[str, ...], env: dict[str, str], what: str, *, expect: str) -> None:
    try:
        done = run_bounded(argv, env, timeout_seconds=LIST_TIMEOUT_SECONDS)
    except OSError as err:
        raise DatabaseFailed(f"cannot {what}: cannot start {argv[0]}: {err.strerror}") from None
    out = done.stdout.decode("utf-8", "replace").strip()
    if done.timed_out or done.returncode != 0 or out != expect:
        detail = mysql.format_client_error(done.stderr) or out[:80] or "no answer"
        raise DatabaseFailed(f"cannot {what} (exit {done.returncode}): {detail}")


def _datadir_notes(settings: Settings, db: DatabaseSettings) -> str:
    notes = []
    for path in (db.datadir, db.path):
        if path is None:
            continue
        try:
            path.relative_to(settings.source.path)
        except ValueError:
            notes.append(f"{path} is outside the source, so the sync never copies it")
            continue
        notes.append(f"{path} is excluded from the file sync" if db.exclude_datadir else
                     f"warning: {path} is synced file by file (exclude_datadir = false): "
                     "that copy is torn; restore from the dump")
    inside = rclone.dumps_prefix_in_mirror(settings)
    if inside is not None and (settings.source.path / inside).exists():
        notes.append(f"warning: {settings.source.path / inside} is left out of the sync, as "
                     "the dumps' prefix has its name; set destination.databases_path to "
                     "another name")
    return "; " + "; ".join(notes) if notes else ""
