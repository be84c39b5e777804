"""The host audit's pure core: what counts as a key, what does not, and what gets printed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ghost_backup.audit.classify import (
    KIND_ASSIGNMENT,
    KIND_ENCRYPTED_RCLONE,
    KIND_KEY_ID,
    KIND_SECRET,
    SHAPE_AWS_KEY_ID,
    SHAPE_AWS_SECRET,
    SHAPE_R2_KEY_ID,
    SHAPE_R2_SECRET,
    UnitReference,
    classify_line,
    classify_text,
    fingerprint,
    holds_identifiers,
    parse_unit_references,
)
from ghost_backup.audit.plan import HostLocations, build_scan_plan, rebase
from ghost_backup.audit.report import (
    AuditReport,
    Finding,
    Skipped,
    format_report_json,
    format_report_text,
)

# Fixed values with the real shapes (made up here; never valid anywhere).
AWS_ID = "AKIAQX3FZ7P2LM4NB6VD"
AWS_SECRET = "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"
R2_ID = "3f9c1e7a2b4d6f8091a3c5e7b9d1f2a4"
R2_SECRET = "9d2f7c4e1a8b3f6c0e5d9a2b7f4c1e8d3a6b9f2c5e8d1a4b7c0f3e6d9a2b5c8f"
DIGEST = "c0fa1bc00531bd78ef38c628449c5102aeabd49b5dc3a2a516ea6ea959d6658e"


def _kinds(line: str) -> list[tuple[str, str, str]]:
    return [(h.kind, h.name, h.shape) for h in classify_line(line)]


@pytest.mark.parametrize(("line", "expected"), [
    (f"secret_access_key = {R2_SECRET}",
     [(KIND_ASSIGNMENT, "secret_access_key", SHAPE_R2_SECRET)]),
    (f"access_key_id = {R2_ID}", [(KIND_ASSIGNMENT, "access_key_id", SHAPE_R2_KEY_ID)]),
    (f"aws_access_key_id={AWS_ID}", [(KIND_ASSIGNMENT, "aws_access_key_id", SHAPE_AWS_KEY_ID)]),
    (f"RCLONE_CONFIG_R2_SECRET_ACCESS_KEY={R2_SECRET}",
     [(KIND_ASSIGNMENT, "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY", SHAPE_R2_SECRET)]),
    (f'export AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"',
     [(KIND_ASSIGNMENT, "AWS_SECRET_ACCESS_KEY", SHAPE_AWS_SECRET)]),
    (f'Environment="AWS_ACCESS_KEY_ID={AWS_ID}" "AWS_SECRET_ACCESS_KEY={AWS_SECRET}"',
     [(KIND_ASSIGNMENT, "AWS_ACCESS_KEY_ID", SHAPE_AWS_KEY_ID),
      (KIND_ASSIGNMENT, "AWS_SECRET_ACCESS_KEY", SHAPE_AWS_SECRET)]),
    (f"Environment=AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
     [(KIND_ASSIGNMENT, "AWS_SECRET_ACCESS_KEY", SHAPE_AWS_SECRET)]),
    (f"  aws_secret_access_key: '{AWS_SECRET}'",
     [(KIND_ASSIGNMENT, "aws_secret_access_key", SHAPE_AWS_SECRET)]),
    (f'{{"secretAccessKey": "{R2_SECRET}"}}',
     [(KIND_ASSIGNMENT, "secretAccessKey", SHAPE_R2_SECRET)]),
    (f"storage__s3__secretAccessKey={R2_SECRET}",
     [(KIND_ASSIGNMENT, "storage__s3__secretAccessKey", SHAPE_R2_SECRET)]),
    (f"ExecStart=/usr/bin/rclone sync --s3-secret-access-key {R2_SECRET} /src r2:b",
     [(KIND_ASSIGNMENT, "s3-secret-access-key", SHAPE_R2_SECRET)]),
    (f"ExecStart=/usr/bin/rclone sync --s3-access-key-id={R2_ID} /src r2:b",
     [(KIND_ASSIGNMENT, "s3-access-key-id", SHAPE_R2_KEY_ID)]),
    ("RCLONE_CONFIG_PASS=correct-horse-battery", [(KIND_ASSIGNMENT, "RCLONE_CONFIG_PASS", "")]),
    ("aws_session_token = IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH",
     [(KIND_ASSIGNMENT, "aws_session_token", "")]),
    ("secret_access_key = not-shaped-like-any-key", [(KIND_ASSIGNMENT, "secret_access_key", "")]),
    (f'self.secret_access_key = "{R2_SECRET}"',
     [(KIND_ASSIGNMENT, "self.secret_access_key", SHAPE_R2_SECRET)]),
])
def test_classify_line_reports_credential_assignments(line: str,
                                                      expected: list[tuple[str, str, str]]) -> None:
    assert _kinds(line) == expected


@pytest.mark.parametrize(("line", "expected"), [
    (AWS_ID, [(KIND_KEY_ID, SHAPE_AWS_KEY_ID, SHAPE_AWS_KEY_ID)]),
    ("key ASIAQX3FZ7P2LM4NB6VD in a note", [(KIND_KEY_ID, SHAPE_AWS_KEY_ID, SHAPE_AWS_KEY_ID)]),
    (R2_ID, [(KIND_KEY_ID, SHAPE_R2_KEY_ID, SHAPE_R2_KEY_ID)]),
    (f"{R2_SECRET}\n", [(KIND_SECRET, SHAPE_R2_SECRET, SHAPE_R2_SECRET)]),
    (f"R2_KEY={R2_ID}", [(KIND_KEY_ID, SHAPE_R2_KEY_ID, SHAPE_R2_KEY_ID)]),
    (f"creds {AWS_SECRET} end", [(KIND_SECRET, SHAPE_AWS_SECRET, SHAPE_AWS_SECRET)]),
    (f"https://{R2_ID}:{R2_SECRET}@host/",
     [(KIND_KEY_ID, SHAPE_R2_KEY_ID, SHAPE_R2_KEY_ID), (KIND_SECRET, SHAPE_R2_SECRET,
                                                       SHAPE_R2_SECRET)]),
    (f"# sha256 of the key, and the key itself: {AWS_ID}",
     [(KIND_KEY_ID, SHAPE_AWS_KEY_ID, SHAPE_AWS_KEY_ID)]),
])
def test_classify_line_reports_bare_key_shapes(line: str,
                                               expected: list[tuple[str, str, str]]) -> None:
    assert _kinds(line) == expected


@pytest.mark.parametrize("line", [
    "secret_access_key =",
    "secret_access_key = ",
    "aws_secret_access_key:",
    "export AWS_SECRET_ACCESS_KEY=$(echo \"$CREDS\" | jq -r '.secret_access_key')",
    "export AWS_SECRET_ACCESS_KEY=\"${AWS_SECRET_ACCESS_KEY}\"",
    "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY=$SECRET",
    "secret_access_key = <your-secret-access-key>",
    "secret_access_key = ********",
    "aws_secret_access_key = xxxxxxxxxxxxxxxx",
    "aws_secret_access_key = CHANGEME-later",
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "secret_access_key_file = /run/credentials/ghost-backup.service/r2",
    "LoadCredential=r2:/etc/credstore/r2-secret-access-key",
    "secret_access_key = {{ r2_secret }}",
    "secret_access_key=creds.secret_access_key,",
    'secret_access_key = os.environ["R2_SECRET"]',
    "access_key_id = get_key(name)",
    "env_auth = true",
    "provider = Cloudflare",
    f"image: ghost@sha256:{DIGEST}",
    f"{DIGEST}  ghost-backup-1.2.3-x86-64.raw",
    f"Digest: sha256:{DIGEST}",
    f'account_id = "{R2_ID}"',
    f"endpoint = https://{R2_ID}.r2.cloudflarestorage.com",
    f"path = /var/lib/docker/containers/{DIGEST}/config.v2.json",
    f"file-{R2_ID}.json",
    "Requires=dev-disk-by\\x2duuid-3f9c1e7a\\x2d2b4d.device",
    "commit 1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
    f'  "invocation_id": "{R2_ID}"',
    "ThisIsAVeryLongCamelCaseIdentifierName12",
    "ExecStart=/usr/bin/ghost-backup run",
    "Environment=GHOST_BACKUP_CONFIG=/etc/ghost-backup/config.toml",
    "PROXY_URL=http://localhost:8080",
    "database__connection__password=ghost-db-password-123",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "0123456789012345678901234567890123456789012345678901234567890123",
])
def test_classify_line_ignores_non_secrets(line: str) -> None:
    assert _kinds(line) == []


def test_classify_text_reports_line_numbers_and_skips_pem_blocks() -> None:
    text = "\n".join([
        "[r2]",
        "type = s3",
        f"secret_access_key = {R2_SECRET}",
        "-----BEGIN CERTIFICATE-----",
        AWS_SECRET,
        "-----END CERTIFICATE-----",
        R2_ID,
    ])
    assert [(n, h.kind) for n, h in classify_text(text)] == [(3, KIND_ASSIGNMENT),
                                                             (7, KIND_KEY_ID)]
    assert [n for n, _ in classify_text(text, shapes=False)] == [3]


def test_encrypted_rclone_config_is_reported() -> None:
    blob = "XIkAr3p+y+zcKMh/oAAAq7Rt/K2mXv9LpZ3sWd8Nf+Hj4Bc6Ye1Ua5Go0Ti2Zm9vYmFy"
    text = f"# Encrypted rclone configuration File\n\nRCLONE_ENCRYPT_V0:\n{blob}\n"
    hits = classify_text(text)
    assert [(n, h.kind, h.fingerprint) for n, h in hits] == [
        (3, KIND_ENCRYPTED_RCLONE, fingerprint(blob))]


def test_fingerprint_is_first_8_hex_of_sha256() -> None:
    assert fingerprint(R2_SECRET) == hashlib.sha256(R2_SECRET.encode()).hexdigest()[:8]
    hit, = classify_line(f"secret_access_key = {R2_SECRET}")
    assert hit.fingerprint == fingerprint(R2_SECRET)
    assert R2_SECRET not in repr(hit)


@pytest.mark.parametrize(("text", "expected"), [
    ("[Service]\nEnvironmentFile=-/etc/ghost/r2.env\n",
     [UnitReference("EnvironmentFile", "/etc/ghost/r2.env")]),
    ("EnvironmentFile=/etc/default/backup\nEnvironmentFile=/etc/env.d/*.conf\n",
     [UnitReference("EnvironmentFile", "/etc/default/backup"),
      UnitReference("EnvironmentFile", "/etc/env.d/*.conf")]),
    ("LoadCredential=r2:/etc/keys/r2\nLoadCredential=bare-id\n",
     [UnitReference("LoadCredential", "/etc/keys/r2")]),
    ("EnvironmentFile=%h/.env\nEnvironmentFile=\nEnvironment=A=b\n", []),
])
def test_parse_unit_references_returns_loaded_files(text: str,
                                                    expected: list[UnitReference]) -> None:
    assert list(parse_unit_references(text)) == expected


def test_scan_plan_covers_the_issue_locations_and_never_walks_the_source() -> None:
    plan = build_scan_plan(HostLocations(source=Path("/var/mnt/storage")), [Path("/srv/x")])
    patterns = {t.pattern for t in plan}
    for expected in ("/root/.config/rclone", "/etc/rclone", "/etc/systemd/system",
                     "/run/systemd/system", "/usr/lib/systemd/system", "/etc/environment",
                     "/etc/profile.d", "/root/.bashrc", "/home/*/.bashrc",
                     "/var/mnt/storage/.env*", "/var/mnt/storage/*/.env*", "/var/lib/ghost-backup",
                     "/run/ghost", "/run/ghost-backup-manual", "/etc/ghost-backup", "/srv/x"):
        assert expected in patterns
    walks = [t for t in plan if t.names == ("rclone.conf", "rclone*.conf")]
    assert {t.pattern for t in walks} == {"/etc", "/opt", "/var/lib"}
    assert all("/var/mnt/storage" in t.prune for t in walks)
    assert not any(t.pattern == "/var/mnt/storage" for t in plan)
    extra, = (t for t in plan if t.pattern == "/srv/x")
    assert (extra.rebase, extra.required) == (False, True)


def test_rebase_puts_host_paths_under_the_root() -> None:
    assert rebase(Path("/"), "/etc/rclone") == Path("/etc/rclone")
    assert rebase(Path("/mnt/img"), "/etc/rclone") == Path("/mnt/img/etc/rclone")


def _report(findings: tuple[Finding, ...]) -> AuditReport:
    return AuditReport(root="/", findings=findings,
                       unreadable=(Skipped("/root/x", "Permission denied"),),
                       skipped=(Skipped("/opt/bin/tool", "binary"),), files_scanned=3,
                       seconds=0.01, notes=("no config",))


def test_reports_show_fingerprints_and_say_clean_or_not() -> None:
    finding = Finding("/etc/rclone/rclone.conf", 4, KIND_ASSIGNMENT, "secret_access_key",
                      SHAPE_R2_SECRET, fingerprint(R2_SECRET), via="")
    text = format_report_text(_report((finding,)))
    assert ("/etc/rclone/rclone.conf:4: assignment secret_access_key (r2-secret shape) "
            f"sha256:{fingerprint(R2_SECRET)}") in text
    assert "unreadable: /root/x: Permission denied" in text
    assert "1 finding(s) in 1 file(s)" in text
    data = json.loads(format_report_json(_report((finding,))))
    assert data["clean"] is False
    assert data["findings"][0]["line"] == 4
    # Nothing found, but /root/x could not be read: incomplete, not clean (hostile review 3).
    assert ("audit-host: incomplete: no S3/R2 key found in what was read, but 1 path(s) "
            "unreadable") in format_report_text(_report(()))
    data = json.loads(format_report_json(_report(())))
    assert (data["clean"], data["complete"], data["gaps"]) == (
        True, False, ["1 path(s) unreadable"])
    whole = AuditReport(root="/", findings=(), unreadable=(), skipped=(), files_scanned=3,
                        seconds=0.01)
    assert "audit-host: clean: no S3/R2 key found" in format_report_text(whole)


def test_a_manifest_of_md5s_is_identifiers_but_an_assignment_in_it_is_still_found() -> None:
    md5 = hashlib.md5(b"x").hexdigest()  # noqa: S324 - an object's ETag, not security
    assert classify_line(f"dir/a.jpg\t12\t{md5}")  # a bare MD5 has an R2 key id's shape
    assert holds_identifiers("mirror.manifest")
    assert holds_identifiers("20261128T020000Z-3fa1c2.manifest")
    text = f"dir/a.jpg\t12\t{md5}\n"
    assert classify_text(text, shapes=False) == ()
    assert classify_text(f"{text}aws_secret_access_key = {R2_SECRET}\n", shapes=False)
