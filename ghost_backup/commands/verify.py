"""``ghost-backup verify``: check that every source file (or a deterministic sample) is
identical in the backup, with ``rclone check --one-way`` (source -> backup). Reads only."""

from __future__ import annotations

import logging
from pathlib import Path

from ghost_backup import rclone
from ghost_backup.commands.context import (
    COMBINED_NAME,
    Deps,
    Window,
    command_scope,
    fetch_audited_credentials,
    new_run_id,
    raise_on_problems,
    read_check_report,
)
from ghost_backup.commands.guards import check_source
from ghost_backup.errors import RcloneFailed
from ghost_backup.host import files
from ghost_backup.host.process import run_captured
from ghost_backup.logs import NOTICE
from ghost_backup.settings import Settings

log = logging.getLogger(__name__)

SOURCE_LIST_TIMEOUT_SECONDS = 900.0
FILES_FROM_NAME = "sample-files.txt"


def run_verify(settings: Settings, deps: Deps, *, sample: int | None, seed: str = "") -> str:
    """Check that every source file (or a deterministic sample) is identical in the backup.

    Return a one-line summary; raise VerifyMismatch naming the files that differ or are
    missing. Files changed since the last run count as differences: run it after a backup.
    """
    check_source(settings.source)
    run_id = new_run_id(deps.clock())
    with command_scope(settings, deps, run_id) as scope:
        credentials, _ = fetch_audited_credentials(settings, deps, run_id, command="verify")
        window = scope.open_window(credentials)
        files_from = None
        what = "all source files"
        if sample is not None:
            files_from, what = _write_sample(settings, deps, window, sample, seed)
        argv = rclone.build_verify_argv(
            settings, config_path=window.config_path, work_dir=window.run_dir,
            combined_path=window.run_dir / COMBINED_NAME, files_from=files_from,
        )
        log.log(NOTICE, "verifying %s against %s", what, rclone.remote_path(settings))
        report = read_check_report(settings, deps, window, argv, "verify")
        raise_on_problems(report, "verify")
    return (f"verify: {report.matching} files identical in {settings.source.path} and "
            f"{rclone.remote_path(settings)} ({what})")


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
    path = files.write_private_file(window.run_dir, FILES_FROM_NAME,
                                        "".join(f"{p}\n" for p in chosen))
    return path, f"a sample of {len(chosen)} of {len(paths)} files (seed {seed!r})"
