"""Hostile review, items 3 and 9: `audit-host` once said "clean" (exit 0) with keys on disk.

A UTF-16 `~/.aws/credentials` and an `rclone.conf` holding a NUL byte were skipped as binary,
a key past the first MiB of `.bash_history` was not read, a flood of files in
`/etc/systemd/system` used up the one walk budget before `~/.aws` was reached, and with
`--root IMAGE` an absolute symlink inside the image led to the host's own files. Now each key
is found, every gap makes the audit "incomplete" (exit 74, never 0), and links are resolved
inside the image.
"""

from __future__ import annotations

import json
from pathlib import Path

from ghost_backup.audit.classify import SHAPE_AWS_KEY_ID, SHAPE_AWS_SECRET, fingerprint
from ghost_backup.audit.scan import MAX_FILES
from ghost_backup.errors import ExitCode
from tests.e2e.test_audit_host import _audit, _found, _fresh, _write
from tests.helpers import find_canaries


def _aws_credentials(key_id: str, secret: str) -> str:
    return (f"[default]\naws_access_key_id = {key_id}\n"
            f"aws_secret_access_key = {secret}\n")


def test_a_utf16_aws_credentials_file_is_read(tmp_path: Path) -> None:
    root = tmp_path / "host"
    key_id, secret = _fresh(SHAPE_AWS_KEY_ID), _fresh(SHAPE_AWS_SECRET)
    path = root / "root/.aws/credentials"
    path.parent.mkdir(parents=True)
    path.write_bytes(_aws_credentials(key_id, secret).encode("utf-16"))  # with a BOM
    result = _audit("--json", root=root)
    assert result.returncode == ExitCode.KEYS_ON_HOST, result.stdout
    assert _found(json.loads(result.stdout)) == {
        (str(path), 2, fingerprint(key_id)), (str(path), 3, fingerprint(secret))}
    assert find_canaries([key_id, secret], texts=[result.stdout, result.stderr]) == []


def test_an_rclone_conf_with_a_nul_byte_is_read(tmp_path: Path) -> None:
    root = tmp_path / "host"
    secret = _fresh(SHAPE_AWS_SECRET)
    path = root / "etc/rclone/rclone.conf"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[r2]\x00\ntype = s3\nsecret_access_key = " + secret.encode() + b"\n")
    result = _audit("--json", root=root)
    assert result.returncode == ExitCode.KEYS_ON_HOST, result.stdout
    assert _found(json.loads(result.stdout)) == {(str(path), 3, fingerprint(secret))}


def test_a_key_past_the_first_mib_of_a_shell_history_is_found(tmp_path: Path) -> None:
    root = tmp_path / "host"
    secret = _fresh(SHAPE_AWS_SECRET)
    history = "ls -la /var/mnt/storage\n" * 50_000  # 1.2 MB of harmless commands
    path = _write(root, "/root/.bash_history",
                  history + f"export AWS_SECRET_ACCESS_KEY={secret}\n", 0o600)
    result = _audit("--json", root=root)
    assert result.returncode == ExitCode.KEYS_ON_HOST, result.stdout
    assert _found(json.loads(result.stdout)) == {(str(path), 50_001, fingerprint(secret))}


def test_a_flood_of_units_does_not_starve_the_rest_and_makes_the_audit_incomplete(
    tmp_path: Path,
) -> None:
    root = tmp_path / "host"
    flood = root / "etc/systemd/system/flood"
    flood.mkdir(parents=True)
    for number in range(MAX_FILES + 10):
        (flood / f"u{number}.service").write_bytes(b"[Service]\n")
    key_id, secret = _fresh(SHAPE_AWS_KEY_ID), _fresh(SHAPE_AWS_SECRET)
    path = _write(root, "/root/.aws/credentials", _aws_credentials(key_id, secret), 0o600)
    result = _audit("--json", root=root)
    assert result.returncode == ExitCode.KEYS_ON_HOST, result.stdout
    report = json.loads(result.stdout)
    assert {f for f in _found(report) if f[0] == str(path)} == {
        (str(path), 2, fingerprint(key_id)), (str(path), 3, fingerprint(secret))}
    assert any("walk budget reached under /etc/systemd/system" in gap for gap in report["gaps"])
    (path).unlink()
    incomplete = _audit(root=root)
    assert incomplete.returncode == ExitCode.AUDIT_INCOMPLETE, incomplete.stdout
    assert "audit-host: incomplete: no S3/R2 key found in what was read" in incomplete.stdout


def test_an_image_s_absolute_symlinks_stay_inside_the_image(tmp_path: Path) -> None:
    host_home = tmp_path / "host-home"  # stands for the auditing host's own files
    host_secret = _fresh(SHAPE_AWS_SECRET)
    _write(host_home, "/.aws/credentials", f"aws_secret_access_key = {host_secret}\n", 0o600)
    image = tmp_path / "image"
    image.mkdir()
    (image / "root").symlink_to(host_home)  # absolute: means IMAGE/<that path>, not the host's
    image_secret = _fresh(SHAPE_AWS_SECRET)
    inside = _write(image, "/var/home/core/.aws/credentials",
                    f"aws_secret_access_key = {image_secret}\n", 0o600)
    (image / "home").symlink_to("/var/home")  # Fedora CoreOS / Silverblue layout
    result = _audit("--json", root=image)
    assert result.returncode == ExitCode.KEYS_ON_HOST, result.stdout
    assert _found(json.loads(result.stdout)) == {(str(inside), 1, fingerprint(image_secret))}
    assert fingerprint(host_secret) not in result.stdout
    assert find_canaries([host_secret, image_secret],
                         texts=[result.stdout, result.stderr]) == []
