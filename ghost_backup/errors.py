"""The one exception hierarchy and the exit-code table, the single source of both.

Every failure ghost-backup knows about is a :class:`GhostBackupError` carrying a user-safe,
one-line message and an exit code from :class:`ExitCode`. Third-party exceptions are
translated into these at the boundary where they happen, so the CLI can print one clear line
and return the code without a traceback.

Each :class:`ExitCode` carries its meaning and whether systemd should restart the unit after
it (:data:`EXIT_CODES`). The README's table and ``docs/exit-codes.md``'s table are generated
from it (``make docs``) and the unit's ``RestartPreventExitStatus=`` is checked against it by
``tests/unit/test_errors.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of ``ghost-backup``; sysexits(3) values where one fits."""

    OK = 0
    RCLONE_FAILED = 1
    USAGE = 64
    CREDENTIALS_INVALID = 65
    SOURCE_REFUSED = 66
    PROXY_UNAVAILABLE = 69
    INTERNAL = 70
    RUNTIME_UNSAFE = 73
    AUDIT_INCOMPLETE = 74
    TEMPORARY = 75
    PROXY_DENIED = 77
    CONFIG = 78
    DELETE_GUARD = 79
    KEYS_ON_HOST = 80
    VERIFY_MISMATCH = 81
    DATABASE_FAILED = 82
    TERMINATED = 143


@dataclass(frozen=True)
class ExitInfo:
    """What an exit code means, what to do about it, and whether a later automatic attempt
    can heal it (systemd's ``Restart=on-failure`` may retry it)."""

    meaning: str
    detail: str
    action: str
    retry: bool


