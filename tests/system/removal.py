"""Install ghost-backup on a booted systemd the way docs/install-flatcar.md says, remove it the
way its Removal section says, reboot, and record what systemd and the file systems still know
of it (tests/system/test_removal.py asserts on that).

The container is this machine's OS under ``systemd-nspawn --volatile=yes`` with /etc, /opt
and /var kept on the host between boots (a disk, as on a real host; /run and /tmp start
empty at every boot), one machine id, a Flatcar os-release over /etc/os-release and
``systemd-sysext.service`` enabled, as Flatcar has it. Three boots:

1. the doc's "Install by hand" block, run as written (see :func:`build_install_script` for
   what the test replaces: the release URL and the versions in the image names; the
   operator's ``$EDITOR`` writes the test's config), then its "Check it" block; what an
   older release put in /etc, two drop-ins an operator copies from the examples, a
   ``systemctl enable``; one real backup, so the state, metrics and timer stamp exist;
2. after the reboot the install must still be there (merged at boot); the operator turns the
   timer off (``systemctl mask --now``, as the doc says), then runs the doc's Removal block
   as written;
3. after the reboot: what is left.

systemd 252 (Debian 12) does not reload itself after a merge (255+ does): each boot's probe
runs ``systemctl daemon-reload`` first, and once after the install block, which the doc's
"systemd before 255" paragraph asks for.

The images are the real ``.raw`` files, downloaded by the doc's ``curl`` lines from a loopback
HTTP server holding the build's directory (the images and ``SHA256SUMS``, as a release does),
checked by its ``sha256sum -c``, linked into /etc/extensions/ and merged by
``systemctl restart systemd-sysext.service``. A container has no loop devices of its own, so
nspawn binds the host's /dev/loop-control in and a test drop-in on systemd-sysext.service
(not a file of the install) creates the /dev/loopN nodes before each merge. That keeps every
file the install writes where a Flatcar host has it; unpacked directory extensions (what
tests/sysext/test_boot.py uses) would not: systemd-sysext names a directory ``NAME.raw`` after
its full name and refuses it, and a directory under /var/lib/extensions/ is not what the doc
installs or removes.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers import make_tree, render_toml
from tests.sysext.image import FLATCAR_OS_RELEASE, SysextBuild
from tests.system.nspawn import BOOT_TIMEOUT_SECONDS, BUCKET, PROBE_UNIT, REPO, _servers

INSTALL_DOC = REPO / "docs" / "install-flatcar.md"

# Shell functions every boot's probe sources: what systemd and the file systems know of
# ghost-backup and rclone, into the directory $1. Read back by :func:`find_leftovers`.
COLLECT = r"""
collect() {
  d=$1
  mkdir -p "$d"
  systemctl list-unit-files --no-legend --no-pager 'ghost-backup*' > "$d/unit-files.txt" 2>&1
  systemctl list-units --all --no-legend --no-pager 'ghost-backup*' > "$d/units.txt" 2>&1
  systemctl list-timers --all --no-legend --no-pager > "$d/timers.txt" 2>&1
  systemd-sysext status --json=short > "$d/sysext-status.json" 2> "$d/sysext-status.err"
  systemctl show -p DropInPaths --value timers.target systemd-sysupdate.service \
    > "$d/dropins.txt" 2>&1
  # Every file of ours outside /usr (the data disk /var/mnt excepted), by name.
  find /etc /opt /var /run /usr/local -path /var/mnt -prune -o \
    \( -iname '*ghost*' -o -iname '*rclone*' -o -iname '*sysupdate*' \
       -o -path '/etc/extensions/*' -o -path '/run/extensions/*' \
       -o -path '/var/lib/extensions/*' \) -print 2>/dev/null | sort > "$d/files.txt"
  # Transfers of ours in any sysupdate directory, whatever their names.
  grep -rlE 'ghost-backup|rclone' /etc/sysupdate*.d /run/sysupdate*.d \
    /usr/local/lib/sysupdate*.d /usr/lib/sysupdate*.d > "$d/transfers.txt" 2>/dev/null
  # Every file the images carry, where /usr shows it.
  while read -r p; do
    if [ -e "/$p" ] || [ -L "/$p" ]; then echo "/$p"; fi
  done < /test/image-paths.txt > "$d/image-files.txt"
  command -v ghost-backup rclone > "$d/commands.txt" 2>&1
}
wait_active() {  # $1 unit: until active (5 s at most)
  for _ in $(seq 1 50); do
    [ "$(systemctl show -p ActiveState --value "$1")" = active ] && return 0; sleep 0.1
  done
}
# systemd 252 (Debian 12) does not act on the images' EXTENSION_RELOAD_MANAGER=1: after the
# boot-time merge the manager still has the unit set from before. systemd 255+ (Flatcar)
# reloads itself; here the probe does, first thing, in every boot.
systemctl daemon-reload
"""

BOOT1 = r"""#!/bin/sh
set -u
. /test/collect.sh
out=/out/boot1
mkdir -p "$out"
collect "$out/before"
# The documented install by hand, as the docs write it (the operator's $EDITOR writes the
# test's config).
(cd / && EDITOR="cp /test/config.toml" sh -eux /test/install.sh) > "$out/install.log" 2>&1
echo $? > "$out/install.rc"
systemctl daemon-reload   # systemd before 255, as the doc says (255+ reloads by itself)
wait_active ghost-backup.timer
systemctl show -p ActiveState -p UnitFileState -p FragmentPath ghost-backup.timer \
  > "$out/timer.show"
