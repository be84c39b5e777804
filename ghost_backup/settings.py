"""Settings: one validated, immutable model loaded from TOML plus a few environment overrides.

The model is the single source of truth for what can be configured: every field carries a
description, which feeds ``docs/configuration.md`` (generated, see ``tools/gen_docs.py``)
and the example config. A bad config is reported once, listing every problem.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ghost_backup.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/ghost-backup/config.toml")
DEFAULT_CREDENTIALS_URL = "http://localhost:8080/credentials/r2-backup"

# S3 bucket naming rules (R2 follows them): 3-63 chars, lower-case letters, digits, '-', '.'.
# Patterns are anchored with \A and \Z: `$` also matches before a trailing newline, which would
# let "bucket\n" through and into the rclone config (a line injection).
_BUCKET_RE = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_ACCOUNT_ID_RE = re.compile(r"\A[0-9a-f]{32}\Z")
# C0 controls, DEL and C1 controls: no setting needs one, and a newline in any value that
# reaches the rclone config, a URL or a log line would inject a line there.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# rclone's S3 provider names (`rclone help backend s3`, `--s3-provider`, v1.75). The value is
# written into the rclone config, so only a known name may get there.
RCLONE_S3_PROVIDERS = frozenset({
    "AWS", "Alibaba", "ArvanCloud", "BizflyCloud", "Ceph", "ChinaMobile", "Cloudflare", "Cubbit",
    "DigitalOcean", "Dreamhost", "Exaba", "Fastly", "FileLu", "FlashBlade", "GCS", "HCP",
    "Hetzner", "HuaweiOBS", "IBMCOS", "IDrive", "ImpossibleCloud", "Intercolo", "IONOS",
    "Leviia", "Liara", "Linode", "LyveCloud", "Magalu", "Mega", "Minio", "Netease", "Outscale",
    "OVHcloud", "Petabox", "Qiniu", "Rabata", "RackCorp", "Rclone", "Scaleway", "Scality",
    "SeaweedFS", "Selectel", "Servercore", "SpectraLogic", "Storj", "Synology", "TencentCOS",
    "US3", "Wasabi", "Zadara", "Zata", "ZeroServices", "Other",
})
# rclone flags that would put a key into argv, where `ps` and rclone's own DEBUG log see it.
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)%")
_SECRET_FLAG_RE = re.compile(r"(secret|access[-_]key|session[-_]token|password|--s3-key)", re.I)


def _has_control(value: object) -> bool:
    if isinstance(value, (str, Path)):
        return bool(_CONTROL_RE.search(str(value)))
    if isinstance(value, tuple):
        return any(_has_control(item) for item in value)
    return False


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        if _has_control(value):
            raise ValueError("must not contain control characters (newline, tab, NUL, ...)")
        return value


def is_loopback_host(host: str) -> bool:
    """Return True when ``host`` is ``localhost`` or a literal loopback address.

    Other ``*.localhost`` names are refused: RFC 6761 asks resolvers to answer them with
    loopback, but a resolver that forwards them to DNS may not, and plain http to them would
    carry keys over the network.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(value: str, *, what: str) -> str:
    """Return ``value`` if it is an http(s) URL; plain http only to a loopback host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not carry a user name or password")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{what} may use plain http only for a loopback host; use https")
    return value


class SourceSettings(_Section):
    """What to back up."""

    path: Path = Field(
        Path("/var/mnt/storage"),
        description="Directory to back up (Ghost's data). Synced as a whole.",
    )
    exclude: tuple[str, ...] = Field(
        ("ghost-compose/.env.*",),
        description="rclone filter patterns to leave out (the compose secrets by default).",
    )
    require_mountpoint: bool = Field(
        True,
        description=(
            "Refuse to run unless the source path is a mount point. An unmounted data disk "
            "leaves an empty directory, and syncing it would delete the whole backup."
        ),
    )
    sentinel: str | None = Field(
        None,
        description=(
            "Optional file, relative to the source path, that must exist before a sync runs "
            "(for example `.ghost-backup-sentinel`)."
        ),
    )
    one_file_system: bool = Field(
        True,
        description="Do not descend into other filesystems mounted below the source path.",
    )
    min_fraction_of_last: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "Shrink guard: refuse to sync (66) when the source, as rclone sees it, holds "
            "fewer files or bytes than this fraction of what the last successful run saw "
            "(from the state file; with no state file, of what the backup holds). "
            "`ghost-backup run --allow-shrink` overrides it for one run. 0 disables it."
        ),
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("sentinel")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in Path(value).parts or not value):
            raise ValueError("must be a relative path inside the source directory")
        return value


class DestinationSettings(_Section):
    """Where the backup goes."""

    bucket: str = Field(description="R2 bucket name. Env override: `BACKUP_BUCKET`.")
    account_id: str | None = Field(
        None,
        description=(
            "Cloudflare account id; the endpoint becomes "
            "`https://<account_id>.r2.cloudflarestorage.com`. Env override: `CF_ACCOUNT_ID`."
        ),
    )
    jurisdiction: Literal["default", "eu", "fedramp"] = Field(
        "default",
        description="R2 jurisdiction of the bucket; `eu` uses the `.eu.` endpoint.",
    )
    endpoint: str | None = Field(
        None,
        description="Explicit S3 endpoint URL; overrides the one derived from `account_id`.",
    )
    provider: str = Field(
        "Cloudflare",
        description=(
            "rclone S3 provider name (one of `rclone help backend s3`'s `--s3-provider` "
            "values, for example `Other` for a generic S3 server). Keep `Cloudflare` for R2."
        ),
    )
    path: str = Field(
        "current",
        description=(
            "Prefix inside the bucket holding the mirror of the source (\"now\"). Empty means "
            "the bucket root, which leaves no room for the history: then set "
            "`archive_path = \"\"` too."
        ),
    )
    archive_path: str = Field(
        "history",
        description=(
            "Prefix in the same bucket keeping the history: every object a run overwrites or "
            "deletes is moved (rclone `--backup-dir`) to `<archive_path>/<run id>/`, and each "
            "successful run records what the mirror held in `<archive_path>/<run id>.manifest`, "
            "so `restore --as-of` can rebuild any night within `retention.keep_days`. Must not "
            "overlap `path`. `\"\"` turns the history off (deletions and overwrites are final; "
            "`check` warns)."
        ),
    )
    databases_path: str = Field(
        "databases",
        min_length=1,
        description=(
            "Prefix in the same bucket for database dumps (`<databases_path>/<name>/<stamp>."
            "sql.gz`). When it lies inside `path` (for example with `path` empty, the bucket "
            "root) the file sync excludes it, so the sync never deletes the dumps."
        ),
    )

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET_RE.fullmatch(value):
            raise ValueError("must be 3-63 characters of lower-case letters, digits, '-' or '.'")
        return value

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT_ID_RE.fullmatch(value):
            raise ValueError("must be the 32 hex characters of a Cloudflare account id")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, what="endpoint")

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        if value not in RCLONE_S3_PROVIDERS:
            raise ValueError("must be one of rclone's S3 provider names (`Cloudflare` for R2)")
        return value

    @field_validator("path", "archive_path", "databases_path")
    @classmethod
    def _prefix(cls, value: str) -> str:
        cleaned = value.strip("/")
        if ".." in cleaned.split("/") or "//" in cleaned:
            raise ValueError("must be a plain prefix without '..' or empty segments")
        return cleaned

    @model_validator(mode="after")
    def _endpoint_known(self) -> DestinationSettings:
        if self.endpoint is None and self.account_id is None:
            raise ValueError("destination needs `account_id` (for R2) or an explicit `endpoint`")
        a, p = self.archive_path, self.path
        if a and not p:
            raise ValueError(
                "path = \"\" (the bucket root) leaves no room for the history in archive_path: "
                "set path to a prefix (for example \"current\"; the first run then uploads "
                "everything again) or turn the history off with archive_path = \"\""
            )
        if a and (a == p or a.startswith(p + "/") or p.startswith(a + "/")):
            raise ValueError(
                "archive_path must not overlap path (set both to distinct prefixes, "
                "for example path = \"current\" and archive_path = \"history\")"
            )
        d = self.databases_path
        if a and (d == a or d.startswith(a + "/") or a.startswith(d + "/")):
            raise ValueError("databases_path must not overlap archive_path")
        if p and (p == d or p.startswith(d + "/")):
            raise ValueError("databases_path must not contain path (the mirror of the files)")
        return self

    @property
    def history_on(self) -> bool:
        """Return True when overwritten and deleted objects are kept (``archive_path`` set)."""
        return bool(self.archive_path)

    @property
    def endpoint_url(self) -> str:
        """Return the S3 endpoint URL for this destination."""
        if self.endpoint is not None:
            return self.endpoint
        zone = "" if self.jurisdiction == "default" else f".{self.jurisdiction}"
        return f"https://{self.account_id}{zone}.r2.cloudflarestorage.com"


SourceName = Literal["http-json", "aembit-edge", "cloudflare-temp", "command",
                     "systemd-credential"]
# A systemd credential name: one path component (systemd.exec(5), "Credentials").
_CREDENTIAL_NAME_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,254}\Z")


def _credential_name(value: str | None) -> str | None:
    if value is not None and not _CREDENTIAL_NAME_RE.fullmatch(value):
        raise ValueError("must be a credential name (one file name in $CREDENTIALS_DIRECTORY)")
    return value


def _absolute_path(value: Path | None) -> Path | None:
    if value is not None and not value.is_absolute():
        raise ValueError("must be an absolute path")
    return value


class AembitEdgeSettings(_Section):
    """Source `aembit-edge`: Aembit's Edge API (`/edge/v1/auth`, then `/edge/v1/credentials`)."""

    url: str = Field(
        description=(
            "Edge API base URL, `https://<tenant>.ec.<stack>.aembit.io` (plain http only on "
            "loopback). `/edge/v1/auth` and `/edge/v1/credentials` are appended."
        ),
    )
    client_id: str = Field(
        min_length=1,
        max_length=512,
        description=(
            "Aembit Trust Provider ARN sent as `clientId` "
            "(`aembit:<stack>:<tenant>:identity:<type>:<uuid>`). An identifier, not a secret."
        ),
    )
    identity_kind: Literal["none", "oidc", "github", "gitlab", "terraform"] = Field(
        "oidc",
        description=(
            "How the workload's identity proof is presented: `client.<kind>.identityToken` in "
            "both Edge API requests. `none` sends no token (attestation by other evidence)."
        ),
    )
    identity_token_credential: str | None = Field(
        "aembit-identity-token",
        description=(
            "Name of the file in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) holding "
            "the identity token. Used unless `identity_token_file` is set."
        ),
    )
    identity_token_file: Path | None = Field(
        None,
        description=(
            "Absolute path of a file holding the identity token (must be private to its "
            "owner). Never put the token itself in this config."
        ),
    )
    client_workload_id: str | None = Field(
        None,
        max_length=256,
        description="Optional `CLIENT_WORKLOAD_ID` sent as `client.os.environment` evidence.",
    )
    server_host: str | None = Field(
        None,
        description=(
            "Server workload host whose credentials are requested; default: the host of the "
            "destination's S3 endpoint (`<account_id>.r2.cloudflarestorage.com`)."
        ),
    )
    server_port: int = Field(443, ge=1, le=65535, description="Server workload port.")
    credential_type: Literal["AwsStsFederation", "ApiKey", "OAuthToken", "UsernamePassword"] = (
        Field(
            "AwsStsFederation",
            description=(
                "`credentialType` requested; the answer must carry `awsAccessKeyId`/"
                "`awsSecretAccessKey` whatever the type."
            ),
        )
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, what="credentials.aembit_edge.url")

    @field_validator("identity_token_credential")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _credential_name(value)

    @field_validator("identity_token_file")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        return _absolute_path(value)