# ``retry``: systemd's Restart=on-failure may try again (RestartPreventExitStatus= lists the
# others). Only what time can heal is retried: a flaky rclone run, a lock held or a window cut
# off. A failed credential fetch is never retried in a loop: it stops the backup and alerts.
EXIT_CODES: dict[ExitCode, ExitInfo] = {
    ExitCode.OK: ExitInfo(
        meaning=('backup finished'),
        detail=('backup finished'),
        action=('nothing'),
        retry=False,
    ),
    ExitCode.RCLONE_FAILED: ExitInfo(
        meaning=('rclone failed (could not start, stalled, or exited with an error)'),
        detail=('rclone could not start (binary missing), stalled, crashed or exited with an error'
                " (rclone's own code is in the log line)"),
        action=('read the `rclone:` lines before the failure in the journal; a 403 means the keys '
                'were refused by R2 (see runbook "invalid keys")'),
        retry=True,
    ),
    ExitCode.USAGE: ExitInfo(
        meaning=('usage error'),
        detail=('the command line was wrong'),
        action=("fix the unit's `ExecStart=` or your command"),
        retry=False,
    ),
    ExitCode.CREDENTIALS_INVALID: ExitInfo(
        meaning=('credential answer invalid (malformed, missing fields, expired, too long-lived)'),
        detail=('the proxy answered, but not with usable short-lived keys: not JSON, missing or '
                'empty fields, expired, expiring too soon, valid too long, no timezone'),
        action=("check the credential provider's configuration at the proxy; the log line names "
                'the field, never the value'),
        retry=False,
    ),
    ExitCode.SOURCE_REFUSED: ExitInfo(
        meaning=('source refused (missing, not mounted, empty, shrunk, sentinel missing)'),
        detail=('the source is missing, not a mount point, empty as rclone sees it, shrunk '
                'below `source.min_fraction_of_last` of the last successful run, or lacks its '
                'sentinel file; nothing was synced or deleted'),
        action=('check that the data disk is mounted (`findmnt /var/mnt/storage`); a real '
                'shrink: `ghost-backup run --allow-shrink` once'),
        retry=False,
    ),
    ExitCode.PROXY_UNAVAILABLE: ExitInfo(
        meaning=('credential proxy unreachable or failing after retries'),
        detail=('the credential proxy could not be reached, timed out, or kept answering 5xx/429 '
                'after retries; or 404 (no such provider)'),
        action=('`systemctl status` of the proxy; `curl -sI` its URL from the host; check the '
                'provider name in `credentials.url`'),
        retry=False,
    ),
    ExitCode.INTERNAL: ExitInfo(
        meaning=('internal error (a bug: run with `--verbose`)'),
        detail=('a bug'),
        action=('run `ghost-backup --verbose run` and report the traceback'),
        retry=False,
    ),
    ExitCode.RUNTIME_UNSAFE: ExitInfo(
        meaning=('runtime directory unsafe (not tmpfs, wrong owner or mode)'),
        detail=('the runtime dir is not tmpfs, not ours, or not 0700, or the lock file is missing; '
                'nothing secret was created'),
        action=('run under the shipped unit (`RuntimeDirectory=ghost`), or point '
                '`runtime.manual_dir` at a tmpfs; a missing lock: `systemd-tmpfiles --create '
                'ghost-backup.conf`'),
        retry=False,
    ),
    ExitCode.TEMPORARY: ExitInfo(
        meaning=('temporary: another run holds the lock, or the sync did not finish within '
                 '`credentials.max_windows` credential windows'),
        detail=('another run holds the lock (its unit or pid is named), or the sync was still '
                'unfinished when its last credential window ended, or a whole window copied '
                'nothing (the message says how far it got)'),
        action=('nothing if it recurs once (the next run continues); if it recurs, ask for a '
                'longer credential lifetime or raise `credentials.max_windows`'),
        retry=True,
    ),
    ExitCode.PROXY_DENIED: ExitInfo(
        meaning=('credential proxy denied the request (401/403)'),
        detail=('the proxy refused this workload (401/403)'),
        action=('check the access policy (and its time condition) at the credential proxy'),
        retry=False,
    ),
    ExitCode.CONFIG: ExitInfo(
        meaning=('bad configuration'),
        detail=('the configuration is missing or invalid (every problem is listed)'),
        action=('fix the file named in the message; see `docs/configuration.md`'),
        retry=False,
    ),
    ExitCode.DELETE_GUARD: ExitInfo(
        meaning=('deletion guard tripped (`rclone.max_delete`)'),
        detail=('the sync would delete more than `rclone.max_delete` objects (a count or a '
                'percentage of the backup): refused before the sync, or stopped by rclone\'s '
                '`--max-delete` backstop'),
        action=('check the source really lost those files; if intended, '
                '`ghost-backup run --allow-shrink` once'),
        retry=False,
    ),
    ExitCode.AUDIT_INCOMPLETE: ExitInfo(
        meaning=('`audit-host` found no key, but could not read everything it meant to'),
        detail=('`ghost-backup audit-host` found no key-like value in what it read, but some '
                'paths were unreadable, a file was larger than it reads, or a walk hit its '
                'budget; the report names each gap'),
        action=('run it as root (or the owner of the unreadable paths), or audit the named '
                'paths with `--path`; see `docs/runbook.md`, "Auditing the host for keys"'),
        retry=False,
    ),
    ExitCode.KEYS_ON_HOST: ExitInfo(
        meaning=('`audit-host` found a key-like value on disk'),
        detail=('`ghost-backup audit-host` found something that looks like an S3/R2 key on disk'),
        action=('see `docs/runbook.md`, "Auditing the host for keys": move the key out, rotate it'),
        retry=False,
    ),
    ExitCode.VERIFY_MISMATCH: ExitInfo(
        meaning=('`verify` (or the check after a `restore`) found files that differ or are '
                 'missing'),
        detail=('`ghost-backup verify`, or the check that follows a `restore`, found files that '
                'differ from the backup or are missing there (the first ten of each kind are '
                'logged)'),
        action=('see the runbook, "Exit 81"; a file changed since the last run differs '
                'legitimately'),
        retry=False,
    ),
    ExitCode.DATABASE_FAILED: ExitInfo(
        meaning=('a database dump (or `restore-db`) failed; the file sync still ran'),
        detail=('a `[[database]]` dump failed (container missing, login refused, dump cut off, '
                'upload failed): no dump object was left for it, and the file sync ran anyway; '
                'or `restore-db` could not complete'),
        action=('read the `database NAME:` line in the journal; `ghost-backup check` tests each '
                'database\'s dump path without writing (runbook, "Exit 82")'),
        retry=False,
    ),
    ExitCode.TERMINATED: ExitInfo(
        meaning=('terminated by a signal (rclone stopped, config shredded)'),
        detail=('SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2 arrived outside a shutdown '
                '(`systemctl stop`, a kill, a closed SSH session); rclone was stopped and the '
                'config shredded. A shutdown or reboot does not exit 143: the run ends by SIGTERM '
                'itself (a clean stop for systemd), sends one healthchecks `/log` notice and is '
                'rerun at the next boot'),
        action=('`systemctl start ghost-backup` to finish the run now, or let the next night '
                'continue where it stopped'),
        retry=False,
    ),
}


