"""Hostile review, item 3 (classification): lines that once hid keys from `audit-host`.

A word such as `account` or `cloudflarestorage` anywhere on a line switched off the bare-key
search for the whole line; keys given as `NAME VALUE` or under names like `R2_SECRET` were not
assignments. Each line below holds a key id and a secret, and both must be found.
"""

from __future__ import annotations

import pytest

from ghost_backup.audit.classify import classify_line
from tests.unit.audit.test_audit import AWS_SECRET, R2_ID, R2_SECRET

ACCOUNT = "0123456789abcdef0123456789abcdef"
ENDPOINT = f"https://{ACCOUNT}.r2.cloudflarestorage.com"


@pytest.mark.parametrize("line", [
    f"rclone config create r2 s3 provider Cloudflare access_key_id {R2_ID} "
    f"secret_access_key {R2_SECRET} endpoint {ENDPOINT}",
    f"docker run -e R2_KEY_ID={R2_ID} -e R2_SECRET={R2_SECRET} -e R2_ENDPOINT={ENDPOINT} img",
    f'curl --aws-sigv4 "aws:amz:auto:s3" --user {R2_ID}:{R2_SECRET} {ENDPOINT}/bucket/x',
    f"aws configure set aws_access_key_id {R2_ID} && "
    f"aws configure set aws_secret_access_key {R2_SECRET} # prod account",
])
def test_keys_on_a_line_that_mentions_an_account_or_an_r2_endpoint_are_found(line: str) -> None:
    found = {hit.fingerprint for hit in classify_line(line)}
    assert len(found) >= 2, classify_line(line)


def test_a_spaced_name_with_a_non_key_value_is_prose_not_a_finding() -> None:
    assert classify_line("set secret_access_key in the config file, then run the backup") == ()
    assert classify_line(f"aws configure set aws_secret_access_key {AWS_SECRET}") != ()