class CloudflareTempSettings(_Section):
    """Source `cloudflare-temp`: mint R2 temporary credentials with Cloudflare's API."""

    api_base_url: str = Field(
        "https://api.cloudflare.com/client/v4",
        description=(
            "Cloudflare API base URL. Point it at the local credential proxy (plain http on "
            "loopback) when the proxy injects the parent token on the way out."
        ),
    )
    account_id: str | None = Field(
        None,
        description=(
            "Cloudflare account id for the API call; default: `destination.account_id`."
        ),
    )
    parent_access_key_id: str = Field(
        min_length=1,
        max_length=128,
        description=(
            "Access Key ID of the parent R2 API token (`parentAccessKeyId`); an identifier, "
            "not a secret."
        ),
    )
    token_from: Literal["proxy", "credential"] = Field(
        "proxy",
        description=(
            "Where the parent API token comes from. `proxy`: we send no `Authorization` "
            "header; the credential proxy injects it. `credential`: read from "
            "`$CREDENTIALS_DIRECTORY/<token_credential>`."
        ),
    )
    token_credential: str = Field(
        "cloudflare-api-token",
        description="Credential name of the parent API token when `token_from = \"credential\"`.",
    )
    proxy_url: str | None = Field(
        None,
        description=(
            "Optional explicit HTTP proxy for the API call (for example Aembit's Agent Proxy, "
            "`http://localhost:8000`), which injects the token on the way out."
        ),
    )
    ca_bundle: Path | None = Field(
        None,
        description=(
            "Optional CA bundle for the API's TLS (for example the Aembit Agent Proxy's CA "
            "when it decrypts TLS to inject the token)."
        ),
    )
    ttl_seconds: int = Field(
        3600,
        ge=900,
        le=604800,
        description=(
            "`ttlSeconds` of the minted credentials: the backup window. Must lie between "
            "`credentials.min_validity_seconds` and `credentials.max_validity_seconds`."
        ),
    )

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT_ID_RE.fullmatch(value):
            raise ValueError("must be the 32 hex characters of a Cloudflare account id")
        return value

    @field_validator("api_base_url", "proxy_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, what="cloudflare_temp URL")

    @field_validator("token_credential")
    @classmethod
    def _name(cls, value: str) -> str:
        _credential_name(value)
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        return _absolute_path(value)


class CommandSettings(_Section):
    """Source `command`: run a helper that prints AWS `credential_process` JSON."""

    argv: tuple[str, ...] = Field(
        min_length=1,
        description=(
            "The helper's argv, run without a shell; the first item is an absolute path. "
            "argv is visible to every process on the host: never put a secret in it."
        ),
    )
    timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Kill the helper (and its process group) after this."
    )

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and not value[0].startswith("/"):
            raise ValueError("argv[0] must be an absolute path (no PATH lookup)")
        if any("\0" in arg for arg in value):
            raise ValueError("argv items must not contain NUL")
        return value


