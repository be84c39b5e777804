"""Hostile review, items 6 and 10: config values cannot inject rclone config lines, and plain
http goes only to a literal loopback address or `localhost`."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from ghost_backup.errors import ConfigError
from ghost_backup.rclone import render_config
from ghost_backup.settings import RCLONE_S3_PROVIDERS, parse_settings
from tests.helpers import BIN

ACCOUNT = "0123456789abcdef0123456789abcdef"


def _raw(**destination: Any) -> dict[str, Any]:
    return {"destination": {"bucket": "ghost-backups", "account_id": ACCOUNT, **destination}}


@pytest.mark.parametrize(
    "destination",
    [
        {"provider": "Cloudflare\ntype = local"},  # turned the remote into local disk
        {"provider": "Cloudflare\r"},
        {"provider": "cloudflare"},  # not one of rclone's names
        {"provider": "Made-Up"},
        {"endpoint": "https://s3.example.com\ntype = local"},  # urlsplit drops the newline
        {"endpoint": "https://s3.example.com/\t"},
        {"bucket": "ghost-backups\n"},  # `$` matched before the trailing newline
        {"account_id": ACCOUNT + "\n"},
        {"path": "nightly\nx"},
    ],
)
def test_config_values_that_would_inject_rclone_config_lines_are_refused(
    destination: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(_raw(**destination), {})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "env",
    [{"BACKUP_BUCKET": "ghost-backups\n"}, {"CF_ACCOUNT_ID": ACCOUNT + "\n"},
     {"PROXY_URL": "http://127.0.0.1:9000\n"}],
)
def test_environment_overrides_with_a_trailing_newline_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        parse_settings(_raw(), env)


@pytest.mark.parametrize(
    "raw",
    [
        {"source": {"exclude": ["a\x00b"]}},
        {"source": {"path": "/var/mnt/storage\n"}},
        {"rclone": {"extra_args": ["--bwlimit", "10M\x1b[2J"]}},
        {"credentials": {"provider_name": "r2\u2028fake audit line"}},
        {"alerts": {"webhook_url": "https://hooks.example.com/x\x85"}},
    ],
)
def test_control_characters_are_refused_in_every_section(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="control characters"):
        parse_settings({**_raw(), **raw}, {})


def test_render_config_refuses_a_line_break_that_slipped_past_validation() -> None:
    settings = parse_settings(_raw(), {})
    bad = settings.destination.model_copy(update={"provider": "Cloudflare\ntype = local"})
    with pytest.raises(ConfigError):
        render_config(settings.model_copy(update={"destination": bad}))


def test_every_provider_we_accept_is_one_rclone_knows() -> None:
    out = subprocess.run([str(BIN / "rclone"), "help", "backend", "s3"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    section = out.split("--s3-provider", 1)[1].split("#### --s3-", 1)[0]
    known = set(re.findall(r'^\s+- "([^"]+)"', section, re.M))
    assert {"Cloudflare", "Other", "Minio"} <= RCLONE_S3_PROVIDERS <= known


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("proxy.localhost", False),  # a resolver may send it to DNS
        ("localhost.example.com", False),
        ("localhost.", False),
        ("0.0.0.0", False),  # noqa: S104 - a URL host under test, nothing binds
    ],
)
def test_plain_http_only_to_literal_loopback_or_localhost(host: str, ok: bool) -> None:
    raw = {**_raw(), "credentials": {"url": f"http://{host}:8080/credentials/r2"}}
    if ok:
        assert parse_settings(raw, {}).credentials.url.startswith(f"http://{host}")
    else:
        with pytest.raises(ConfigError, match="loopback"):
            parse_settings(raw, {})