systemctl list-timers --all --no-pager ghost-backup.timer > "$out/list-timers.txt" 2>&1
sh -x /test/check.sh > "$out/check.log" 2>&1
# What an older release's Butane file wrote into /etc (the transfers, the sysupdate
# drop-in), which the Removal section also takes away.
mkdir -p /etc/sysupdate.ghost-backup.d /etc/sysupdate.rclone.d \
  /etc/systemd/system/systemd-sysupdate.service.d
cp /usr/lib/sysupdate.ghost-backup.d/ghost-backup.conf /etc/sysupdate.ghost-backup.d/
cp /usr/lib/sysupdate.rclone.d/rclone-sysext.conf /etc/sysupdate.rclone.d/rclone.conf
cp /usr/lib/systemd/system/systemd-sysupdate.service.d/ghost-backup.conf \
  /etc/systemd/system/systemd-sysupdate.service.d/
# Drop-ins an operator copies from the examples the image ships (docs: into
# /etc/systemd/system/UNIT.d/): the timer's schedule, the service's longer window.
ex=/usr/share/ghost-backup/examples
mkdir -p /etc/systemd/system/ghost-backup.timer.d /etc/systemd/system/ghost-backup.service.d
cp "$ex/ghost-backup.timer.d/10-schedule.conf.example" \
  /etc/systemd/system/ghost-backup.timer.d/10-schedule.conf
cp "$ex/ghost-backup.service.d/20-longer-window.conf.example" \
  /etc/systemd/system/ghost-backup.service.d/20-longer-window.conf
# An enable, which older docs asked for (the image's drop-in makes it unnecessary).
systemctl enable ghost-backup.timer
systemctl daemon-reload
# One real backup: its state, metrics and the timer's stamp are files the removal must take.
systemctl start ghost-backup.service
for _ in $(seq 1 600); do
  case "$(systemctl show -p ActiveState -p SubState --value ghost-backup.service | tr '\n' ' ')" in
    *auto-restart*) break ;;
    active*|activating*|deactivating*|reloading*) sleep 0.1 ;;
    *) break ;;
  esac
done
systemctl show -p Result -p ExecMainStatus ghost-backup.service > "$out/backup.show"
journalctl --no-pager -u ghost-backup.service > "$out/backup.journal" 2>&1
collect "$out/installed"
echo done > "$out/done"
"""

BOOT2 = r"""#!/bin/sh
set -u
. /test/collect.sh
out=/out/boot2
mkdir -p "$out"
wait_active ghost-backup.timer
systemctl show -p ActiveState ghost-backup.timer > "$out/timer.show"
collect "$out/installed"
# The operator had turned it off on this host, as the doc says (a mask in /etc).
systemctl mask --now ghost-backup.timer
# The documented removal, as the docs write it.
(cd / && sh -eux /test/removal.sh) > "$out/removal.log" 2>&1
echo $? > "$out/removal.rc"
collect "$out/removed"
echo done > "$out/done"
"""

BOOT3 = r"""#!/bin/sh
set -u
. /test/collect.sh
mkdir -p /out/boot3
collect /out/boot3/final
echo done > /out/boot3/done
"""

# systemd-sysext needs /dev/loopN nodes for the .raw images; a container's /dev has none. A
# drop-in of the test's platform (not of the install): create them before every merge.
LOOP_NODES_DROPIN = """[Service]
ExecStartPre=/bin/sh -c 'for i in $(seq 0 255); do \\
  [ -e /dev/loop$i ] || mknod /dev/loop$i b 7 $i; done'
"""


def markdown_code_blocks(text: str, heading: str) -> list[str]:
    """Return the indented (4-space) code blocks of the section ``## heading``, dedented."""
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = []
    current: list[str] | None = None
    for line in section.splitlines():
        if line.startswith("    ") or (current is not None and not line.strip()):
            current = [] if current is None else current
            current.append(line[4:])
        else:
            if current is not None:
                blocks.append("\n".join(current).strip("\n") + "\n")
            current = None
    if current is not None:
        blocks.append("\n".join(current).strip("\n") + "\n")
    return blocks


