"""The operator's commands: ``check``, ``restore`` and ``verify``, each sequenced here.

They follow ``run``'s discipline (see :mod:`ghost_backup.orchestrator`): the runtime
directory is proven tmpfs and locked, credentials are fetched fresh for this command (one
audit line naming the command), the per-run rclone config lives in a 0700 tmpfs directory
and is shredded in a ``finally``, and keys reach rclone through its environment only::

    check:   rclone version -> runtime dir + lock -> source guard -> credential fetch
             -> read-only listing of the bucket -> checklist
    restore: target guard -> runtime dir + lock -> credential fetch -> [archive folder]
             -> rclone copy (progress) -> rclone check --one-way (backup -> target)
    verify:  source guard -> runtime dir + lock -> credential fetch -> [sample list]
             -> rclone check --one-way (source -> backup)

Nothing here writes at the destination: ``check`` lists, ``restore`` and ``verify`` read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ghost_backup import credentials as creds_mod
from ghost_backup import ephemeral, rclone
from ghost_backup.credential_sources import build_source
from ghost_backup.errors import (
    ExitCode,
    GhostBackupError,
    RcloneFailed,
    TemporaryFailure,
    Terminated,
    UsageError,
    VerifyMismatch,
)
from ghost_backup.logs import NOTICE
from ghost_backup.orchestrator import (
    Deps,
    fetch_audited_credentials,
    fetch_rclone_version,
    log_rclone_event,
    new_run_id,
)
from ghost_backup.progress import Stats, format_bytes
from ghost_backup.settings import Settings
from ghost_backup.source import check_restore_target, check_source
from ghost_backup.supervisor import ChildResult, run_captured, run_child

log = logging.getLogger(__name__)

LIST_TIMEOUT_SECONDS = 120.0
# A restore larger than one credential lifetime continues with fresh credentials, each
# window bounded by --max-duration; this caps the number of windows (and proxy requests).
MAX_RESTORE_WINDOWS = 48
SOURCE_LIST_TIMEOUT_SECONDS = 900.0
COMBINED_NAME = "check-combined.txt"
FILES_FROM_NAME = "sample-files.txt"
_SHOWN_PATHS = 10


# --- shared: the credential window ---------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """What a command holds while its credentials are live."""

    run_id: str
    credentials: creds_mod.Credentials
    run_dir: Path
    config_path: Path


def _child_env(deps: Deps, window: Window) -> dict[str, str]:
    return rclone.build_child_env(deps.env, window.credentials)


def fetch_command_credentials(
    settings: Settings, deps: Deps, run_id: str, command: str
) -> creds_mod.Credentials:
    """Fetch fresh credentials for ``command`` from the configured source, with ``run``'s
    audit lines (see :func:`ghost_backup.orchestrator.fetch_audited_credentials`)."""
    credentials, _ = fetch_audited_credentials(settings, deps, run_id, command=command)
    return credentials


@contextlib.contextmanager
def locked_runtime(settings: Settings, deps: Deps) -> Iterator[None]:
    """Prove the runtime dir safe, take the single-run lock, wipe stale run dirs; unlock after.

    Commands share ``run``'s lock: a restore never races the nightly sync, and the proxy's
    audit log sees one credential request at a time.
    """
    ephemeral.ensure_runtime_dir(settings.runtime.dir)
    lock_fd = ephemeral.acquire_lock(settings.runtime.dir)
    try:
        for stale in ephemeral.remove_stale_run_dirs(settings.runtime.dir):
            log.warning("removed stale run directory %s left by a run that died", stale.name)
        yield
    finally:
        with deps.stop.deferred():
            ephemeral.release_lock(lock_fd)


@contextlib.contextmanager
def credential_window(
    settings: Settings, deps: Deps, credentials: creds_mod.Credentials, run_id: str
) -> Iterator[Window]:
    """Create the per-run tmpfs dir with the rclone config; shred it whatever happens.

    Call inside :func:`locked_runtime`.
    """
    run_dir: Path | None = None
    try:
        run_dir = ephemeral.create_run_dir(settings.runtime.dir, run_id)
        config_path = ephemeral.write_private_file(
            run_dir, rclone.CONFIG_NAME, rclone.render_config(settings)
        )
        yield Window(run_id, credentials, run_dir, config_path)
    finally:
        with deps.stop.deferred():
            if run_dir is not None:
                ephemeral.remove_run_dir(run_dir)


def _run_rclone(settings: Settings, deps: Deps, argv: tuple[str, ...],
                env: dict[str, str]) -> ChildResult:
    def on_started(pid: int) -> None:
        log.info("rclone %s started (pid %d)", argv[1], pid)

    # While rclone lives, SIGTERM is forwarded to it (and waited for), never raised here.
    with deps.stop.deferred():
        result = run_child(
            argv, env, on_event=log_rclone_event, on_started=on_started,
            on_tick=lambda: None, stop=deps.stop, tick_seconds=1.0,
            stall_timeout_seconds=settings.rclone.stall_timeout_seconds,
            term_timeout_seconds=settings.rclone.term_timeout_seconds, clock=deps.monotonic,
        )
    if result.terminated:
        raise Terminated(f"rclone {argv[1]} stopped by a signal; nothing more was written")
    if result.stalled:
        raise RcloneFailed(f"rclone {argv[1]} stalled: no progress for "
                           f"{settings.rclone.stall_timeout_seconds}s; it was stopped")
    return result


def _max_duration(settings: Settings, deps: Deps, credentials: creds_mod.Credentials) -> int:
    remaining = (credentials.expires_at - deps.clock()).total_seconds()
    return max(1, int(remaining - settings.credentials.safety_margin_seconds))


def _read_check_report(settings: Settings, deps: Deps, window: Window, argv: tuple[str, ...],
                       what: str) -> rclone.CheckReport:
    """Run an ``rclone check --combined`` argv and return what it found.

    Raise RcloneFailed if rclone failed without recording any difference (it could not list
    or read, so nothing was proven).
    """
    result = _run_rclone(settings, deps, argv, _child_env(deps, window))
    combined = window.run_dir / COMBINED_NAME
    text = combined.read_text(encoding="utf-8", errors="replace") if combined.exists() else ""
    report = rclone.parse_combined(text)
    if result.returncode != 0 and report.problems == 0:
        raise RcloneFailed(f"{what} could not complete (rclone check exit {result.returncode}); "
                           "see the rclone lines above")
    return report


def _raise_on_problems(report: rclone.CheckReport, what: str) -> None:
    if report.problems == 0:
        return
    for label, paths in (("differs", report.differ), ("missing", report.missing),
                         ("unreadable", report.unreadable)):
        for path in paths[:_SHOWN_PATHS]:
            log.error("%s: %s %s", what, label, path)
        if len(paths) > _SHOWN_PATHS:
            log.error("%s: ... and %d more %s", what, len(paths) - _SHOWN_PATHS, label)
    raise VerifyMismatch(
        f"{what} found {report.problems} problem(s): {len(report.differ)} differ, "
        f"{len(report.missing)} missing, {len(report.unreadable)} unreadable; "
        f"{report.matching} identical"
    )


# --- check -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckItem:
    """One line of the ``check`` checklist; ``code`` is None when it passed or was skipped."""

    name: str
    passed: bool | None
    detail: str
    code: ExitCode | None = None


def format_checklist(items: tuple[CheckItem, ...]) -> str:
    """Return the checklist text: ``[ok]``, ``[FAIL]`` or ``[skip]`` per item."""
    marks = {True: "[ok]  ", False: "[FAIL]", None: "[skip]"}
    lines = [f"{marks[item.passed]} {item.name}: {item.detail}" for item in items]
    return "\n".join(lines) + "\n"


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
            raise  # SIGTERM/SIGINT stops the whole check, not one line of it
        except GhostBackupError as err:
            items.append(CheckItem(name, False, err.message, err.exit_code))
            return False

    def skip(name: str, why: str) -> None:
        items.append(CheckItem(name, None, why))

    items.append(CheckItem("settings", True, "configuration is valid"))
    record("rclone", lambda: _check_rclone_version(settings, deps))
    record("source", lambda: _check_source(settings))
    run_id = new_run_id(deps.clock())
    try:
        with locked_runtime(settings, deps):
            items.append(CheckItem("runtime dir", True,
                                   f"{settings.runtime.dir} is private tmpfs; lock free"))
            credentials: list[creds_mod.Credentials] = []

            def fetch() -> str:
                credentials.append(fetch_command_credentials(settings, deps, run_id, "check"))
                valid = int((credentials[0].expires_at - deps.clock()).total_seconds())
                return (f"{build_source(settings).provider} gave keys valid {valid}s "
                        f"(until {credentials[0].expires_at.isoformat(timespec='seconds')})")

            if not record("credentials", fetch):
                skip("bucket", "needs credentials")
                return tuple(items)
            with credential_window(settings, deps, credentials[0], run_id) as window:
                record("bucket", lambda: _check_bucket(settings, deps, window))
    except Terminated:
        raise
    except GhostBackupError as err:
        items.append(CheckItem("runtime dir", False, err.message, err.exit_code))
        skip("credentials", "needs a safe runtime dir and the lock")
        skip("bucket", "needs a safe runtime dir and the lock")
    return tuple(items)


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
    result = run_captured(argv, _child_env(deps, window), timeout_seconds=LIST_TIMEOUT_SECONDS)
    if result.returncode != 0:
        verdict = rclone.classify_list_failure(result.returncode, result.stderr)
        raise GhostBackupError(deps.redactor.redact(verdict.message), exit_code=verdict.code)
    entries = len([line for line in result.stdout.splitlines() if line.strip()])
    return f"{rclone.remote_path(settings)} is reachable and listable ({entries} top-level entries)"


# --- restore ---------------------------------------------------------------------------------

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
    target = check_restore_target(request.target, settings.source, force=request.force)
    if request.from_archive is not None and settings.destination.archive_path is None:
        raise UsageError("--from-archive needs destination.archive_path in the configuration")
    run_id = new_run_id(deps.clock())
    version = fetch_rclone_version(settings, deps.env)
    log.info("restore %s starting (rclone %s) into %s%s", run_id, version or "unknown", target,
             " (dry run)" if request.dry_run else "")
    with locked_runtime(settings, deps):
        credentials = fetch_command_credentials(settings, deps, run_id, "restore")
        with credential_window(settings, deps, credentials, run_id) as first:
            window = first  # replaced with fresh credentials when a window runs out
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
                    max_duration_seconds=_max_duration(settings, deps, window.credentials),
                )
                result = _run_rclone(settings, deps, argv, _child_env(deps, window))
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
            if _remaining(deps, window) < settings.credentials.min_validity_seconds:
                window = _refresh(settings, deps, window, "restore")
            check_argv = rclone.build_check_argv(
                settings, config_path=window.config_path, work_dir=window.run_dir,
                left=source_remote, right=str(target),
                combined_path=window.run_dir / COMBINED_NAME,
                filters=rclone.build_subpath_filters(subpath),
            )
            report = _read_check_report(settings, deps, window, check_argv, "restore check")
            _raise_on_problems(report, "restore check")
    return (f"restored {files} files ({format_bytes(nbytes)}) from {what} into "
            f"{target}; verified {report.matching} files identical to the backup")


def _remaining(deps: Deps, window: Window) -> float:
    return (window.credentials.expires_at - deps.clock()).total_seconds()


def _refresh(settings: Settings, deps: Deps, window: Window, command: str) -> Window:
    """Return ``window`` with fresh credentials (a new audited request, same run id).

    The config on tmpfs holds no key, so only rclone's environment changes.
    """
    fresh = fetch_command_credentials(settings, deps, window.run_id, command)
    return dataclasses.replace(window, credentials=fresh)


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
    result = run_captured(argv, _child_env(deps, window), timeout_seconds=LIST_TIMEOUT_SECONDS)
    if result.returncode != 0:
        verdict = rclone.classify_list_failure(result.returncode, result.stderr)
        raise GhostBackupError(f"cannot list archive folders: {verdict.message}",
                               exit_code=verdict.code)
    try:
        folder = rclone.select_archive(tuple(result.stdout.splitlines()), wanted)
    except ValueError as err:
        raise UsageError(str(err)) from None
    log.info("restoring from archive folder %s", folder)
    return folder


# --- verify ----------------------------------------------------------------------------------

def run_verify(settings: Settings, deps: Deps, *, sample: int | None, seed: str = "") -> str:
    """Check that every source file (or a deterministic sample) is identical in the backup.

    Return a one-line summary; raise VerifyMismatch naming the files that differ or are
    missing. Files changed since the last run count as differences: run it after a backup.
    """
    check_source(settings.source)
    run_id = new_run_id(deps.clock())
    with locked_runtime(settings, deps):
        credentials = fetch_command_credentials(settings, deps, run_id, "verify")
        with credential_window(settings, deps, credentials, run_id) as window:
            files_from = None
            scope = "all source files"
            if sample is not None:
                files_from, scope = _write_sample(settings, deps, window, sample, seed)
            argv = rclone.build_verify_argv(
                settings, config_path=window.config_path, work_dir=window.run_dir,
                combined_path=window.run_dir / COMBINED_NAME, files_from=files_from,
            )
            log.log(NOTICE, "verifying %s against %s", scope, rclone.remote_path(settings))
            report = _read_check_report(settings, deps, window, argv, "verify")
            _raise_on_problems(report, "verify")
    return (f"verify: {report.matching} files identical in {settings.source.path} and "
            f"{rclone.remote_path(settings)} ({scope})")


def _write_sample(settings: Settings, deps: Deps, window: Window, size: int,
                  seed: str) -> tuple[Path, str]:
    argv = rclone.build_source_list_argv(settings, config_path=window.config_path,
                                         work_dir=window.run_dir)
    result = run_captured(argv, rclone.build_plain_env(deps.env),
                          timeout_seconds=SOURCE_LIST_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise RcloneFailed(f"cannot list the source for a sample (rclone exit "
                           f"{result.returncode})")
    paths = tuple(line for line in result.stdout.splitlines() if line)
    chosen = rclone.select_sample(paths, size, seed)
    path = ephemeral.write_private_file(window.run_dir, FILES_FROM_NAME,
                                        "".join(f"{p}\n" for p in chosen))
    return path, f"a sample of {len(chosen)} of {len(paths)} files (seed {seed!r})"
