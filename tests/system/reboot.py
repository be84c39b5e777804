"""A reboot in the middle of a backup, under a real systemd: two boots of the same container
(``systemd-nspawn --volatile=yes`` with /var/lib and the journal kept on the host between
them, and one machine id).

Boot 1: the probe starts a slow backup and, once rclone transfers, runs ``systemctl reboot``
(nspawn then exits). Boot 2: nobody starts anything; ghost-backup-resume.service, pulled in by
timers.target through the image's drop-in, must find the interrupted run's marker and start
the backup, which succeeds. The probe of boot 2 records both boots' evidence in /out.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import make_tree, render_toml
from tests.receiver import Received
from tests.support.devstack import S3Server
from tests.system.nspawn import (
    BOOT_TIMEOUT_SECONDS,
    PROBE_UNIT,
    REPO,
    SOURCE_FILES,
    SOURCE_MAX_SIZE,
    Install,
    _base_config,
    _parse_journal,
    _parse_show,
    _servers,
    _write_credential,
    _write_units,
    build_nspawn_argv,
)

TIMERS_DROPIN = REPO / "packaging" / "sysext" / "10-ghost-backup.conf"

BOOT1 = r"""#!/bin/sh
set -u
svc=ghost-backup.service
systemctl start "$svc"   # Type=notify: returns at READY=1, when rclone has started
sleep 1.5
systemctl show -p InvocationID --value "$svc" > /out/boot1.invocation
systemctl show -p ActiveState --value "$svc" > /out/boot1.active
echo rebooting > /out/boot1.done
systemctl reboot
sleep 120
"""

BOOT2 = r"""#!/bin/sh
set -u
out=/out
svc=ghost-backup.service
props="-p Result -p ExecMainStatus -p ExecMainCode -p InvocationID -p ActiveState -p NRestarts"
# Nobody starts it: the resume unit must.
for _ in $(seq 1 600); do
  [ -n "$(systemctl show -p InvocationID --value "$svc")" ] && break; sleep 0.1
done
for _ in $(seq 1 900); do
  case "$(systemctl show -p ActiveState --value "$svc")" in
    active|activating|deactivating|reloading) sleep 0.1 ;;
    *) break ;;
  esac
done
systemctl show $props "$svc" > "$out/resumed.show"
inv=$(systemctl show -p InvocationID --value "$svc")
journalctl --no-pager -o json _SYSTEMD_INVOCATION_ID="$inv" > "$out/resumed.journal.json"
systemctl show -p Result -p ActiveState -p ConditionResult ghost-backup-resume.service \
  > "$out/resume-unit.show"
inv1=$(cat /out/boot1.invocation)
journalctl -m --no-pager -o json _SYSTEMD_INVOCATION_ID="$inv1" \
  > "$out/interrupted.journal.json"
journalctl -m --no-pager -o json _PID=1 UNIT=ghost-backup.service \
  > "$out/pid1-about-unit.json"
journalctl -m --no-pager -o json _SYSTEMD_UNIT=ghost-backup-alert@ghost-backup.service.service \
  > "$out/alert-unit.journal.json"
ls -A /var/lib/ghost-backup/ > "$out/state-files.txt"
cp /var/lib/ghost-backup/last-run.json "$out/last-run.json"
echo done > "$out/probe.done"
"""


@dataclass
class RebootEvidence:
    """What both boots left, read back on the host."""

    out: Path
    seconds: float
    console: str
    alerts: list[Received]
    proxy_requests: list[dict[str, object]]
    s3: S3Server
    source: Path
    secrets: tuple[str, ...]

    def text(self, name: str) -> str:
        """Return ``/out/<name>`` ('' if it was never written)."""
        path = self.out / name
        return path.read_text(errors="replace") if path.exists() else ""

    def show(self, name: str) -> dict[str, str]:
        """Return a ``systemctl show`` file as a dict."""
        return _parse_show(self.text(name))

    def journal(self, name: str) -> list[dict[str, object]]:
        """Return a ``journalctl -o json`` file's entries."""
        return _parse_journal(self.text(name))


def run_reboot_scenario(tmp: Path, install: Install) -> RebootEvidence:
    """Boot twice (a reboot during a run in between); return what the second boot recorded."""
    root = tmp / "reboot"
    (root / "out").mkdir(parents=True)
    keep = root / "keep"  # /var/lib and the journal, on the host between the boots
    (keep / "var-lib").mkdir(parents=True)
    (keep / "journal").mkdir()
    source = root / "storage"
    make_tree(source, SOURCE_FILES, max_size=SOURCE_MAX_SIZE)
    _write_units(root / "units", install)
    (root / "units" / "timers.target.d").mkdir()
    shutil.copy(TIMERS_DROPIN, root / "units" / "timers.target.d" / "10-ghost-backup.conf")
    machine = str(uuid.uuid4()).replace("-", "")  # one machine id: one journal directory
    with _servers(tmp) as (s3, proxy, _failing, receiver):
        (root / "config.toml").write_text(render_toml(_base_config(install, s3, proxy,
                                                                   receiver)))
        (root / "config-credential.toml").write_text("")
        _write_credential(root / "credential.json", s3)
        started = time.monotonic()
        console = ""
        for script, probe_unit in ((BOOT1, PROBE_UNIT.replace(
                "ExecStopPost=/bin/systemctl poweroff --no-block\n", "")), (BOOT2, PROBE_UNIT)):
            (root / "probe.sh").write_text(script)
            (root / "units" / "probe.service").write_text(probe_unit)
            argv = build_nspawn_argv(root, install)
            argv[argv.index("--boot"):argv.index("--boot")] = [
                f"--uuid={machine}", f"--bind={keep / 'var-lib'}:/var/lib",
                f"--bind={keep / 'journal'}:/var/log/journal"]
            done = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=BOOT_TIMEOUT_SECONDS + 30, check=False)
            console += f"--- boot (exit {done.returncode}) ---\n{done.stdout}{done.stderr}"
        return RebootEvidence(
            out=root / "out", seconds=time.monotonic() - started, console=console,
            alerts=receiver.received, proxy_requests=list(proxy.state.requests), s3=s3,
            source=source,
            secrets=(proxy.state.access_key_id, proxy.state.secret_access_key))
