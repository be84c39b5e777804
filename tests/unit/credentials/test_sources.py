"""Credential sources, pure parts: each answer shape good and bad, the request bodies, the
settings each source needs, credential-file modes, helper stderr redaction, audit names."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ghost_backup.credentials.json_api import ApiAnswer
from ghost_backup.credentials.model import parse_credentials
from ghost_backup.credentials.sources import build_source
from ghost_backup.credentials.sources.aembit_edge import (
    build_client,
    build_credentials_request,
    parse_auth_token,
    parse_edge_credentials,
)
from ghost_backup.credentials.sources.cloudflare_temp import build_temp_request, parse_temp_answer
from ghost_backup.credentials.sources.command import (
    build_helper_env,
    format_stderr,
    helper_name,
    mask_key_shaped,
)
from ghost_backup.errors import (
    ConfigError,
    CredentialsDenied,
    CredentialsInvalid,
    CredentialsUnavailable,
    GhostBackupError,
)
from ghost_backup.host.process import Finished
from ghost_backup.host.secret_files import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
    AclEntry,
    classify_file_access,
    credential_path,
    parse_posix_acl,
    parse_secret_text,
    read_private_file,
)
from ghost_backup.logs import Redactor
from ghost_backup.settings import CredentialsSettings, Settings, parse_settings

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
SOON = "2026-11-26T02:30:00Z"
ACCOUNT = "0123456789abcdef0123456789abcdef"
DEST = {"bucket": "ghost-backups", "account_id": ACCOUNT}
EDGE = {"url": "https://t.ec.useast2.aembit.io", "client_id": "aembit:useast2:t:identity:x:1"}
CF = {"parent_access_key_id": "parentid"}
CREDS = CredentialsSettings()


def _settings(creds: dict[str, Any], dest: dict[str, Any] | None = None) -> Settings:
    return parse_settings({"destination": dest or DEST, "credentials": creds}, {})


def _answer(status: int, obj: object) -> ApiAnswer:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return ApiAnswer(status, "application/json", body)


# --- http-json: the credential_process shape -------------------------------------------------

PROCESS = {"Version": 1, "AccessKeyId": "AKIDEXAMPLE0001", "SecretAccessKey": "s3cr3t-value",
           "SessionToken": "tok-value", "Expiration": SOON}


@pytest.mark.parametrize(("change", "phrase"), [
    ({"Version": 2}, "Version other than 1"),
    ({"Expiration": None}, "no Expiration: long-lived"),
    ({"Expiration": "2026-11-26T02:30:00"}, "no timezone"),
    ({"SecretAccessKey": ""}, "SecretAccessKey is empty"),
    ({"AccessKeyId": None}, "AccessKeyId is missing"),
    ({"Expiration": "2026-11-26T02:01:00Z"}, "below credentials.min_validity_seconds"),
])
def test_credential_process_shape_refuses(change: dict[str, Any], phrase: str) -> None:
    body = json.dumps({**PROCESS, **change}).encode()
    with pytest.raises(CredentialsInvalid, match=phrase) as err:
        parse_credentials(body, now=NOW, settings=CREDS)
    assert "s3cr3t" not in err.value.message


def test_credential_process_shape_is_accepted_with_its_session_token() -> None:
    creds = parse_credentials(json.dumps(PROCESS).encode(), now=NOW, settings=CREDS)
    assert creds.session_token is not None
    assert creds.session_token.get_secret_value() == "tok-value"
    assert creds.expires_at == NOW + timedelta(minutes=30)


# --- aembit-edge -----------------------------------------------------------------------------

AWS = {"awsAccessKeyId": "AKIDEXAMPLE0001", "awsSecretAccessKey": "s3cr3t-value",
       "awsSessionToken": "tok-value"}


@pytest.mark.parametrize(("answer", "error", "phrase"), [
    (_answer(200, {"credentialType": "Unknown", "expiresAt": None, "data": {}}),
     CredentialsDenied, "credentialType Unknown"),
    (_answer(200, {"credentialType": "AwsStsFederation", "expiresAt": SOON, "data": {}}),
     CredentialsInvalid, "empty credential data"),
    (_answer(200, {"credentialType": "AwsStsFederation", "expiresAt": SOON}),
     CredentialsInvalid, "empty credential data"),
    (_answer(200, {"credentialType": "ApiKey", "expiresAt": SOON, "data": {"apiKey": "k"}}),
     CredentialsInvalid, "awsAccessKeyId is missing"),
    (_answer(200, {"credentialType": "AwsStsFederation", "expiresAt": None, "data": AWS}),
     CredentialsInvalid, "non-expiring"),
    (_answer(200, {"credentialType": "AwsStsFederation", "expiresAt": "2026-12-26T00:00:00Z",
                   "data": AWS}), CredentialsInvalid, "not short-lived"),
    (_answer(200, b"<html>"), CredentialsInvalid, "not valid JSON"),
    (_answer(200, [AWS]), CredentialsInvalid, "JSON list"),
    (_answer(401, {}), CredentialsDenied, "HTTP 401"),
    (_answer(403, {}), CredentialsDenied, "HTTP 403"),
    (_answer(404, {}), CredentialsUnavailable, "HTTP 404"),
])
def test_edge_credentials_answer_refusals(answer: ApiAnswer, error: type[GhostBackupError],
                                          phrase: str) -> None:
    with pytest.raises(error, match=phrase) as err:
        parse_edge_credentials(answer, now=NOW, settings=CREDS)
    assert "s3cr3t" not in err.value.message
    assert type(err.value) is error


def test_edge_credentials_map_aws_fields_and_expiry() -> None:
    answer = _answer(200, {"credentialType": "AwsStsFederation", "expiresAt": SOON,
                           "data": {**AWS, "apiKey": None}})
    creds = parse_edge_credentials(answer, now=NOW, settings=CREDS)
    assert creds.access_key_id.get_secret_value() == "AKIDEXAMPLE0001"
    assert creds.session_token == SecretStr("tok-value")
    assert creds.expires_at == NOW + timedelta(minutes=30)


@pytest.mark.parametrize(("answer", "error"), [
    (_answer(200, {"accessToken": "b", "tokenType": "Basic", "expiresIn": 3600}),
     CredentialsInvalid),
    (_answer(200, {"accessToken": "", "tokenType": "Bearer", "expiresIn": 3600}),
     CredentialsInvalid),
    (_answer(200, {"accessToken": "b", "tokenType": "Bearer"}), CredentialsInvalid),
    (_answer(401, {"error": "no"}), CredentialsDenied),
    (_answer(400, {"error": "bad"}), CredentialsUnavailable),
])
def test_edge_auth_answer_refusals(answer: ApiAnswer, error: type[GhostBackupError]) -> None:
    with pytest.raises(error):
        parse_auth_token(answer)


def test_edge_requests_carry_the_identity_proof_and_the_r2_server() -> None:
    settings = _settings({"source": "aembit-edge",
                          "aembit_edge": {**EDGE, "client_workload_id": "ghost-host-1"}})
    edge = settings.credentials.aembit_edge
    assert edge is not None
    client = build_client(edge, SecretStr("oidc-jwt"))
    assert client == {"oidc": {"identityToken": "oidc-jwt"},
                      "os": {"environment": {"CLIENT_WORKLOAD_ID": "ghost-host-1"}}}
    request = build_credentials_request(edge, client, (f"{ACCOUNT}.r2.cloudflarestorage.com",
                                                       443))
    assert request["server"] == {"transportProtocol": "TCP",
                                 "host": f"{ACCOUNT}.r2.cloudflarestorage.com", "port": 443}
    assert request["credentialType"] == "AwsStsFederation"
    assert build_source(settings).provider == (
        f"aembit-edge:{ACCOUNT}.r2.cloudflarestorage.com:443")


# --- cloudflare-temp -------------------------------------------------------------------------

RESULT = {"accessKeyId": "AKIDEXAMPLE0001", "secretAccessKey": "s3cr3t-value",
          "sessionToken": "tok-value"}


def test_cloudflare_request_is_scoped_to_bucket_prefixes_and_window() -> None:
    settings = _settings({"source": "cloudflare-temp", "cloudflare_temp": {**CF,
                          "ttl_seconds": 5400}},
                         {**DEST, "path": "current", "archive_path": "archive"})
    assert settings.credentials.cloudflare_temp is not None
    assert build_temp_request(settings, settings.credentials.cloudflare_temp) == {
        "bucket": "ghost-backups", "parentAccessKeyId": "parentid",
        "permission": "object-read-write", "ttlSeconds": 5400,
        "prefixes": ["current/", "archive/"]}
    assert build_source(settings).provider == "cloudflare-temp:ghost-backups"


@pytest.mark.parametrize(("answer", "error", "phrase"), [
    (_answer(200, {"success": False, "errors": [{"code": 10001, "message": "nope"}]}),
     CredentialsInvalid, "without success (error codes 10001)"),
    (_answer(403, {"success": False, "errors": [{"code": 10000,
                                                 "message": "Authentication error"}]}),
     CredentialsDenied, "error codes 10000)"),
    (_answer(400, {"success": False, "errors": [{"code": 10000, "message": "x"}]}),
     CredentialsDenied, "HTTP 400"),
    (_answer(404, {"success": False, "errors": [{"code": 10006,
                                                 "message": "bucket does not exist"}]}),
     CredentialsUnavailable, "error codes 10006"),
    (_answer(502, b"<html>bad gateway</html>"), CredentialsUnavailable, "no error codes"),
    (_answer(200, {"success": True, "result": None}), CredentialsInvalid, "no result"),
    (_answer(200, {"success": True, "result": {**RESULT, "sessionToken": None}}),
     CredentialsInvalid, "sessionToken is missing"),
])
def test_cloudflare_answer_refusals(answer: ApiAnswer, error: type[GhostBackupError],
                                    phrase: str) -> None:
    with pytest.raises(error, match=re.escape(phrase)) as err:
        parse_temp_answer(answer, requested_at=NOW, ttl_seconds=3600, settings=CREDS)
    assert type(err.value) is error


def test_cloudflare_expiry_is_request_time_plus_ttl() -> None:
    answer = _answer(200, {"success": True, "errors": [], "result": RESULT})
    creds = parse_temp_answer(answer, requested_at=NOW, ttl_seconds=3600, settings=CREDS)
    assert creds.expires_at == NOW + timedelta(seconds=3600)
    assert creds.session_token == SecretStr("tok-value")


# --- settings --------------------------------------------------------------------------------

@pytest.mark.parametrize(("creds", "dest", "phrase"), [
    ({"source": "aembit-edge"}, DEST, "needs a [credentials.aembit_edge] section"),
    ({"source": "command"}, DEST, "needs a [credentials.command] section"),
    ({"source": "command", "command": {"argv": ["aws-vault", "export"]}}, DEST,
     "argv[0] must be an absolute path"),
    ({"source": "cloudflare-temp", "cloudflare_temp": {**CF, "ttl_seconds": 86400}}, DEST,
     "ttl_seconds must lie above min_validity_seconds"),
    ({"source": "cloudflare-temp", "cloudflare_temp": CF},
     {"bucket": "ghost-backups", "endpoint": "https://s3.example.com"}, "needs an account id"),
    ({"source": "aembit-edge", "aembit_edge": {**EDGE, "url": "http://aembit.example.com"}},
     DEST, "plain http only for a loopback host"),
    ({"source": "aembit-edge", "aembit_edge": {**EDGE, "identity_token_credential": "../x"}},
     DEST, "must be a credential name"),
    ({"source": "systemd-credential", "systemd_credential": {"name": "a/b"}}, DEST,
     "must be a credential name"),
    ({"source": "vault"}, DEST, "credentials.source"),
])
def test_settings_refuse_an_incomplete_source(creds: dict[str, Any], dest: dict[str, Any],
                                              phrase: str) -> None:
    with pytest.raises(ConfigError) as err:
        _settings(creds, dest)
    assert any(phrase in p for p in err.value.problems), err.value.problems


def test_default_source_is_http_json_named_after_the_url() -> None:
    settings = parse_settings({"destination": DEST}, {})
    source = build_source(settings)
    assert (source.name, source.provider) == ("http-json", "r2-backup")
    named = _settings({"provider_name": "aembit-r2-prod"})
    assert build_source(named).provider == "aembit-r2-prod"


# --- credential files ------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "content", "error", "phrase"), [
    (0o644, "{}", CredentialsInvalid, "mode 0644 and is accessible by others"),
    (0o640, "{}", CredentialsInvalid, "mode 0640 and is accessible by its group"),
    (0o400, "", CredentialsInvalid, "is empty"),
    (0o400, "\n  \n", CredentialsInvalid, "is empty"),
    (0o400, "x" * 2000, CredentialsInvalid, "larger than 1024 bytes"),
])
def test_credential_file_refusals(tmp_path: Path, mode: int, content: str,
                                  error: type[GhostBackupError], phrase: str) -> None:
    path = tmp_path / "cred"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(error, match=phrase):
        read_private_file(path, max_bytes=1024, what="credential")


def test_credential_file_missing_symlinked_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CredentialsUnavailable, match="is missing"):
        read_private_file(tmp_path / "absent", max_bytes=1024, what="credential")
    real = tmp_path / "real"
    real.write_text("{}")
    real.chmod(0o600)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(CredentialsInvalid, match="symlink"):
        read_private_file(tmp_path / "link", max_bytes=1024, what="credential")
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(CredentialsInvalid, match="not a regular file"):
        read_private_file(tmp_path / "dir", max_bytes=1024, what="credential")
    assert read_private_file(real, max_bytes=1024, what="credential") == b"{}"


def _acl(*extra: AclEntry, group: int = 0, mask: int = 4, other: int = 0) -> tuple[AclEntry, ...]:
    none = 0xFFFFFFFF
    return (AclEntry(ACL_USER_OBJ, 4, none), *extra, AclEntry(ACL_GROUP_OBJ, group, none),
            AclEntry(ACL_MASK, mask, none), AclEntry(ACL_OTHER, other, none))


SERVICE_UID = 61234  # a DynamicUser= uid


@pytest.mark.parametrize(("mode", "owner", "acl", "problem"), [
    (0o100400, SERVICE_UID, None, None),                     # chown fallback (no ACL support)
    (0o100600, 0, None, None),                               # root service
    (0o100440, 0, _acl(AclEntry(ACL_USER, 4, SERVICE_UID)), None),  # what systemd writes
    (0o100440, 0, None, "accessible by its group"),
    (0o100604, 0, None, "accessible by others"),
    (0o100400, 1000, None, "owned by uid 1000"),
    (0o100440, 0, _acl(AclEntry(ACL_USER, 4, 1000)), "accessible by uid 1000 (ACL)"),
    (0o100440, 0, _acl(AclEntry(ACL_GROUP, 4, 27)), "accessible by group 27 (ACL)"),
    (0o100440, 0, _acl(group=4), "accessible by its group (ACL)"),
    (0o100400, 0, _acl(AclEntry(ACL_USER, 4, 1000), mask=0), None),  # masked out
])
def test_secret_file_privacy_reads_acls_not_just_the_group_bits(
    mode: int, owner: int, acl: tuple[AclEntry, ...] | None, problem: str | None
) -> None:
    assert classify_file_access(mode=mode, owner=owner, euid=SERVICE_UID, acl=acl) == problem


def test_posix_acl_xattr_is_parsed_and_bad_ones_refused() -> None:
    raw = bytes.fromhex("02000000" "01000400ffffffff" "02000400feff0000" "10000400ffffffff")
    assert parse_posix_acl(raw) == (AclEntry(ACL_USER_OBJ, 4, 0xFFFFFFFF),
                                    AclEntry(ACL_USER, 4, 65534),
                                    AclEntry(ACL_MASK, 4, 0xFFFFFFFF))
    for bad in (b"", bytes.fromhex("03000000"), bytes.fromhex("02000000ff")):
        with pytest.raises(ValueError):
            parse_posix_acl(bad)


def test_credentials_directory_must_be_set_and_absolute() -> None:
    with pytest.raises(CredentialsUnavailable, match="LoadCredential=r2"):
        credential_path({}, "r2")
    with pytest.raises(CredentialsUnavailable, match="absolute"):
        credential_path({"CREDENTIALS_DIRECTORY": "creds"}, "r2")
    assert credential_path({"CREDENTIALS_DIRECTORY": "/run/credentials/x.service"}, "r2") == \
        Path("/run/credentials/x.service/r2")


@pytest.mark.parametrize(("data", "ok"), [
    (b"token\n", True), (b"token", True), (b"two words", False), (b"\n", False),
    (b"\xff\xfe", False), (b"a\nb\n", False),
])
def test_token_files_hold_one_token_on_one_line(data: bytes, ok: bool) -> None:
    if ok:
        assert parse_secret_text(data, what="t").get_secret_value() == "token"
    else:
        with pytest.raises(CredentialsInvalid):
            parse_secret_text(data, what="t")


# --- command ---------------------------------------------------------------------------------

def test_helper_stderr_is_redacted_by_value_by_stdout_and_by_shape() -> None:
    known = Redactor()
    known.add(["known-secret-value"])
    result = Finished(
        returncode=1,
        stdout=b'{"AccessKeyId": "AKIDSTDOUT", "SecretAccessKey": "from-stdout-secret"}',
        stderr=(b"using known-secret-value\nechoed from-stdout-secret\n"
                b"leaked wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY for 20261126T020000Z-abc123\n"
                b"\x1b[31mcolour\x1b[0m " + b"x" * 400 + b"\n"),
        timed_out=False, seconds=0.1)
    lines = format_stderr(result, known, run_id="20261126T020000Z-abc123")
    assert lines[0] == "using ****"
    assert lines[1] == "echoed ****"
    assert lines[2] == "leaked **** for 20261126T020000Z-abc123"
    assert "\x1b" not in lines[3]
    assert len(lines[3]) == 300


@pytest.mark.parametrize(("line", "masked"), [
    ("AKIAIOSFODNN7EXAMPLE", "****"),
    ("path /etc/ghost-backup/config.toml", "path /etc/ghost-backup/config.toml"),
    ("vault: permission denied on secret/data/r2-backup", None),
    ("short A1b2c3", None),
    ("id 0123456789abcdef0123456789abcdef", "id ****"),
    ("gbs-canary-Zx81_Qf0aL2mN9pR4tV7wY", "****"),
    ("sig wJalrXUtnFEMIKbMDENGbPxRfiCYzz", "sig ****"),
])
def test_mask_key_shaped_words(line: str, masked: str | None) -> None:
    assert mask_key_shaped(line) == (line if masked is None else masked)


def test_helper_environment_is_an_allowlist_plus_the_run_id() -> None:
    env = build_helper_env({"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "NOTIFY_SOCKET": "/s",
                            "CREDENTIALS_DIRECTORY": "/run/credentials/g"}, "RUN1")
    assert env == {"PATH": "/bin", "CREDENTIALS_DIRECTORY": "/run/credentials/g",
                   "GHOST_BACKUP_RUN_ID": "RUN1"}


@pytest.mark.parametrize(("argv", "name"), [
    (("/usr/bin/aws-vault", "export", "r2"), "aws-vault"),
    (("/usr/bin/python3", "/opt/broker/get-r2.py"), "get-r2.py"),
    (("/bin/sh", "-c", "x"), "sh"),
])
def test_helper_name_for_the_audit_line(argv: tuple[str, ...], name: str) -> None:
    assert helper_name(argv) == name


def test_every_source_has_its_own_provider_name() -> None:
    names = {
        "http-json": {},
        "aembit-edge": {"aembit_edge": EDGE},
        "cloudflare-temp": {"cloudflare_temp": CF},
        "command": {"command": {"argv": ["/usr/local/bin/r2-broker"]}},
        "systemd-credential": {},
    }
    providers = {build_source(_settings({"source": kind, **extra})).provider
                 for kind, extra in names.items()}
    assert providers == {"r2-backup", f"aembit-edge:{ACCOUNT}.r2.cloudflarestorage.com:443",
                         "cloudflare-temp:ghost-backups", "command:r2-broker",
                         "systemd-credential:r2-backup"}
    assert os.sep == "/"