class SystemdCredentialSettings(_Section):
    """Source `systemd-credential`: a JSON credential in `$CREDENTIALS_DIRECTORY`."""

    name: str = Field(
        "r2-backup",
        description=(
            "Credential name (`LoadCredential=<name>:...` in the unit); the file "
            "`$CREDENTIALS_DIRECTORY/<name>` holds the proxy's JSON contract or "
            "`credential_process` JSON."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        _credential_name(value)
        return value


# The sections of the sources that have one; `build_source` dispatches on their type, so each
# adapter receives its own section, validated and never None.
SourceSection = (
    AembitEdgeSettings | CloudflareTempSettings | CommandSettings | SystemdCredentialSettings
)


class CredentialsSettings(_Section):
    """Where just-in-time credentials come from and what is acceptable."""

    source: SourceName = Field(
        "http-json",
        description=(
            "Credential source: `http-json` (the local proxy's JSON endpoint, `url`), "
            "`aembit-edge`, `cloudflare-temp`, `command` or `systemd-credential`, each "
            "configured in its own sub-section. See docs/credentials.md."
        ),
    )
    provider_name: str | None = Field(
        None,
        max_length=128,
        description=(
            "Provider name logged in the audit line. Default: the last segment of `url` for "
            "`http-json`, `<source>:<target>` for the others."
        ),
    )
    url: str = Field(
        DEFAULT_CREDENTIALS_URL,
        description=(
            "Credential endpoint (GET) of source `http-json`. The last path segment is the "
            "provider name logged for audit. Env override: `PROXY_URL` (base URL; "
            "`/credentials/<provider>` is appended)."
        ),
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Read timeout for the proxy's answer, in seconds."
    )
    connect_timeout_seconds: float = Field(
        3.0, gt=0, le=60, description="Connect timeout to the proxy, in seconds."
    )
    max_attempts: int = Field(
        4, ge=1, le=10, description="Attempts for failures that can heal (refused, 5xx, 429)."
    )
    max_total_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description=(
            "No new attempt starts after this many seconds; with the default timeouts a fetch "
            "gives up well within a minute."
        ),
    )
    backoff_initial_seconds: float = Field(
        0.5,
        gt=0,
        le=30,
        description=(
            "First wait between attempts; it doubles each time (capped at 8 s) plus random "
            "jitter. A `Retry-After` from the proxy overrides it."
        ),
    )
    max_body_bytes: int = Field(
        65536, ge=1024, le=10_485_760, description="Largest credential answer accepted."
    )
    min_validity_seconds: int = Field(
        300,
        ge=0,
        description="Refuse credentials that expire sooner than this after they arrive.",
    )
    max_validity_seconds: int = Field(
        43200,
        gt=0,
        description=(
            "Refuse credentials valid longer than this: they are not short-lived. "
            "12 hours by default."
        ),
    )
    safety_margin_seconds: int = Field(
        60,
        ge=0,
        description=(
            "rclone is stopped this long before the credentials expire: its own hard "
            "cutoff (`--max-duration`, `--cutoff-mode hard`) and, whatever rclone does, "
            "SIGTERM from the supervisor at `expires_at` minus this margin and SIGKILL at "
            "`expires_at` minus half of it. No rclone outlives its keys."
        ),
    )
    max_windows: int = Field(
        48,
        ge=1,
        le=1000,
        description=(
            "A sync that needs longer than one credential lifetime (a large first upload) "
            "continues with fresh credentials, each window a new audited request; at most "
            "this many windows per run. A window that copies nothing ends the run (75), and "
            "so does the last one; the next run carries on where it stopped."
        ),
    )
    aembit_edge: AembitEdgeSettings | None = Field(
        None, description="Settings of source `aembit-edge` (required when it is chosen)."
    )
    cloudflare_temp: CloudflareTempSettings | None = Field(
        None, description="Settings of source `cloudflare-temp` (required when it is chosen)."
    )
    command: CommandSettings | None = Field(
        None, description="Settings of source `command` (required when it is chosen)."
    )
    systemd_credential: SystemdCredentialSettings = Field(
        default_factory=SystemdCredentialSettings,
        description="Settings of source `systemd-credential`.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _check_url(value, what="credentials.url")
        if not provider_name(value):
            raise ValueError("credentials.url must end in a provider name, e.g. /credentials/r2")
        return value

    @model_validator(mode="after")
    def _window(self) -> CredentialsSettings:
        if self.min_validity_seconds >= self.max_validity_seconds:
            raise ValueError("min_validity_seconds must be below max_validity_seconds")
        if self.safety_margin_seconds >= max(self.min_validity_seconds, 1):
            raise ValueError("safety_margin_seconds must be below min_validity_seconds")
        if self.source != "http-json" and self.selected_section() is None:
            section = self.source.replace("-", "_")
            raise ValueError(
                f"credentials.source = \"{self.source}\" needs a [credentials.{section}] section"
            )
        cf = self.cloudflare_temp
        if cf is not None and not (
            self.min_validity_seconds < cf.ttl_seconds <= self.max_validity_seconds
        ):
            raise ValueError(
                "cloudflare_temp.ttl_seconds must lie above min_validity_seconds and at most "
                "max_validity_seconds"
            )
        return self

    def selected_section(self) -> SourceSection | None:
        """Return the chosen source's own section, typed (None for `http-json`, whose
        settings are this section's `url` and timeouts, or when the section is missing)."""
        match self.source:
            case "aembit-edge":
                return self.aembit_edge
            case "cloudflare-temp":
                return self.cloudflare_temp
            case "command":
                return self.command
            case "systemd-credential":
                return self.systemd_credential
        return None


class RcloneSettings(_Section):
    """How rclone runs."""

    binary: str = Field("rclone", description="rclone executable (name on PATH or full path).")
    extra_args: tuple[str, ...] = Field(
        (),
        description=(
            "Extra rclone tuning flags, appended last: `--bwlimit`, `--tpslimit`, "
            "`--timeout`, `--retries`, `--buffer-size`, `--multi-thread-*`, `--s3-chunk-size` "
            "and the like (`--flag=value` or `--flag value`). Flags that would override a "
            "guard or a safety setting (`--max-delete`, `--backup-dir`, `--delete-*`, filters, "
            "`--max-duration`, `--dry-run`, `--config`...) and any flag not on the allow-list "
            "are refused, with the flag named. Never put a key here: argv is visible to every "
            "process on the host."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "NOTICE", "ERROR"] = Field(
        "INFO",
        description="rclone log level. INFO logs one line per copied or deleted object.",
    )
    stats_interval_seconds: int = Field(
        10, ge=1, le=3600, description="How often rclone reports progress."
    )
    transfers: int = Field(4, ge=1, le=64, description="Parallel file transfers (`--transfers`).")
    checkers: int = Field(8, ge=1, le=128, description="Parallel checkers (`--checkers`).")
    fast_list: bool = Field(
        True,
        description="Use `--fast-list`: fewer listing calls (R2 bills them as Class A).",
    )
    max_delete: int | str = Field(
        "10%",
        description=(
            "Deletion guard: the most objects one run may delete from the backup, as a count "
            "(`500`) or a percentage of what the backup holds (`\"10%\"`, rounded up). "
            "Before syncing, the source listing is compared with one listing of the backup "
            "and a run that would delete more is refused (79) before anything is touched; "
            "rclone gets a looser `--max-delete` as a backstop. `ghost-backup run "
            "--allow-shrink` lifts it for one run. 0 disables the guard."
        ),
    )
    stall_timeout_seconds: int = Field(
        900,
        ge=1,
        description=(
            "Kill rclone if its progress figures do not change for this long. Must be more "
            "than twice `stats_interval_seconds` (progress arrives only that often)."
        ),
    )
    term_timeout_seconds: int = Field(
        20, ge=1, le=600, description="Wait this long for rclone after SIGTERM, then SIGKILL."
    )

    @model_validator(mode="after")
    def _stall_after_stats(self) -> RcloneSettings:
        if self.stall_timeout_seconds <= 2 * self.stats_interval_seconds:
            raise ValueError(
                "stall_timeout_seconds must be more than twice stats_interval_seconds"
            )
        return self

    @field_validator("max_delete")
    @classmethod
    def _count_or_percentage(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must be a count (0 or more) or a percentage such as \"10%\"")
            return value
        if value.strip().isdigit():
            return int(value.strip())
        match = _PERCENT_RE.fullmatch(value.strip())
        if match is None or not 0 < float(match[1]) <= 100:
            raise ValueError("must be a count (0 or more) or a percentage such as \"10%\" "
                             "(above 0, at most 100)")
        return value.strip()

    @field_validator("extra_args")
    @classmethod
    def _no_secret_flags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arg in value:
            if _SECRET_FLAG_RE.search(arg):
                raise ValueError(
                    "extra_args must not carry credentials (argv is public); "
                    "keys come from the credential proxy"
                )
        # Imported here: ghost_backup.rclone imports this module.
        from ghost_backup.rclone.flags import find_refused_flag  # noqa: PLC0415

        refused = find_refused_flag(value)
        if refused is not None:
            raise ValueError(refused)
        return value


class RetentionSettings(_Section):
    """How long the history (`destination.archive_path`) is kept."""

    keep_days: int = Field(
        30,
        ge=1,
        le=36500,
        description=(
            "Keep history for this many days: at the end of each *successful* run, archive "
            "folders and manifests of runs older than this are deleted (a failed or cut-off "
            "run prunes nothing). `restore --as-of` refuses points older than this. The mirror "
            "is never touched."
        ),
    )
    max_prune_folders: int = Field(
        60,
        ge=1,
        le=10000,
        description=(
            "At most this many archive folders (and their manifests) are pruned per run, "
            "oldest first; the rest wait for the next night. Bounds a run after a long pause."
        ),
    )


class RuntimeSettings(_Section):
    """Where ephemeral files live."""

    dir: Path = Field(
        Path("/run/ghost"),
        description=(
            "The unit's runtime directory on tmpfs (systemd `RuntimeDirectory=ghost`, used "
            "when `$RUNTIME_DIRECTORY` is set). Holds the per-run rclone config; must be a "
            "tmpfs or ramfs, owned by us, mode 0700."
        ),
    )
    manual_dir: Path = Field(
        Path("/run/ghost-backup-manual"),
        description=(
            "Runtime directory of commands run by hand (`check`, `restore`, `verify`, `run` "
            "outside the unit): same rules as `dir`, never shared with the unit, whose "
            "directory systemd deletes when it stops."
        ),
    )
    lock_path: Path = Field(
        Path("/run/ghost-backup.lock"),
        description=(
            "The one lock every command takes (flock), outside both runtime directories. "
            "Root-owned 0644, created at boot by the shipped tmpfiles.d line "
            "(`systemd-tmpfiles --create ghost-backup.conf`) or by a root command."
        ),
    )

    @field_validator("dir", "manual_dir", "lock_path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class StateSettings(_Section):
    """Where the record of the last run is kept."""

    dir: Path = Field(
        Path("/var/lib/ghost-backup"),
        description="State directory (systemd `StateDirectory=ghost-backup`); holds last-run.json.",
    )


class MetricsSettings(_Section):
    """Prometheus node_exporter textfile output."""

    textfile_path: Path | None = Field(
        Path("/var/lib/ghost-backup-metrics/ghost_backup.prom"),
        description=(
            "Where the unit's root hook (`ExecStopPost=-+/usr/bin/ghost-backup post-stop`) "
            "publishes the "
            "textfile after each run, mode 0644, replaced atomically (its directory is created "
            "0755 if missing). Point node_exporter at its directory: "
            "`--collector.textfile.directory=/var/lib/ghost-backup-metrics` (the flag can be "
            "repeated). The service itself writes `<state.dir>/metrics.prom`, which only root "
            "can reach under `DynamicUser=`. `\"\"` turns publishing off (no node_exporter "
            "on the host); `<state.dir>/metrics.prom` is still written."
        ),
    )

    @field_validator("textfile_path", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("textfile_path")
    @classmethod
    def _prom(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_absolute() or value.suffix != ".prom":
            raise ValueError("must be an absolute path ending in .prom (node_exporter reads "
                             "*.prom only)")
        return value


class AlertSettings(_Section):
    """Where failures are reported, besides the journal."""

    healthcheck_url: str | None = Field(
        None,
        description=(
            "healthchecks ping URL, used as an opaque base (`https://hc-ping.com/<uuid>`, "
            "`https://hc.example.com/ping/<uuid>` or `.../ping/<ping key>/<slug>`): "
            "`/start` when a run starts, `/<exit status>` when it ends (0 is success; the "
            "dashboard shows the code) with the last log lines (at most 10 kB) as the body. "
            "`rid` is a UUID derived from the run id; the run id is in the body."
        ),
    )
    webhook_url: str | None = Field(
        None, description="URL that receives a JSON POST describing each failed run."
    )
    notify_success: bool = Field(False, description="Also POST the webhook on success.")
    ca_bundle: Path | None = Field(
        None,
        description=(
            "PEM file of the CAs that alert URLs are verified against, instead of the system "
            "store (`/etc/ssl/certs/ca-certificates.crt` on Flatcar, rebuilt by "
            "`update-ca-certificates`; certifi's bundle when there is none). Alerts honour "
            "`HTTPS_PROXY`/`NO_PROXY` from the unit's environment; the credential fetch "
            "never does."
        ),
    )
    timeout_seconds: float = Field(10.0, gt=0, le=60, description="Timeout per alert request.")
    attempts: int = Field(3, ge=1, le=5, description="Attempts per alert channel.")

    @field_validator("ca_bundle")
    @classmethod
    def _absolute_ca(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("healthcheck_url", "webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, what="alert URL")


# Names that end up in object keys, shell text or SQL identifiers: kept plain on purpose.
_DB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_SCHEMA_RE = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
_DB_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,80}$")
_ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
_CONTAINER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DatabaseSettings(_Section):
    """A database dumped consistently before each file sync (one `[[database]]` table each).

    `mysql` (MySQL or MariaDB) is dumped with `mysqldump --single-transaction` inside its
    container (`container`) or against a socket or host; `sqlite` is copied online with
    SQLite's backup API. See docs/restore.md for the restore walk-through.
    """

    name: str = Field(
        description=(
            "Short name of this database (`ghost`): the dump objects are "
            "`<destination.databases_path>/<name>/<run id>.sql.gz`, and `restore-db` takes it."
        ),
    )
    kind: Literal["mysql", "sqlite"] = Field(
        description="`mysql` (MySQL or MariaDB, via mysqldump) or `sqlite` (backup API).",
    )
    path: Path | None = Field(
        None, description="`sqlite`: the database file (required for `sqlite`).",
    )
    container: str | None = Field(
        None,
        description=(
            "`mysql`: the database container's name; the dump runs inside it with "
            "`docker|podman exec` and reads the password from the container's own environment."
        ),
    )
    engine: Literal["docker", "podman"] = Field(
        "docker", description="`mysql` with `container`: the container engine."
    )
    engine_binary: str | None = Field(
        None, description="Engine executable (default: `engine` looked up on PATH)."
    )
    socket: Path | None = Field(
        None, description="`mysql` without a container: the server's Unix socket."
    )
    host: str | None = Field(
        None, description="`mysql` without a container: the server's host name (TCP)."
    )
    port: int = Field(3306, ge=1, le=65535, description="TCP port with `host`.")
    user: str = Field("root", description="Database user the dump connects as.")
    password_env: str | None = Field(
        None,
        description=(
            "With `container`: the name of the container's environment variable holding the "
            "password (its `<name>_FILE` variant is read first, for Docker secrets). Default: "
            "`MYSQL_ROOT_PASSWORD` for user `root`, else `MYSQL_PASSWORD`. Only the name "
            "appears in argv, never the value."
        ),
    )
    password_credential: str | None = Field(
        None,
        description=(
            "With `socket`/`host`: the systemd credential (`LoadCredential=<name>:<file>`) "
            "holding the password, passed to the dump in `MYSQL_PWD` only. Unset: no password "
            "(for example root over the socket with unix_socket authentication)."
        ),
    )
    databases: tuple[str, ...] = Field(
        (),
        description=(
            "`mysql`: the schemas to dump. Empty: every user schema (never the `mysql`, "
            "`sys`, `information_schema` and `performance_schema` system schemas)."
        ),
    )
    datadir: Path | None = Field(
        None,
        description=(
            "The live data directory (for `mysql`, the server's datadir on the host, for "
            "example `/var/mnt/storage/mysql`). Kept out of the file sync when "
            "`exclude_datadir` is on: a live datadir copied file by file is a torn copy."
        ),
    )
    exclude_datadir: bool = Field(
        True,
        description=(
            "Exclude `datadir` (and for `sqlite`, `path` with its `-wal`, `-shm` and "
            "`-journal` files) from the file sync when it lies inside the source."
        ),
    )
    dump_binary: str = Field(
        "mariadb-dump",
        description="`mysql` with `socket`/`host`: the dump client on the host (`mysqldump`).",
    )
    client_binary: str = Field(
        "mariadb",
        description="`mysql` with `socket`/`host`: the SQL client (`check`, `restore-db`).",
    )
    compression_level: int = Field(
        1, ge=1, le=9,
        description=(
            "gzip level of the dump stream. 1 is about 8x faster than 6 for a little more "
            "size (docs/performance.md)."
        ),
    )
    timeout_seconds: int = Field(
        3600, ge=10,
        description=(
            "Give up on the dump (nothing is left at the destination) after this long; it is "
            "also bounded by the credentials' lifetime."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DB_NAME_RE.match(value):
            raise ValueError("must be 1-63 lower-case letters, digits, '_', '.' or '-'")
        return value

    @field_validator("databases")
    @classmethod
    def _schemas(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for schema in value:
            if not _SCHEMA_RE.match(schema):
                raise ValueError("schema names must be letters, digits, '_', '$' or '-'")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _DB_USER_RE.match(value):
            raise ValueError("must be letters, digits, '_', '.', '@' or '-'")
        return value

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        # It goes into the shell text run inside the container: a plain variable name only.
        if value is not None and not _ENV_NAME_RE.match(value):
            raise ValueError("must be an environment variable name (A-Z, 0-9, '_')")
        return value

    @field_validator("password_credential")
    @classmethod
    def _cred(cls, value: str | None) -> str | None:
        return _credential_name(value)

    @field_validator("container")
    @classmethod
    def _container(cls, value: str | None) -> str | None:
        if value is not None and not _CONTAINER_RE.match(value):
            raise ValueError("must be a container name (letters, digits, '_', '.', '-')")
        return value

    @field_validator("path", "socket", "datadir")
    @classmethod
    def _abs(cls, value: Path | None) -> Path | None:
        return _absolute_path(value)

    @model_validator(mode="after")
    def _kind_fields(self) -> DatabaseSettings:
        where = [f for f in ("container", "socket", "host") if getattr(self, f) is not None]
        if self.kind == "sqlite":
            if self.path is None:
                raise ValueError(f"database {self.name}: kind \"sqlite\" needs `path`")
            if where or self.databases:
                raise ValueError(f"database {self.name}: kind \"sqlite\" takes `path` only, "
                                 f"not {', '.join(where) or 'databases'}")
        else:
            if len(where) != 1:
                raise ValueError(f"database {self.name}: kind \"mysql\" needs exactly one of "
                                 "`container`, `socket` or `host`")
            if self.path is not None:
                raise ValueError(f"database {self.name}: `path` is for kind \"sqlite\"")
            if self.container is not None and self.password_credential is not None:
                raise ValueError(f"database {self.name}: with `container` the password comes "
                                 "from the container (`password_env`), not a credential")
            if self.container is None and self.password_env is not None:
                raise ValueError(f"database {self.name}: `password_env` is for `container`; "
                                 "use `password_credential` with a socket or host")
        return self

    @property
    def password_variable(self) -> str:
        """Return the container variable holding the password."""
        if self.password_env is not None:
            return self.password_env
        return "MYSQL_ROOT_PASSWORD" if self.user == "root" else "MYSQL_PASSWORD"


class Settings(_Section):
    """The whole configuration."""

    source: SourceSettings = Field(default_factory=SourceSettings)
    destination: DestinationSettings
    credentials: CredentialsSettings = Field(default_factory=CredentialsSettings)
    rclone: RcloneSettings = Field(default_factory=RcloneSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    databases: tuple[DatabaseSettings, ...] = Field(
        (),
        alias="database",
        description=(
            "Databases dumped before each file sync, one `[[database]]` table each "
            "(none by default)."
        ),
    )

    @model_validator(mode="after")
    def _unique_databases(self) -> Settings:
        names = [db.name for db in self.databases]
        if len(names) != len(set(names)):
            raise ValueError("every [[database]] needs its own `name`")
        return self

    @model_validator(mode="after")
    def _cloudflare_account(self) -> Settings:
        cf = self.credentials.cloudflare_temp
        if (self.credentials.source == "cloudflare-temp" and cf is not None
                and cf.account_id is None and self.destination.account_id is None):
            raise ValueError(
                "credentials.source = \"cloudflare-temp\" needs an account id: set "
                "destination.account_id or credentials.cloudflare_temp.account_id"
            )
        return self


def provider_name(url: str) -> str:
    """Given a credential URL, return its last path segment (the provider name for audit)."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def resolve_config_path(cli_path: Path | None, env: Mapping[str, str]) -> Path:
    """Return the config file to read: ``--config``, then ``$GHOST_BACKUP_CONFIG``, then default."""
    if cli_path is not None:
        return cli_path
    if env.get("GHOST_BACKUP_CONFIG"):
        return Path(env["GHOST_BACKUP_CONFIG"])
    return DEFAULT_CONFIG_PATH


def apply_env_overrides(raw: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Given raw config data, return a copy with the documented environment overrides applied.

    ``BACKUP_BUCKET`` and ``CF_ACCOUNT_ID`` replace the destination's bucket and account;
    ``PROXY_URL`` is a base URL to which ``/credentials/<provider>`` is appended, the provider
    being the last segment of the configured (or default) credential URL.
    """
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    dest = data.setdefault("destination", {})
    creds = data.setdefault("credentials", {})
    if not isinstance(dest, dict) or not isinstance(creds, dict):
        return data
    if env.get("BACKUP_BUCKET"):
        dest["bucket"] = env["BACKUP_BUCKET"]
    if env.get("CF_ACCOUNT_ID"):
        dest["account_id"] = env["CF_ACCOUNT_ID"]
    if env.get("PROXY_URL"):
        configured = creds.get("url", DEFAULT_CREDENTIALS_URL)
        name = provider_name(configured) if isinstance(configured, str) else "r2-backup"
        creds["url"] = f"{env['PROXY_URL'].rstrip('/')}/credentials/{name or 'r2-backup'}"
    return data


def format_validation_problems(err: ValidationError) -> tuple[str, ...]:
    """Given a pydantic error, return one readable line per problem (no input values)."""
    problems = []
    for item in err.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return tuple(problems)


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    """Given raw TOML data and the environment, return validated settings.

    Raise ConfigError listing every problem if anything is invalid.
    """
    try:
        return Settings.model_validate(apply_env_overrides(raw, env))
    except ValidationError as err:
        problems = format_validation_problems(err)
        raise ConfigError(
            f"invalid configuration ({len(problems)} problem(s)): " + "; ".join(problems),
            problems,
        ) from None


def load_settings(cli_path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration. Raise ConfigError on any problem."""
    environ = os.environ if env is None else env
    path = resolve_config_path(cli_path, environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found (see docs/configuration.md)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err.__class__.__name__}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    return parse_settings(raw, environ)
