#!/bin/sh
# Run inside `unshare -m --propagation private`: merge system extensions over this machine's
# /usr the way a Flatcar host does, and write what we want to assert on into OUT.
# Usage: merge-probe.sh OUT OS_RELEASE NAME=IMAGE... [-- UNIT...]
# Nothing leaves the private mount namespace: the host's /usr and /run are untouched.
set -u
out=$1 os_release=$2
shift 2
# systemd-sysext moves its overlay into place with shared propagation, as on a booted host.
mount --make-rshared /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/extensions
# Flatcar's identity for the extension-release check (ID=flatcar, SYSEXT_LEVEL=1.0).
cp "$os_release" /run/os-release
mount --bind /run/os-release /usr/lib/os-release
mount --bind /run/os-release /etc/os-release
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  # Installed as NAME.raw, as /etc/extensions/NAME.raw on Flatcar: the name must match the
  # image's extension-release.NAME, whatever version the file it points to carries.
  ln -s "${1#*=}" "/run/extensions/${1%%=*}.raw"
  shift
done
[ $# -gt 0 ] && shift
systemd-sysext merge >"$out/merge.log" 2>&1
echo $? >"$out/merge.rc"
systemd-sysext status --json=short >"$out/status.json" 2>>"$out/merge.log"
ghost-backup --version >"$out/version.txt" 2>&1
rclone version >"$out/rclone-version.txt" 2>&1
ls /usr/lib/systemd/system/timers.target.d >"$out/dropins.txt" 2>&1
if [ $# -gt 0 ]; then
  systemd-analyze verify --man=no "$@" >"$out/verify.log" 2>&1
  echo $? >"$out/verify.rc"
fi
# What only the images bring: their sysupdate transfers and the sysupdate drop-in.
ls /usr/lib/sysupdate.ghost-backup.d /usr/lib/sysupdate.rclone.d \
  /usr/lib/systemd/system/systemd-sysupdate.service.d >"$out/sysupdate.txt" 2>&1
# Removal as docs/install-flatcar.md does it (the links are here under /run/extensions):
# remove the links, refresh. Then nothing of ghost-backup may be left under /usr.
rm -f /run/extensions/*.raw
systemd-sysext refresh >>"$out/merge.log" 2>&1
for path in /usr/bin/ghost-backup /usr/bin/rclone /usr/lib/systemd/system/ghost-backup.timer \
    /usr/lib/systemd/system/ghost-backup.service /usr/lib/systemd/system/timers.target.d/10-ghost-backup.conf \
    /usr/lib/sysupdate.ghost-backup.d /usr/lib/sysupdate.rclone.d \
    /usr/lib/systemd/system/systemd-sysupdate.service.d/ghost-backup.conf \
    /usr/lib/tmpfiles.d/ghost-backup.conf; do
  [ -e "$path" ] && echo "$path"
done >"$out/left-after-removal.txt"
systemd-sysext unmerge >>"$out/merge.log" 2>&1
exit 0