def _replace_once(text: str, pattern: str, new: str) -> str:
    replaced, count = re.subn(pattern, new, text, flags=re.M)
    if count == 0:
        raise AssertionError(f"the doc's block no longer matches {pattern!r}:\n{text}")
    return replaced


def build_install_script(doc: str, base_url: str, build: SysextBuild) -> str:
    """Return the doc's "Install by hand" block with what a test must change: the release URL
    (a loopback server holding the build) and the two image names (the build's versions)."""
    [block] = markdown_code_blocks(doc, "Install by hand (running hosts)")[:1]
    block = _replace_once(block, r"^URL=\S+$", f"URL={base_url}")
    block = _replace_once(block, r"ghost-backup-\d[\w.]*-x86-64\.raw", build.app_image.name)
    return _replace_once(block, r"rclone-\d[\w.]*-x86-64\.raw", build.rclone_image.name)


def build_check_script(doc: str) -> str:
    """Return the doc's "Check it" block, each command followed by a line with its status."""
    [block] = markdown_code_blocks(doc, "Install by hand (running hosts)")[1:2]
    lines = [line for line in block.splitlines() if line.strip()]
    return "".join(f"{line}\necho \"check {i} rc=$?\"\n" for i, line in enumerate(lines))


def build_removal_script(doc: str, *, skip: str | None = None) -> str:
    """Return the doc's Removal block; ``skip``: leave out the one line starting with it (the
    negative control)."""
    [block] = markdown_code_blocks(doc, "Removal")
    if skip is None:
        return block
    lines = block.splitlines(keepends=True)
    [at] = [i for i, line in enumerate(lines) if line.startswith(skip)]
    return "".join(lines[:at] + lines[at + 1:])


def image_paths(build: SysextBuild) -> list[str]:
    """Return every file and symlink of both images, relative to the root."""
    return sorted(str(p.relative_to(tree)) for tree in (build.app_tree, build.rclone_tree)
                  for p in tree.rglob("*") if p.is_symlink() or not p.is_dir())


def loop_skip_reason() -> str | None:
    """Return why the container cannot attach the .raw images here (None: it can)."""
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control on this machine: systemd-sysext cannot attach a .raw image"
    if shutil.which("curl") is None:
        return "curl is missing (the doc's install downloads with it; apt-get install curl)"
    return None


