"""The one exception hierarchy and the documented exit-code table.

Every failure ghost-backup knows about is a :class:`GhostBackupError` carrying a
user-safe, one-line message and an exit code from :class:`ExitCode`. Third-party
exceptions are translated into these at the boundary where they happen, so the
CLI can print one clear line and return the code without a traceback.
The table is documented in ``docs/exit-codes.md``; the systemd unit refers to it.
"""

from __future__ import annotations

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
    TEMPORARY = 75
    PROXY_DENIED = 77
    CONFIG = 78
    DELETE_GUARD = 79
    KEYS_ON_HOST = 80
    VERIFY_MISMATCH = 81
    TERMINATED = 143


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
    """The proxy answered, but not with usable short-lived credentials."""

    exit_code = ExitCode.CREDENTIALS_INVALID


class SourceRefused(GhostBackupError):
    """The source tree looks unsafe to sync from (missing, unmounted, empty)."""

    exit_code = ExitCode.SOURCE_REFUSED


class ProxyUnavailable(GhostBackupError):
    """The credential proxy could not be reached or kept failing."""

    exit_code = ExitCode.PROXY_UNAVAILABLE


class RuntimeUnsafe(GhostBackupError):
    """The runtime directory is not a private tmpfs directory."""

    exit_code = ExitCode.RUNTIME_UNSAFE


class TemporaryFailure(GhostBackupError):
    """Try again later: another run holds the lock, or the credential window ran out."""

    exit_code = ExitCode.TEMPORARY


class ProxyDenied(GhostBackupError):
    """The credential proxy refused this workload (401/403)."""

    exit_code = ExitCode.PROXY_DENIED


class RcloneFailed(GhostBackupError):
    """rclone could not be started, stalled, or exited with an error."""

    exit_code = ExitCode.RCLONE_FAILED


class DeleteGuardTripped(GhostBackupError):
    """rclone stopped because a sync would delete more than ``--max-delete`` objects."""

    exit_code = ExitCode.DELETE_GUARD


class Terminated(GhostBackupError):
    """SIGTERM or SIGINT arrived; the run stopped and cleaned up."""

    exit_code = ExitCode.TERMINATED


class VerifyMismatch(GhostBackupError):
    """``verify`` or a restore's check found files that differ from the backup."""

    exit_code = ExitCode.VERIFY_MISMATCH
