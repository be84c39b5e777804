#!/usr/bin/env bash
# The ticket's shell flow, written the way an SRE would: fetch JSON with curl, parse it with
# jq, export the keys, run rclone. It is the baseline ghost-backup is measured against, not
# something to deploy (no expiry check, no cleanup, no alerting, no progress parsing).
#
#   PROXY_URL=http://127.0.0.1:PORT/credentials/r2-backup baseline.sh rclone sync SRC DST ...
set -euo pipefail
creds=$(curl -sf "$PROXY_URL")
RCLONE_CONFIG_R2_ACCESS_KEY_ID=$(jq -r '.access_key_id' <<<"$creds")
RCLONE_CONFIG_R2_SECRET_ACCESS_KEY=$(jq -r '.secret_access_key' <<<"$creds")
export RCLONE_CONFIG_R2_ACCESS_KEY_ID RCLONE_CONFIG_R2_SECRET_ACCESS_KEY
if [[ -z "$RCLONE_CONFIG_R2_ACCESS_KEY_ID" ]]; then
  echo "ERROR: failed to fetch R2 credentials" >&2
  exit 1
fi
"$@"
