"""Settings: validation lists every problem, env overrides, URL safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghost_backup.errors import ConfigError, ExitCode
from ghost_backup.settings import load_settings, parse_settings, provider_name

ACCOUNT = "0123456789abcdef0123456789abcdef"
MINIMAL = {"destination": {"bucket": "ghost-backups", "account_id": ACCOUNT}}


def test_minimal_config_gets_documented_defaults() -> None:
    s = parse_settings(MINIMAL, {})
    assert s.source.path == Path("/var/mnt/storage")
    assert s.source.exclude == ("ghost-compose/.env.*",)
    assert s.credentials.url == "http://localhost:8080/credentials/r2-backup"
    assert s.runtime.dir == Path("/run/ghost")
    assert s.destination.endpoint_url == f"https://{ACCOUNT}.r2.cloudflarestorage.com"


def test_eu_jurisdiction_uses_eu_endpoint() -> None:
    s = parse_settings({"destination": {**MINIMAL["destination"], "jurisdiction": "eu"}}, {})
    assert s.destination.endpoint_url == f"https://{ACCOUNT}.eu.r2.cloudflarestorage.com"


def test_ticket_environment_names_override_the_file() -> None:
    env = {"BACKUP_BUCKET": "other-bucket", "CF_ACCOUNT_ID": "f" * 32,
           "PROXY_URL": "http://127.0.0.1:9000/"}
    s = parse_settings(MINIMAL, env)
    assert s.destination.bucket == "other-bucket"
    assert s.destination.account_id == "f" * 32
    assert s.credentials.url == "http://127.0.0.1:9000/credentials/r2-backup"


def test_bad_config_lists_every_problem_without_values() -> None:
    raw = {
        "destination": {"bucket": "Bad_Bucket!", "endpoint": "ftp://x"},
        "credentials": {"url": "http://proxy.example.com/credentials/r2", "timeout_seconds": -1},
        "rclone": {"extra_args": ["--s3-secret-access-key=hunter2hunter2"]},
        "runtime": {"dir": "relative/dir"},
        "nonsense": {},
    }
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, {})
    problems = info.value.problems
    assert info.value.exit_code == ExitCode.CONFIG
    joined = "\n".join(problems)
    for where in ("destination.bucket", "destination.endpoint", "credentials.url",
                  "credentials.timeout_seconds", "rclone.extra_args", "runtime.dir", "nonsense"):
        assert where in joined
    assert "hunter2" not in joined
    assert len(problems) >= 7


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://localhost:8080/credentials/r2-backup", True),
        ("http://127.0.0.1:8080/credentials/r2-backup", True),
        ("http://[::1]:8080/credentials/r2-backup", True),
        ("https://proxy.internal/credentials/r2", True),
        ("http://proxy.internal/credentials/r2", False),  # keys in clear over a network
        ("http://user:pw@localhost/credentials/r2", False),
        ("file:///etc/passwd", False),
        ("http://localhost:8080/", False),  # no provider name
    ],
)
def test_credentials_url_rules(url: str, ok: bool) -> None:
    raw = {**MINIMAL, "credentials": {"url": url}}
    if ok:
        assert parse_settings(raw, {}).credentials.url == url
    else:
        with pytest.raises(ConfigError):
            parse_settings(raw, {})


def test_destination_needs_account_or_endpoint() -> None:
    with pytest.raises(ConfigError, match="account_id"):
        parse_settings({"destination": {"bucket": "abc"}}, {})


def test_archive_path_must_not_overlap_synced_path() -> None:
    dest = {**MINIMAL["destination"], "path": "current", "archive_path": "current/old"}
    with pytest.raises(ConfigError, match="overlap"):
        parse_settings({"destination": dest}, {})
    dest["archive_path"] = "archive"
    assert parse_settings({"destination": dest}, {}).destination.archive_path == "archive"


def test_validity_window_must_be_consistent() -> None:
    raw = {**MINIMAL, "credentials": {"min_validity_seconds": 600, "max_validity_seconds": 300}}
    with pytest.raises(ConfigError, match="min_validity_seconds"):
        parse_settings(raw, {})


def test_provider_name_is_last_path_segment() -> None:
    assert provider_name("http://localhost:8080/credentials/r2-backup") == "r2-backup"
    assert provider_name("http://localhost:8080/credentials/r2-backup/") == "r2-backup"


def test_load_settings_reports_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", {})
    broken = tmp_path / "broken.toml"
    broken.write_text("[destination\nbucket = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, {})


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[destination]\nbucket = "abc"\naccount_id = "{ACCOUNT}"\n')
    assert load_settings(None, {"GHOST_BACKUP_CONFIG": str(path)}).destination.bucket == "abc"
