"""``ExitCode`` is the single source of the exit-code table: every code has its meaning, and
the unit's ``RestartPreventExitStatus=`` is exactly the set it marks non-retryable."""

from __future__ import annotations

import re
from pathlib import Path

from ghost_backup.errors import (
    EXIT_CODES,
    ExitCode,
    GhostBackupError,
    non_retryable_codes,
)

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "ghost-backup.service"


def test_every_exit_code_has_its_meaning_and_action() -> None:
    assert set(EXIT_CODES) == set(ExitCode)
    for code, info in EXIT_CODES.items():
        assert info.meaning, code.name
        assert info.detail, code.name
        assert info.action, code.name
        assert "|" not in info.meaning + info.detail + info.action, code.name


def test_units_restart_prevent_exit_status_is_the_non_retryable_set() -> None:
    match = re.search(r"^RestartPreventExitStatus=(.*)$", UNIT.read_text(), re.M)
    assert match is not None
    assert sorted(int(c) for c in match.group(1).split()) == sorted(non_retryable_codes())


def test_only_what_time_can_heal_is_retried() -> None:
    retried = {code for code, info in EXIT_CODES.items() if info.retry}
    assert retried == {ExitCode.RCLONE_FAILED, ExitCode.TEMPORARY}


def test_every_error_class_carries_a_documented_code() -> None:
    def walk(cls: type[GhostBackupError]) -> list[type[GhostBackupError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in walk(sub))]

    for cls in walk(GhostBackupError):
        assert cls.exit_code in EXIT_CODES, cls.__name__
