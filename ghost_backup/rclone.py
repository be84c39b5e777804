"""The rclone command: config text, argv, the child's environment, and the exit-code table.

All functions here are pure. Keys only ever enter :func:`build_child_env`; the rendered
config and argv carry non-secret settings only (rclone logs its whole argv at DEBUG, and argv
is readable by every process on the host).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ghost_backup.credentials import Credentials
from ghost_backup.errors import ExitCode
from ghost_backup.settings import Settings

REMOTE = "r2"
CONFIG_NAME = "rclone.conf"
_ENV_PREFIX = f"RCLONE_CONFIG_{REMOTE.upper()}_"

# Only these inherited variables may reach rclone. Everything else is dropped: an inherited
# AWS_SESSION_TOKEN next to our keys gives HTTP 400 from R2, RCLONE_* could redirect the
# remote, and NOTIFY_SOCKET/JOURNAL_STREAM would let rclone talk to systemd behind our back.
_ENV_ALLOWLIST = frozenset({
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
})
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def render_config(settings: Settings) -> str:
    """Return the rclone config text for the destination: settings only, never a key."""
    dest = settings.destination
    lines = [
        f"[{REMOTE}]",
        "type = s3",
        f"provider = {dest.provider}",
        "env_auth = false",
        "region = auto",
        f"endpoint = {dest.endpoint_url}",
        # Object-scoped R2 tokens cannot create or check buckets (rclone docs, R2 section).
        "no_check_bucket = true",
    ]
    return "\n".join(lines) + "\n"


def remote_path(settings: Settings, prefix: str | None = None) -> str:
    """Return ``r2:<bucket>[/<prefix>]`` for the destination (or another prefix)."""
    path = settings.destination.path if prefix is None else prefix
    bucket = settings.destination.bucket
    return f"{REMOTE}:{bucket}/{path}" if path else f"{REMOTE}:{bucket}"


def build_common_flags(settings: Settings, config_path: Path, work_dir: Path) -> tuple[str, ...]:
    """Return flags every rclone call shares: config, JSON logs, stats, caches in tmpfs."""
    rc = settings.rclone
    return (
        "--config", str(config_path),
        "--use-json-log",
        "--log-level", rc.log_level,
        "--stats", f"{rc.stats_interval_seconds}s",
        # Stats are logged at --stats-log-level; at the default (INFO) a NOTICE run shows none.
        "--stats-log-level", "NOTICE",
        "--cache-dir", str(work_dir / "cache"),
        "--temp-dir", str(work_dir),
        "--transfers", str(rc.transfers),
        "--checkers", str(rc.checkers),
    )


def build_sync_argv(
    settings: Settings,
    *,
    config_path: Path,
    work_dir: Path,
    max_duration_seconds: int | None,
    archive_stamp: str | None = None,
) -> tuple[str, ...]:
    """Return the argv for ``rclone sync`` of the source to the destination.

    ``max_duration_seconds`` bounds rclone inside the credentials' lifetime (soft cutoff:
    no new transfers, deletes skipped, exit 10). ``archive_stamp`` names the dated folder
    under ``destination.archive_path`` for ``--backup-dir``.
    """
    rc = settings.rclone
    src = settings.source
    argv: list[str] = [
        rc.binary, "sync", str(src.path), remote_path(settings),
        *build_common_flags(settings, config_path, work_dir),
    ]
    for pattern in src.exclude:
        argv += ["--exclude", pattern]
    if rc.fast_list:
        argv.append("--fast-list")
    if src.one_file_system:
        argv.append("--one-file-system")
    if rc.max_delete > 0:
        argv += ["--max-delete", str(rc.max_delete)]
    if settings.destination.archive_path is not None and archive_stamp is not None:
        archive = f"{settings.destination.archive_path}/{archive_stamp}"
        argv += ["--backup-dir", remote_path(settings, archive)]
    if max_duration_seconds is not None:
        argv += ["--max-duration", f"{max_duration_seconds}s", "--cutoff-mode", "soft"]
    argv += list(rc.extra_args)
    return tuple(argv)


def build_child_env(base: Mapping[str, str], credentials: Credentials) -> dict[str, str]:
    """Return rclone's environment: allowlisted inherited variables plus the remote's keys.

    The session token is set only when present and non-empty (R2 rejects an empty one).
    """
    env = {key: value for key, value in base.items() if key in _ENV_ALLOWLIST}
    env.setdefault("PATH", DEFAULT_PATH)
    env[_ENV_PREFIX + "ACCESS_KEY_ID"] = credentials.access_key_id.get_secret_value()
    env[_ENV_PREFIX + "SECRET_ACCESS_KEY"] = credentials.secret_access_key.get_secret_value()
    token = credentials.session_token.get_secret_value() if credentials.session_token else ""
    if token:
        env[_ENV_PREFIX + "SESSION_TOKEN"] = token
    return env


@dataclass(frozen=True)
class ExitClass:
    """What an rclone exit status means for the run."""

    code: ExitCode
    message: str


def classify_exit(returncode: int, *, terminated: bool, max_delete_hit: bool) -> ExitClass:
    """Given rclone's exit status, return our exit code and a one-line explanation.

    ``terminated``: we forwarded SIGTERM/SIGINT. ``max_delete_hit``: rclone logged that the
    ``--max-delete`` limit stopped it (exit 7 is shared with other fatal errors).
    """
    if terminated:
        return ExitClass(ExitCode.TERMINATED, "backup terminated by signal; rclone stopped")
    if returncode == 0:
        return ExitClass(ExitCode.OK, "backup finished")
    if returncode < 0:
        return ExitClass(ExitCode.RCLONE_FAILED, f"rclone was killed by signal {-returncode}")
    table = {
        1: "rclone failed (uncategorised error)",
        2: "rclone failed (usage or syntax error)",
        3: "rclone: source directory not found; nothing was deleted",
        4: "rclone: a file was not found",
        5: "rclone: temporary errors remained after all retries",
        6: "rclone: some files failed (less serious errors)",
        7: "rclone: fatal error; retrying will not help",
        8: "rclone: --max-transfer limit reached",
        9: "rclone: nothing was transferred",
    }
    if returncode == 3:
        return ExitClass(ExitCode.SOURCE_REFUSED, table[3])
    if returncode == 7 and max_delete_hit:
        return ExitClass(
            ExitCode.DELETE_GUARD,
            "deletion guard tripped: the sync would delete more than rclone.max_delete "
            "objects; nothing more was deleted",
        )
    if returncode == 10:
        return ExitClass(
            ExitCode.TEMPORARY,
            "run cut off before the credentials expire (--max-duration); deletes were skipped, "
            "the next run continues",
        )
    if returncode in (130, 143):
        return ExitClass(ExitCode.RCLONE_FAILED, f"rclone stopped by a signal (exit {returncode})")
    message = table.get(returncode, "rclone failed")
    return ExitClass(ExitCode.RCLONE_FAILED, f"{message} (exit {returncode})")
