"""extra_args: only tuning flags, whatever form a guard-defeating flag takes."""

from __future__ import annotations

import pytest

from ghost_backup.errors import ConfigError, ExitCode
from ghost_backup.rclone.flags import find_refused_flag
from ghost_backup.settings import parse_settings

ACCEPTED = [
    (),
    ("--bwlimit", "50k"),
    ("--bwlimit=50k", "--transfers", "1"),
    ("--retries", "1", "--low-level-retries=1", "--check-first"),
    ("--check-first=true", "--tpslimit", "10", "--s3-chunk-size=16M"),
    ("--user-agent", "-looks-like-a-flag"),  # a value-taking flag consumes the next argument
]


@pytest.mark.parametrize("args", ACCEPTED)
def test_tuning_flags_are_accepted(args: tuple[str, ...]) -> None:
    assert find_refused_flag(args) is None


REFUSED = [
    (("--max-delete=-1",), "--max-delete is refused"),
    (("--max-delete", "-1"), "--max-delete is refused"),
    (("--bwlimit", "1M", "--max-delete", "-1"), "--max-delete is refused"),
    (("--max-delete-size=1G",), "--max-delete-size is refused"),
    (("--backup-dir=r2:bucket/other",), "--backup-dir is refused"),
    (("--delete-before",), "--delete-before is refused"),
    (("--delete-excluded",), "--delete-excluded is refused"),
    (("--track-renames",), "--track-renames is refused"),
    (("--config", "/tmp/x"), "--config is refused"),
    (("--max-duration=10h",), "--max-duration is refused"),
    (("--cutoff-mode=soft",), "--cutoff-mode is refused"),
    (("--exclude", "*"), "--exclude is refused"),
    (("--filter-from=/tmp/f",), "--filter-from is refused"),
    (("--include=*.db",), "--include is refused"),
    (("--files-from-raw", "x"), "--files-from-raw is refused"),
    (("--one-file-system=false",), "--one-file-system is refused"),
    (("--copy-links",), "--copy-links is refused"),
    (("--dry-run",), "--dry-run is refused"),
    (("--dump", "auth"), "--dump is refused"),
    (("--size-only",), "--size-only is refused"),
    (("--no-such-flag",), "--no-such-flag is refused: it is not one of the tuning flags"),
    (("-x=false",), "-x (--one-file-system is refused"),
    (("-n",), "-n (--dry-run is refused"),
    (("-vn",), "-v (--verbose is refused"),
    (("-L",), "-L (--copy-links is refused"),
    (("-Z",), "-Z is refused"),
    (("/etc",), "argument 1 is refused: a bare argument"),
    (("--check-first", "extra"), "argument 2 is refused"),
    (("--bwlimit",), "--bwlimit needs a value"),
]


@pytest.mark.parametrize(("args", "says"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_flags_that_defeat_a_guard_or_are_unknown_are_refused_and_named(
    args: tuple[str, ...], says: str
) -> None:
    refused = find_refused_flag(args)
    assert refused is not None
    assert says in refused


def test_refused_extra_args_fail_config_load_with_78_naming_the_flag() -> None:
    raw = {"destination": {"bucket": "ghost-test"},
           "rclone": {"extra_args": ["--bwlimit", "1M", "--max-delete=-1"]}}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, {})
    assert info.value.exit_code == ExitCode.CONFIG
    assert "rclone.extra_args: --max-delete is refused" in info.value.message


def test_a_stray_value_is_never_quoted_in_the_refusal() -> None:
    refused = find_refused_flag(("AKIAEXAMPLEKEYVALUE",))
    assert refused is not None
    assert "AKIA" not in refused


def test_the_runbook_lists_every_allowed_flag() -> None:
    from pathlib import Path  # noqa: PLC0415

    from ghost_backup.rclone.flags import ALLOWED_FLAGS  # noqa: PLC0415

    runbook = (Path(__file__).resolve().parents[3] / "docs" / "runbook.md").read_text()
    section = runbook.split("## Exit 78: `rclone.extra_args", 1)[1].split("\n## ", 1)[0]
    assert [f for f in ALLOWED_FLAGS if f"`--{f}`" not in section] == []
