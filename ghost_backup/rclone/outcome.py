"""What rclone's exit status and output mean, as typed errors (pure).

rclone's exit codes are documented in its manual ("Exit Code"); how they map to ours is
docs/exit-codes.md ("How rclone's own exit codes map").
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ghost_backup.errors import (
    ConfigError,
    DeleteGuardTripped,
    GhostBackupError,
    KeysRefused,
    RcloneFailed,
    SourceRefused,
    TemporaryFailure,
    Terminated,
)

_DENIED_RE = re.compile(
    r"(StatusCode: 40[13]|SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|Forbidden)"
)

def classify_exit(
    returncode: int, *, terminated: bool, max_delete_hit: bool
) -> GhostBackupError | None:
    """Given rclone's exit status, return the typed error it means (None: success).

    Pure: the error is returned, the caller raises it.

    ``terminated``: we forwarded SIGTERM/SIGINT. ``max_delete_hit``: rclone logged that the
    ``--max-delete`` limit stopped it (exit 7 is shared with other fatal errors).
    """
    if terminated:
        return Terminated("backup terminated by signal; rclone stopped")
    if returncode == 0:
        return None
    if returncode < 0:
        return RcloneFailed(f"rclone was killed by signal {-returncode}")
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
        return SourceRefused(table[3])
    if returncode == 7 and max_delete_hit:
        return DeleteGuardTripped(
            "deletion guard tripped: the sync would delete more than rclone.max_delete "
            "objects; nothing more was deleted",
        )
    if returncode == 10:
        return TemporaryFailure(
            "run cut off before the credentials expire (--max-duration): not every file was "
            "copied; the next run continues",
        )
    if returncode in (130, 143):
        return RcloneFailed(f"rclone stopped by a signal (exit {returncode})")
    message = table.get(returncode, "rclone failed")
    return RcloneFailed(f"{message} (exit {returncode})")


def classify_list_failure(
    returncode: int, output: str, *, what: str = "", redact: Callable[[str], str] = str
) -> GhostBackupError:
    """Given a failed listing's exit status and output, return the typed error it means.

    ``what`` prefixes the message; ``redact`` cleans the quoted rclone line.
    """
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    detail = last.split(": ", 1)[-1].strip()[:200]
    if _DENIED_RE.search(output):
        return KeysRefused(
            what + "the bucket refused the credentials (HTTP 401/403): the proxy handed out "
            "keys R2 does not accept for this bucket",
        )
    if returncode == 3 or "NoSuchBucket" in output or "directory not found" in output:
        return ConfigError(
            what + "bucket not found: check destination.bucket, account_id/endpoint and "
            "jurisdiction",
        )
    return RcloneFailed(
        what + redact(f"bucket not reachable (rclone exit {returncode}): {detail}"))