@contextmanager
def _serve_directory(path: Path) -> Iterator[str]:
    """Serve ``path`` over HTTP on loopback (a release's download directory); yield its URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Boots:
    """What one chain of boots left in its /out, read back on the host."""

    out: Path
    seconds: float
    console: str

    def text(self, name: str) -> str:
        """Return ``/out/<name>`` ('' if it was never written)."""
        path = self.out / name
        return path.read_text(errors="replace") if path.exists() else ""


def find_leftovers(state: Path, baseline: Path) -> list[str]:
    """Given two directories written by the probe's ``collect``, return every trace of
    ghost-backup or rclone ``state`` shows that ``baseline`` (before the install) did not."""

    def lines(where: Path, name: str) -> list[str]:
        path = where / name
        text = path.read_text(errors="replace") if path.exists() else ""
        return [line.strip() for line in text.splitlines() if line.strip()]

    found = [f"unit file known to systemd: {line}" for line in lines(state, "unit-files.txt")]
    found += [f"unit loaded in systemd: {line}" for line in lines(state, "units.txt")]
    found += [f"timer listed: {line}" for line in lines(state, "timers.txt")
              if "ghost-backup" in line]
    found += [f"drop-in: {line}" for line in lines(state, "dropins.txt")
              if "ghost-backup" in line]
    status_text = (state / "sysext-status.json").read_text()
    try:
        status = json.loads(status_text)
        merged = [h for h in status if h.get("extensions") not in ("none", [], None)]
    except (json.JSONDecodeError, AttributeError):
        merged = [status_text]
    found += [f"extension merged: {h}" for h in merged]
    for name, what in (("files.txt", "file"), ("transfers.txt", "sysupdate transfer")):
        before = set(lines(baseline, name))
        found += [f"{what}: {line}" for line in lines(state, name) if line not in before]
    before = set(lines(baseline, "image-files.txt"))
    visible = [line for line in lines(state, "image-files.txt") if line not in before]
    found += [f"image files visible under /usr: {len(visible)}, {', '.join(visible[:3])}"
              ] if visible else []
    return found


def _nspawn_argv(root: Path, keep: Path, out: Path, machine: str) -> list[str]:
    return ["timeout", "--kill-after=10", str(BOOT_TIMEOUT_SECONDS),
            "systemd-nspawn", "--quiet", "--directory=/", "--volatile=yes", "--register=no",
            "--keep-unit", f"--machine=rm-test-{os.getpid()}", f"--uuid={machine}",
            f"--bind={keep / 'etc'}:/etc", f"--bind={keep / 'opt'}:/opt",
            f"--bind={keep / 'var'}:/var",
            f"--bind-ro={root / 'os-release'}:/etc/os-release",
            f"--bind-ro={root / 'probe.service'}:/etc/systemd/system/probe.service",
            f"--bind-ro={root / 'test'}:/test", f"--bind={out}:/out",
            f"--bind-ro={root / 'storage'}:/var/mnt/storage",
            "--bind=/dev/loop-control",
            "--boot", "systemd.unit=probe.service", "systemd.firstboot=off"]


def _boot(root: Path, keep: Path, out: Path, machine: str, probe: str) -> str:
    (root / "test" / "probe.sh").write_text(probe)
    done = subprocess.run(_nspawn_argv(root, keep, out, machine), capture_output=True,
                          text=True, timeout=BOOT_TIMEOUT_SECONDS + 30, check=False)
    return f"--- boot (exit {done.returncode}) ---\n{done.stdout}{done.stderr}"


def prepare(root: Path, build: SysextBuild) -> Path:
    """Lay out the test files and the host's disk (/etc, /opt, /var) before the first boot;
    return the disk's directory."""
    test = root / "test"
    test.mkdir(parents=True)
    (test / "collect.sh").write_text(COLLECT)
    (test / "image-paths.txt").write_text("\n".join(image_paths(build)) + "\n")
    (root / "os-release").write_text(FLATCAR_OS_RELEASE)
    (root / "probe.service").write_text(
        PROBE_UNIT.replace("/etc/ghost-probe.sh", "/test/probe.sh"))
    make_tree(root / "storage", 12, max_size=2000)
    keep = root / "disk"
    for sub in ("etc", "opt", "var"):
        (keep / sub).mkdir(parents=True)
    # The platform, as on Flatcar: systemd-sysext.service merges /etc/extensions at boot.
    system = keep / "etc" / "systemd" / "system"
    (system / "sysinit.target.wants").mkdir(parents=True)
    (system / "sysinit.target.wants" / "systemd-sysext.service").symlink_to(
        "/usr/lib/systemd/system/systemd-sysext.service")
    (system / "systemd-sysext.service.d").mkdir()
    (system / "systemd-sysext.service.d" / "50-test-loop-nodes.conf").write_text(
        LOOP_NODES_DROPIN)
    return keep


def run_install(root: Path, build: SysextBuild, doc: str) -> tuple[Path, Boots]:
    """Boot 1: the documented install, its check, a backup. Return the disk and the boot."""
    keep = prepare(root, build)
    out = root / "out-install"
    out.mkdir()
    machine = uuid.uuid4().hex
    (root / "machine-id").write_text(machine)
    started = time.monotonic()
    with _servers(root) as (s3, proxy, _failing, _receiver), \
            _serve_directory(build.outdir) as base_url:
        (root / "test" / "config.toml").write_text(render_toml({
            "destination": {"bucket": BUCKET, "endpoint": s3.endpoint},
            "credentials": {"url": proxy.url(), "max_attempts": 2, "max_total_seconds": 5},
            "rclone": {"binary": "/usr/bin/rclone"},
            # The data disk here is a bind mount of a directory on the disk /var lives on:
            # same device, so it does not look like a mount point.
            "source": {"require_mountpoint": False},
        }))
        (root / "test" / "install.sh").write_text(build_install_script(doc, base_url, build))
        (root / "test" / "check.sh").write_text(build_check_script(doc))
        console = _boot(root, keep, out, machine, BOOT1)
    return keep, Boots(out=out, seconds=time.monotonic() - started, console=console)


def run_removal(root: Path, installed: Path, name: str, removal: str) -> Boots:
    """Boots 2 and 3 on a copy of the installed disk: the removal ``removal``, a reboot, what
    is left."""
    keep = root / f"disk-{name}"
    # cp -a: owners too (the state directory belongs to the unit's dynamic user).
    subprocess.run(["cp", "-a", str(installed), str(keep)], check=True, timeout=120)
    out = root / f"out-{name}"
    out.mkdir()
    (root / "test" / "removal.sh").write_text(removal)
    machine = (root / "machine-id").read_text()
    started = time.monotonic()
    console = _boot(root, keep, out, machine, BOOT2)
    console += _boot(root, keep, out, machine, BOOT3)
    return Boots(out=out, seconds=time.monotonic() - started, console=console)
