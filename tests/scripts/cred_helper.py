"""A credential helper in the AWS ``credential_process`` style, for the ``command`` source tests.

Usage: ``cred_helper.py KEYS_FILE MODE``. KEYS_FILE (0600 JSON: access_key_id,
secret_access_key, session_token, ttl_seconds) keeps the keys out of argv. Like real helpers it
chats on stderr, here deliberately echoing the access key so the test can prove redaction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def main() -> int:
    keys = json.loads(Path(sys.argv[1]).read_text())
    mode = sys.argv[2]
    run_id = os.environ.get("GHOST_BACKUP_RUN_ID", "?")
    sys.stderr.write(f"broker: issuing keys for run {run_id} (key {keys['access_key_id']})\n")
    expiry = datetime.now(UTC) + timedelta(seconds=keys.get("ttl_seconds", 1800))
    answer: dict[str, object] = {
        "Version": 1,
        "AccessKeyId": keys["access_key_id"],
        "SecretAccessKey": keys["secret_access_key"],
        "SessionToken": keys["session_token"],
        "Expiration": expiry.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if mode == "exit1":
        sys.stderr.write(f"broker: permission denied for {keys['secret_access_key']}\n")
        return 1
    if mode == "garbage":
        sys.stdout.write(f"AccessKeyId={keys['access_key_id']} {keys['secret_access_key']}\n")
        return 0
    if mode == "timeout":
        # A grandchild holding stdout open too: only killing the process group ends it.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(60)
        return 0
    if mode == "no-expiration":
        del answer["Expiration"]
    if mode == "env":
        sys.stderr.write("broker: env " + ",".join(sorted(os.environ)) + "\n")
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
