"""`ghost-backup audit-host` end to end: the real CLI as a child process, reading planted host
trees under `--root`. Every test checks that no planted key appears in what the command printed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ghost_backup.audit.classify import (
    SHAPE_AWS_KEY_ID,
    SHAPE_AWS_SECRET,
    SHAPE_R2_KEY_ID,
    SHAPE_R2_SECRET,
    classify_shape,
    fingerprint,
)
from ghost_backup.audit.scan import MAX_FILE_BYTES
from ghost_backup.errors import ExitCode
from tests.helpers import BIN, GHOST_BACKUP, Stack, find_canaries, make_tree

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _fresh(shape: str) -> str:
    """Return a new random value of ``shape`` (drawn again in the rare case it reads as a name)."""
    make = {
        SHAPE_AWS_KEY_ID: lambda: "AKIA" + "".join(secrets.choice(_BASE32) for _ in range(16)),
        SHAPE_AWS_SECRET: lambda: "".join(secrets.choice(_B64) for _ in range(40)),
        SHAPE_R2_KEY_ID: lambda: secrets.token_hex(16),
        SHAPE_R2_SECRET: lambda: secrets.token_hex(32),
    }[shape]
    while True:
        value = make()
        if classify_shape(value) == shape:
            return value


@dataclass
class Planted:
    """One key written into the planted host: the file (host path) and line it sits on."""

    host_path: str
    line: int
    value: str


def _write(root: Path, host_path: str, text: str, mode: int = 0o644) -> Path:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _audit(*args: str, root: Path | None = None, config: Path | None = None,
           as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    # setpriv(1) (util-linux): on these machines subprocess's own user= switch gets EACCES
    # executing the virtualenv's interpreter, setpriv does not.
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    argv += [GHOST_BACKUP]
    if config is not None:
        argv += ["--config", str(config)]
    argv += ["audit-host", *args]
    if root is not None:
        argv += ["--root", str(root)]
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          check=False, cwd="/")


def _found(report: dict[str, object]) -> set[tuple[str, int, str]]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {(f["path"], f["line"], f["fingerprint"]) for f in findings}


def _plant_host(root: Path) -> list[Planted]:
    """Write a host that holds keys the ways real hosts do; return every planted key."""
    r2_id, r2_secret = _fresh(SHAPE_R2_KEY_ID), _fresh(SHAPE_R2_SECRET)
    aws_id, aws_secret = _fresh(SHAPE_AWS_KEY_ID), _fresh(SHAPE_AWS_SECRET)
    unit_secret, env_id, env_secret = (_fresh(SHAPE_R2_SECRET), _fresh(SHAPE_R2_KEY_ID),
                                       _fresh(SHAPE_AWS_SECRET))
    legacy_id, legacy_secret = _fresh(SHAPE_AWS_KEY_ID), _fresh(SHAPE_R2_SECRET)
    profile_secret, state_secret = _fresh(SHAPE_AWS_SECRET), _fresh(SHAPE_R2_SECRET)
    account = secrets.token_hex(16)
    _write(root, "/root/.config/rclone/rclone.conf", "\n".join([
        "[r2]",
        "type = s3",
        "provider = Cloudflare",
        f"access_key_id = {r2_id}",
        f"secret_access_key = {r2_secret}",
        f"endpoint = https://{account}.r2.cloudflarestorage.com",
        "",
    ]), 0o600)
    _write(root, "/var/mnt/storage/ghost-compose/.env.production", "\n".join([
        "url=https://blog.example.org",
        "database__connection__password=ghost-db-password-123",
        f"AWS_ACCESS_KEY_ID={aws_id}",
        f"AWS_SECRET_ACCESS_KEY={aws_secret}",
        "",
    ]))
    _write(root, "/etc/systemd/system/ghost-backup.service.d/10-keys.conf", "\n".join([
        "[Service]",
        "Environment=RCLONE_CONFIG_R2_TYPE=s3",
        f'Environment="RCLONE_CONFIG_R2_SECRET_ACCESS_KEY={unit_secret}"',
        "",
    ]))
    _write(root, "/etc/systemd/system/legacy-backup.service", "\n".join([
        "[Service]",
        "Type=oneshot",
        "EnvironmentFile=-/etc/legacy-backup/r2.env",
        "ExecStart=/opt/bin/ghost-backup.sh",
        "",
    ]))
    _write(root, "/etc/legacy-backup/r2.env", "\n".join([
        "# keys for the nightly job",
        f"R2_KEY={env_id}",
        f"R2_SECRET={env_secret}",
        "",
    ]), 0o600)
    _write(root, "/opt/legacy/etc/rclone.conf",
           f"[old]\ntype = s3\naccess_key_id = {legacy_id}\nsecret_access_key = {legacy_secret}\n")
    _write(root, "/etc/profile.d/r2.sh", f"export AWS_SECRET_ACCESS_KEY='{profile_secret}'\n")
    # DynamicUser=: the state directory is a symlink into /var/lib/private.
    _write(root, "/var/lib/private/ghost-backup/debug.env", f"R2_SECRET={state_secret}\n")
    (root / "var/lib/ghost-backup").symlink_to("private/ghost-backup")
    return [
        Planted("/root/.config/rclone/rclone.conf", 4, r2_id),
        Planted("/root/.config/rclone/rclone.conf", 5, r2_secret),
        Planted("/var/mnt/storage/ghost-compose/.env.production", 3, aws_id),
        Planted("/var/mnt/storage/ghost-compose/.env.production", 4, aws_secret),
        Planted("/etc/systemd/system/ghost-backup.service.d/10-keys.conf", 3, unit_secret),
        Planted("/etc/legacy-backup/r2.env", 2, env_id),
        Planted("/etc/legacy-backup/r2.env", 3, env_secret),
        Planted("/opt/legacy/etc/rclone.conf", 3, legacy_id),
        Planted("/opt/legacy/etc/rclone.conf", 4, legacy_secret),
        Planted("/etc/profile.d/r2.sh", 1, profile_secret),
        Planted("/var/lib/private/ghost-backup/debug.env", 1, state_secret),
    ]


def _plant_clean_host(root: Path) -> None:
    """Write a host set up the ghost-backup way: everything but the keys."""
    account = secrets.token_hex(16)
    digest = secrets.token_hex(32)
    _write(root, "/etc/ghost-backup/config.toml", "\n".join([
        "[destination]",
        'bucket = "ghost-backups"',
        f'account_id = "{account}"',
        "",
    ]))
    _write(root, "/etc/systemd/system/ghost-backup.service", "\n".join([
        "[Service]",
        "Type=notify",
        "Environment=GHOST_BACKUP_CONFIG=/etc/ghost-backup/config.toml",
        "Environment=PROXY_URL=http://localhost:8080",
        "EnvironmentFile=-/etc/ghost-backup/env",
        "LoadCredential=proxy-ca:/etc/ghost-backup/proxy-ca.pem",
        "ExecStart=/usr/bin/ghost-backup run",
        "RuntimeDirectory=ghost",
        "",
    ]))
    _write(root, "/etc/ghost-backup/env", f"BACKUP_BUCKET=ghost-backups\nCF_ACCOUNT_ID={account}\n")
    _write(root, "/etc/ghost-backup/proxy-ca.pem", "\n".join([
        "-----BEGIN CERTIFICATE-----",
        *("".join(secrets.choice(_B64) for _ in range(64)) for _ in range(5)),
        "".join(secrets.choice(_B64) for _ in range(40)),
        "-----END CERTIFICATE-----",
        "",
    ]))
    _write(root, "/etc/systemd/system/ghost-backup.service.d/10-local.conf",
           "[Service]\nEnvironment=RCLONE_CONFIG_R2_TYPE=s3\nNice=10\n")
    _write(root, "/etc/rclone/rclone.conf", "\n".join([
        "[r2]",
        "type = s3",
        "provider = Cloudflare",
        "env_auth = true",
        "access_key_id =",
        "secret_access_key =",
        f"endpoint = https://{account}.r2.cloudflarestorage.com",
        "",
    ]))
    _write(root, "/var/mnt/storage/ghost-compose/.env.production", "\n".join([
        "url=https://blog.example.org",
        "database__connection__password=ghost-db-password-123",
        "mail__options__auth__pass=mailpass-456789",
        "",
    ]))
    _write(root, "/var/mnt/storage/ghost-compose/docker-compose.yml", "\n".join([
        "services:",
        "  ghost:",
        f"    image: ghost@sha256:{digest}",
        "    env_file: .env.production",
        "",
    ]))
    _write(root, "/etc/profile.d/proxy.sh", "# AWS docs example, not a key: AKIAIOSFODNN7EXAMPLE\n"
                                            "export PROXY_URL=http://localhost:8080\n")
    _write(root, "/etc/machine-id", secrets.token_hex(16) + "\n")
    _write(root, "/etc/environment", 'PATH="/usr/local/sbin:/usr/local/bin:/usr/bin"\n')
    (root / "opt/bin").mkdir(parents=True)
    (root / "opt/bin/tool").write_bytes(b"\x7fELF\0\0\0" + secrets.token_bytes(4096))
    _write(root, "/var/lib/ghost-backup/last-run.json",
           json.dumps({"run_id": secrets.token_hex(8), "exit_code": 0,
                       "provider": "r2-backup"}) + "\n")


def test_audit_host_finds_every_planted_key_and_prints_none(tmp_path: Path) -> None:
    root = tmp_path / "host"
    planted = _plant_host(root)
    values = [p.value for p in planted]

    text = _audit(root=root)
    as_json = _audit("--json", root=root)

    assert text.returncode == ExitCode.KEYS_ON_HOST == 80, text.stderr
    assert as_json.returncode == ExitCode.KEYS_ON_HOST
    report = json.loads(as_json.stdout)
    assert report["clean"] is False
    expected = {(str(root) + p.host_path, p.line, fingerprint(p.value)) for p in planted}
    assert _found(report) == expected
    for p in planted:
        assert f"{root}{p.host_path}:{p.line}: " in text.stdout
        assert f"sha256:{fingerprint(p.value)}" in text.stdout
    via = {f["path"]: f["via"] for f in report["findings"]}
    assert via[f"{root}/etc/legacy-backup/r2.env"] == (
        f"EnvironmentFile= in {root}/etc/systemd/system/legacy-backup.service")
    assert find_canaries(values, texts=[text.stdout, text.stderr, as_json.stdout,
                                        as_json.stderr]) == []


def test_audit_host_reports_zero_findings_on_a_clean_host(tmp_path: Path) -> None:
    root = tmp_path / "host"
    _plant_clean_host(root)

    text = _audit(root=root)
    as_json = _audit("--json", root=root)

    assert text.returncode == 0, text.stdout + text.stderr
    assert "audit-host: clean: no S3/R2 key found" in text.stdout
    report = json.loads(as_json.stdout)
    assert (report["clean"], report["findings"], report["unreadable"]) == (True, [], [])
    assert report["files_scanned"] >= 9
    assert (report["complete"], report["skipped"]) == (True, [])  # the binary was read too


def test_audit_host_leaves_the_source_data_alone_unless_asked(tmp_path: Path) -> None:
    root = tmp_path / "host"
    _plant_clean_host(root)
    secret = _fresh(SHAPE_R2_SECRET)
    data = _write(root, "/var/mnt/storage/content/data/notes.txt", f"r2 {secret}\n")

    assert _audit(root=root).returncode == 0
    asked = _audit("--json", "--path", str(root / "var/mnt/storage"), root=root)

    assert asked.returncode == ExitCode.KEYS_ON_HOST
    assert _found(json.loads(asked.stdout)) == {(str(data), 1, fingerprint(secret))}
    assert find_canaries([secret], texts=[asked.stdout, asked.stderr]) == []


def test_audit_host_works_without_config_and_follows_the_configured_source(
        tmp_path: Path) -> None:
    root = tmp_path / "host"
    root.mkdir()
    bare = _audit(root=root)
    assert bare.returncode == 0, bare.stderr
    assert "note: no config at" in bare.stdout

    secret = _fresh(SHAPE_AWS_SECRET)
    env_file = _write(root, "/data/ghost/compose/.env", f"AWS_SECRET_ACCESS_KEY={secret}\n")
    config = _write(tmp_path, "/config.toml", "\n".join([
        "[source]", 'path = "/data/ghost"',
        "[destination]", 'bucket = "ghost-backups"', f'account_id = "{secrets.token_hex(16)}"',
        "",
    ]))
    configured = _audit("--json", root=root, config=config)
    assert configured.returncode == ExitCode.KEYS_ON_HOST, configured.stderr
    report = json.loads(configured.stdout)
    assert _found(report) == {(str(env_file), 1, fingerprint(secret))}
    assert report["notes"] == []

    broken = _write(tmp_path, "/broken.toml", "[source\n")
    fallback = _audit(root=root, config=broken)
    assert fallback.returncode == 0
    assert "unusable (TOMLDecodeError): default locations used" in fallback.stdout


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A directory others may traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ghost-audit-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_audit_host_reports_unreadable_paths_without_failing(world_readable_tmp: Path) -> None:
    root = world_readable_tmp / "host"
    _plant_clean_host(root)
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    secret = _fresh(SHAPE_R2_SECRET)
    _write(root, "/root/.config/rclone/rclone.conf", f"secret_access_key = {secret}\n", 0o600)
    (root / "etc/credstore").mkdir(mode=0o700)

    nobody = _audit("--json", root=root, as_nobody=True)

    # No key in what nobody could read, but not everything was read: incomplete, never 0.
    assert nobody.returncode == ExitCode.AUDIT_INCOMPLETE, nobody.stderr
    unreadable = {u["path"]: u["reason"] for u in json.loads(nobody.stdout)["unreadable"]}
    assert unreadable[f"{root}/root/.config/rclone/rclone.conf"] == "Permission denied"
    assert unreadable[f"{root}/etc/credstore"] == "Permission denied"
    as_root = _audit(root=root)
    assert as_root.returncode == ExitCode.KEYS_ON_HOST
    assert find_canaries([secret], texts=[nobody.stdout, nobody.stderr, as_root.stdout]) == []


def test_audit_host_stays_bounded_on_large_binary_and_special_files(tmp_path: Path) -> None:
    root = tmp_path / "host"
    early, late, past_cap, in_binary = (_fresh(SHAPE_R2_SECRET) for _ in range(4))
    pad = "# " + "p" * 997 + "\n"
    big = _write(root, "/etc/rclone/big.conf",
                 f"secret_access_key = {early}\n" + pad * (MAX_FILE_BYTES // len(pad) - 10)
                 + f"secret_access_key = {late}\n")
    huge = _write(root, "/etc/rclone/huge.conf",
                  pad * (MAX_FILE_BYTES // len(pad) + 1) + f"secret_access_key = {past_cap}\n")
    blob = root / "etc/rclone/blob.conf"
    blob.write_bytes(b"\0\1\2" + f"\nsecret_access_key = {in_binary}\n".encode())
    os.mkfifo(root / "etc/rclone/fifo.conf")
    (root / "etc/rclone/loop").symlink_to(root / "etc")

    result = _audit("--json", root=root)

    report = json.loads(result.stdout)
    assert _found(report) == {(str(big), 1, fingerprint(early)),
                              (str(big), MAX_FILE_BYTES // len(pad) - 8, fingerprint(late)),
                              (str(blob), 2, fingerprint(in_binary))}
    assert {s["path"]: s["reason"].split(":")[0] for s in report["skipped"]} == {
        str(huge): "truncated"}
    assert report["gaps"] == ["1 file(s) read only in part"]
    assert find_canaries([early, late, past_cap, in_binary],
                         texts=[result.stdout, result.stderr]) == []


@pytest.mark.parametrize(
    "stack", [(_fresh(SHAPE_R2_KEY_ID), _fresh(SHAPE_R2_SECRET))], indirect=True,
    ids=["r2-shaped-keys"])
def test_audit_host_is_clean_after_a_real_backup_with_r2_shaped_keys(stack: Stack) -> None:
    # Canary keys with R2's real shapes (32/64 hex), so the audit would see them if left.
    make_tree(stack.source, 40)
    empty_root = stack.tmp / "empty-root"
    empty_root.mkdir()
    backup = stack.run("run")
    assert backup.returncode == 0, backup.stderr

    # Everything on the host, not the folder standing in for R2: the history's manifests
    # there hold MD5s, which have an R2 key id's shape (32 hex).
    host = [str(p) for p in stack.tmp.iterdir() if p != stack.s3.data_dir]
    after = stack.run("audit-host", "--json", "--root", str(empty_root),
                      "--path", *host, str(stack.runtime_dir))
    assert after.returncode == 0, after.stdout + after.stderr
    assert json.loads(after.stdout)["findings"] == []

    # Positive control: the same keys, left in a file, are found.
    leak = _write(stack.tmp, "/leak/rclone.conf",
                  f"[r2]\n{stack.secrets[0]}\n{stack.secrets[1]}\n")
    control = stack.run("audit-host", "--json", "--root", str(empty_root),
                        "--path", str(leak.parent))
    assert control.returncode == ExitCode.KEYS_ON_HOST
    assert {f["fingerprint"] for f in json.loads(control.stdout)["findings"]} == {
        fingerprint(v) for v in stack.secrets}
    assert find_canaries(stack.secrets, texts=[backup.stdout, backup.stderr, after.stdout,
                                               after.stderr, control.stdout]) == []
