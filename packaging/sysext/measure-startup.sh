#!/usr/bin/env bash
# Startup figure for docs/install-flatcar.md: `ghost-backup --version`, the bundle from the
# mounted image against the same command from the virtualenv; median of RUNS runs each, warm
# (page cache filled) and cold (page cache dropped before each run: root only, and it slows
# everything else on the machine for a moment).
# Usage (root): packaging/sysext/measure-startup.sh dist/ghost-backup-<v>-x86-64.raw [VENV] [RUNS]
set -euo pipefail
image=$(realpath "$1") venv=$(realpath "${2:-.venv}") runs=${3:-7}

exec unshare -m --propagation private -- bash -s "$image" "$venv" "$runs" <<'INNER'
set -euo pipefail
image=$1 venv=$2 runs=$3
mnt=$(mktemp -d)
mount -o loop,ro -t squashfs "$image" "$mnt"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
one() {   # cold|warm argv... -> "wall_ms cpu_ms" (cpu: user + system, less sensitive to load)
  local mode=$1; shift
  [[ $mode == cold ]] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
  local out; out=$(mktemp)
  /usr/bin/time -f '%e %U %S' -o "$out" env -i "$@" >/dev/null
  awk '{printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000}' "$out"; rm -f "$out"
}
for mode in warm cold; do
  env -i "$mnt/usr/bin/ghost-backup" --version >/dev/null
  env -i "$venv/bin/ghost-backup" --version >/dev/null
  b=$(mktemp) v=$(mktemp)
  for _ in $(seq "$runs"); do
    one "$mode" "$mnt/usr/bin/ghost-backup" --version >> "$b"
    one "$mode" "$venv/bin/ghost-backup" --version >> "$v"
  done
  printf '%s (median of %s): bundle from the image %s ms wall, %s ms CPU; ' "$mode" "$runs" \
    "$(cut -d' ' -f1 "$b" | median)" "$(cut -d' ' -f2 "$b" | median)"
  printf 'virtualenv %s ms wall, %s ms CPU\n' \
    "$(cut -d' ' -f1 "$v" | median)" "$(cut -d' ' -f2 "$v" | median)"
  rm -f "$b" "$v"
done
umount "$mnt"; rmdir "$mnt"
INNER
