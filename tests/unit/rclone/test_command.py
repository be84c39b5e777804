"""The rclone command: config text, argv and child environment carry no key; exit table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from ghost_backup.credentials.model import Credentials
from ghost_backup.errors import ExitCode
from ghost_backup.rclone import (
    build_child_env,
    build_source_filter_flags,
    build_source_list_argv,
    build_sync_argv,
    classify_exit,
    parse_version_cache,
    render_config,
    render_version_cache,
)
from ghost_backup.settings import parse_settings

AK, SK, TOK = "AKARGVCANARY123", "sk-argv-canary-secret", "tok-argv-canary-session"
SETTINGS = parse_settings(
    {"destination": {"bucket": "ghost-backups", "account_id": "a" * 32, "path": "nightly"},
     "rclone": {"extra_args": ["--bwlimit", "10M"]}},
    {},
)
CREDS = Credentials(access_key_id=SecretStr(AK), secret_access_key=SecretStr(SK),
                    session_token=SecretStr(TOK), expires_at=datetime(2030, 1, 1, tzinfo=UTC))


def _argv(**kwargs: object) -> tuple[str, ...]:
    return build_sync_argv(SETTINGS, config_path=Path("/run/ghost/run-x/rclone.conf"),
                           work_dir=Path("/run/ghost/run-x"),
                           max_duration_seconds=kwargs.get("max_duration", 3000),  # type: ignore[arg-type]
                           archive_stamp="20261126T020000Z-abc",
                           max_delete=kwargs.get("max_delete", 1000))  # type: ignore[arg-type]


def test_config_holds_only_non_secret_settings() -> None:
    text = render_config(SETTINGS)
    assert "[r2]" in text
    assert "type = s3" in text
    assert "provider = Cloudflare" in text
    assert "region = auto" in text
    assert f"endpoint = https://{'a' * 32}.r2.cloudflarestorage.com" in text
    assert "no_check_bucket = true" in text
    assert "key" not in text.replace("no_check_bucket", "")


def test_sync_argv_shape_and_flags() -> None:
    argv = _argv()
    assert argv[:4] == ("rclone", "sync", "src:", "r2:ghost-backups/nightly")
    joined = " ".join(argv)
    for flag in ("--config /run/ghost/run-x/rclone.conf", "--use-json-log", "--stats 10s",
                 "--stats-log-level NOTICE", "--exclude ghost-compose/.env.*", "--fast-list",
                 "--max-delete 1000", "--max-duration 3000s", "--cutoff-mode hard",
                 "--one-file-system", "--cache-dir /var/lib/ghost-backup/rclone-cache",
                 "--temp-dir /run/ghost/run-x", "--checksum", "--s3-no-head",
                 "--s3-no-head-object"):
        assert flag in joined
    assert argv[-2:] == ("--bwlimit", "10M")  # extra args come last


def test_sync_reads_the_source_through_the_hasher_with_the_guards_filters() -> None:
    text = render_config(SETTINGS)
    section = text[text.index("[src]"):].splitlines()
    assert section == ["[src]", "type = hasher", "remote = /var/mnt/storage", "hashes = md5",
                       "max_age = 720h"]
    argv = _argv()
    listing = build_source_list_argv(SETTINGS, config_path=Path("/c"), work_dir=Path("/w"))
    filters = build_source_filter_flags(SETTINGS)
    assert filters == ["--exclude", "ghost-compose/.env.*", "--one-file-system"]
    assert " ".join(filters) in " ".join(argv)
    assert " ".join(filters) in " ".join(listing)


def test_sync_cache_dir_can_fall_back_to_tmpfs() -> None:
    argv = build_sync_argv(SETTINGS, config_path=Path("/c"), work_dir=Path("/run/ghost/run-x"),
                           max_duration_seconds=None, cache_dir=Path("/run/ghost/run-x/cache"))
    assert argv[argv.index("--cache-dir") + 1] == "/run/ghost/run-x/cache"
    assert argv.count("--cache-dir") == 1


KEY = (2049, 1234, 85659810, 1_700_000_000_000_000_000, 1_700_000_000_100_000_000)


@pytest.mark.parametrize(("text", "key", "expected"), [
    (render_version_cache(KEY, "v1.75.2", "2026-11-28T02:00:00+00:00"), KEY, "v1.75.2"),
    (render_version_cache(KEY, "v1.75.2", "t"), (*KEY[:4], KEY[4] + 1), None),  # ctime moved
    (render_version_cache(KEY, "v1.75.2", "t"), (KEY[0], KEY[1] + 1, *KEY[2:]), None),
    (render_version_cache(KEY, "garbage", "t"), KEY, None),
    ("{not json", KEY, None),
    ("[]", KEY, None),
    ('{"key": [1, 2], "version": "v1.75.2"}', KEY, None),
])
def test_version_cache_hits_only_for_the_same_binary(
    text: str, key: tuple[int, ...], expected: str | None
) -> None:
    assert parse_version_cache(text, key) == expected


def test_no_key_in_argv() -> None:
    joined = " ".join(_argv())
    for secret in (AK, SK, TOK):
        assert secret not in joined


def test_max_duration_omitted_when_unbounded() -> None:
    assert "--max-duration" not in _argv(max_duration=None)


def test_max_delete_backstop_omitted_when_the_guard_is_off() -> None:
    assert "--max-delete" not in _argv(max_delete=None)


def test_child_env_from_allowlist_with_keys_only_for_the_remote() -> None:
    inherited = {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "HOME": "/root",
        "AWS_ACCESS_KEY_ID": "inherited", "AWS_SESSION_TOKEN": "inherited",
        "RCLONE_CONFIG_R2_ENDPOINT": "https://evil", "RCLONE_CONFIG": "/etc/rclone.conf",
        "NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1",
        "JOURNAL_STREAM": "1:2", "CREDENTIALS_DIRECTORY": "/run/credentials/x",
        "GHOST_BACKUP_CONFIG": "/etc/ghost-backup/config.toml", "PROXY_URL": "http://x",
    }
    env = build_child_env(inherited, CREDS)
    assert env == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "HOME": "/root",
        "RCLONE_CONFIG_R2_ACCESS_KEY_ID": AK,
        "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY": SK,
        "RCLONE_CONFIG_R2_SESSION_TOKEN": TOK,
    }


def test_child_env_never_carries_an_empty_session_token() -> None:
    creds = CREDS.model_copy(update={"session_token": None})
    env = build_child_env({}, creds)
    assert "RCLONE_CONFIG_R2_SESSION_TOKEN" not in env
    assert env["PATH"]


@pytest.mark.parametrize(
    ("rc", "terminated", "max_delete", "code"),
    [
        (0, False, False, ExitCode.OK),
        (1, False, False, ExitCode.RCLONE_FAILED),
        (2, False, False, ExitCode.RCLONE_FAILED),
        (3, False, False, ExitCode.SOURCE_REFUSED),
        (4, False, False, ExitCode.RCLONE_FAILED),
        (5, False, False, ExitCode.RCLONE_FAILED),
        (6, False, False, ExitCode.RCLONE_FAILED),
        (7, False, False, ExitCode.RCLONE_FAILED),
        (7, False, True, ExitCode.DELETE_GUARD),
        (8, False, False, ExitCode.RCLONE_FAILED),
        (10, False, False, ExitCode.TEMPORARY),
        (-9, False, False, ExitCode.RCLONE_FAILED),
        (143, True, False, ExitCode.TERMINATED),
        (0, True, False, ExitCode.TERMINATED),
        (99, False, False, ExitCode.RCLONE_FAILED),
    ],
)
def test_exit_code_table(rc: int, terminated: bool, max_delete: bool, code: ExitCode) -> None:
    error = classify_exit(rc, terminated=terminated, max_delete_hit=max_delete)
    if code == ExitCode.OK:
        assert error is None
        return
    assert error is not None
    assert error.exit_code == code
    assert error.message


def test_dry_run_sync_argv_adds_dry_run_and_drops_max_delete() -> None:
    argv = build_sync_argv(SETTINGS, config_path=Path("/run/ghost/run-x/rclone.conf"),
                           work_dir=Path("/run/ghost/run-x"), max_duration_seconds=3000,
                           archive_stamp="s", dry_run=True)
    assert "--dry-run" in argv
    assert "--max-delete" not in argv  # every deletion the real run would attempt is shown
    assert argv[:4] == _argv()[:4]


def test_the_sync_reports_the_mirror_after_it_in_the_manifests_format() -> None:
    assert "--dest-after" not in _argv()
    argv = build_sync_argv(SETTINGS, config_path=Path("/c"), work_dir=Path("/w"),
                           max_duration_seconds=60, dest_after=Path("/w/after"))
    at = argv.index("--dest-after")
    assert argv[at:at + 6] == ("--dest-after", "/w/after", "--format", "psh",
                               "--separator", "\t")