def non_retryable_codes() -> tuple[int, ...]:
    """Return the failure codes systemd must not restart after (``RestartPreventExitStatus=``)."""
    return tuple(int(code) for code, info in EXIT_CODES.items()
                 if code != ExitCode.OK and not info.retry)


def format_exit_code_table() -> str:
    """Return the short Markdown table of every exit code and its meaning (README)."""
    rows = ["| code | meaning |", "|---:|---|"]
    rows += [f"| {int(code)} | {info.meaning} |" for code, info in EXIT_CODES.items()]
    return "\n".join(rows) + "\n"


def format_exit_code_lines() -> str:
    """Return every exit code and its meaning as plain aligned text lines (``--help``)."""
    return "".join(f"  {int(code):>3}  {info.meaning.replace('`', '')}\n"
                   for code, info in EXIT_CODES.items())


def format_exit_code_reference() -> str:
    """Return the full Markdown table: code, name, meaning, retried, what to do (docs)."""
    rows = ["| code | name | meaning | systemd retries | what to do |", "|---:|---|---|---|---|"]
    rows += [f"| {int(code)} | {code.name} | {info.detail} | {'yes' if info.retry else 'no'} "
             f"| {info.action} |" for code, info in EXIT_CODES.items()]
    return "\n".join(rows) + "\n"


class GhostBackupError(Exception):
    """A known failure: ``message`` is safe to print, log and send in an alert."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(GhostBackupError):
    """The command line was wrong."""

    exit_code = ExitCode.USAGE


class ConfigError(GhostBackupError):
    """The configuration is missing or invalid; ``problems`` lists every one."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class CredentialsInvalid(GhostBackupError):
    """The credential source answered, but not with usable short-lived credentials."""

    exit_code = ExitCode.CREDENTIALS_INVALID


class KeysRefused(GhostBackupError):
    """The bucket refused the keys the credential source handed out (HTTP 401/403 from R2)."""

    exit_code = ExitCode.CREDENTIALS_INVALID


class SourceRefused(GhostBackupError):
    """The source tree looks unsafe to sync from (missing, unmounted, empty)."""

    exit_code = ExitCode.SOURCE_REFUSED


class CredentialsUnavailable(GhostBackupError):
    """The credential source (proxy, API, helper, systemd credential) could not answer."""

    exit_code = ExitCode.PROXY_UNAVAILABLE


class RuntimeUnsafe(GhostBackupError):
    """The runtime directory is not a private tmpfs directory."""

    exit_code = ExitCode.RUNTIME_UNSAFE


class TemporaryFailure(GhostBackupError):
    """Try again later: another run holds the lock, or the credential window ran out."""

    exit_code = ExitCode.TEMPORARY


class CredentialsDenied(GhostBackupError):
    """The credential source refused this workload (HTTP 401/403, or its equivalent)."""

    exit_code = ExitCode.PROXY_DENIED


class RcloneFailed(GhostBackupError):
    """rclone could not be started, stalled, or exited with an error."""

    exit_code = ExitCode.RCLONE_FAILED


class DeleteGuardTripped(GhostBackupError):
    """rclone stopped because a sync would delete more than ``--max-delete`` objects."""

    exit_code = ExitCode.DELETE_GUARD


class Terminated(GhostBackupError):
    """A stop signal (SIGTERM, SIGINT, SIGHUP, ...) arrived; the run stopped and cleaned up."""

    exit_code = ExitCode.TERMINATED


class VerifyMismatch(GhostBackupError):
    """``verify`` or a restore's check found files that differ from the backup."""

    exit_code = ExitCode.VERIFY_MISMATCH


class DatabaseFailed(GhostBackupError):
    """A database could not be dumped, probed or restored."""

    exit_code = ExitCode.DATABASE_FAILED


class StateUnreadable(GhostBackupError):
    """The state file exists but is not a record ghost-backup wrote."""

    exit_code = ExitCode.INTERNAL
