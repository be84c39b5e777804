"""Boot a real systemd under ``systemd-nspawn --volatile=yes`` and run ghost-backup through
its units; collect what systemd itself saw (``systemctl show``, ``journalctl -o json``,
``StatusText`` samples, the timer) for the tests to assert on.

One boot runs the whole scenario (about 20 s): a successful run against a loopback S3
endpoint and the dev credential proxy on the host (the container shares the host's network),
a run against a second proxy that answers 503, a run stopped with ``systemctl stop`` while
rclone transfers, then the timer. A probe oneshot unit
(``systemd.unit=probe.service``) drives it from inside and writes everything into ``/out``.

Reusable: :class:`Install` says how ghost-backup reaches the container. :func:`venv_install`
binds this checkout's virtualenv and its interpreter and points ``ExecStart=`` at it with a
drop-in; the sysext build adds its own (the image as the only source of ghost-backup and
rclone) and runs the same scenario and assertions.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers import RCLONE, make_tree, render_toml
from tests.receiver import AlertReceiver, Received
from tests.support.devproxy import DevProxy, ProxyState
from tests.support.devstack import S3Server, start_s3_server

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "packaging" / "systemd"
TMPFILES_CONF = REPO / "packaging" / "tmpfiles.d" / "ghost-backup.conf"
UNIT_FILES = ("ghost-backup.service", "ghost-backup.timer", "ghost-backup-alert@.service",
              "ghost-backup-resume.service")
SERVICE = "ghost-backup.service"
ALERT_UNIT = "ghost-backup-alert@ghost-backup.service"
BUCKET = "ghost-system"
STOP_BUCKET = "ghost-stopped"
BOOT_TIMEOUT_SECONDS = 150
# rclone's --bwlimit keeps the first run going for a few seconds, so systemd shows progress
# in StatusText (the supervisor updates it at most every 5 s) and the journal gets several
# progress lines (stats every second).
SOURCE_FILES = 120
SOURCE_MAX_SIZE = 40_000
BWLIMIT = "300k"

# The probe: runs inside the container as a oneshot unit, writes evidence into /out.
PROBE_SCRIPT = r"""#!/bin/sh
set -u
out=/out
svc=ghost-backup.service
alert=ghost-backup-alert@ghost-backup.service
props="-p Result -p ExecMainStatus -p ExecMainCode -p InvocationID -p ActiveState -p NRestarts"
props="$props -p WatchdogUSec"

wait_done() {  # wait until $1 has run and ended (or waits to restart); sample StatusText
  for _ in $(seq 1 600); do
    state=$(systemctl show -p ActiveState -p SubState --value "$1" | tr '\n' ' ')
    systemctl show -p StatusText --value "$1" >> "$2"
    case "$state" in
      *auto-restart*) return 0 ;;
      active*|activating*|deactivating*|reloading*) sleep 0.1 ;;
      *) return 0 ;;
    esac
  done
}
start_and_wait() {  # $1 unit, $2 status file: start it, wait for its new invocation to end
  before=$(systemctl show -p InvocationID --value "$1")
  systemctl start --no-block "$1"
  for _ in $(seq 1 300); do
    [ "$(systemctl show -p InvocationID --value "$1")" != "$before" ] && break; sleep 0.05
  done
  wait_done "$1" "$2"
}
record() {  # $1 unit, $2 name: systemctl show and the invocation's journal as JSON
  systemctl show $props "$1" > "$out/$2.show"
  inv=$(systemctl show -p InvocationID --value "$1")
  journalctl --no-pager -o json _SYSTEMD_INVOCATION_ID="$inv" > "$out/$2.journal.json"
  if [ -e /run/ghost ]; then echo present; else echo absent; fi > "$out/$2.rundir"
}

__SETUP__
systemctl --version > "$out/systemd.version"

# 1: a backup that works.
start_and_wait "$svc" "$out/success.status"
record "$svc" success
# Its metrics: published by the root ExecStopPost=+ hook, readable by an unprivileged user
# (node_exporter runs as one), while the state directory itself is not (the control).
prom=/var/lib/ghost-backup-metrics/ghost_backup.prom
stat -c '%a %U' "$prom" /var/lib/ghost-backup-metrics > "$out/metrics.stat" 2>&1
setpriv --reuid=65534 --regid=65534 --clear-groups cat "$prom" > "$out/metrics.prom" \
  2> "$out/metrics.read-err"
echo $? > "$out/metrics.read-rc"
setpriv --reuid=65534 --regid=65534 --clear-groups cat /var/lib/ghost-backup/last-run.json \
  > /dev/null 2> "$out/state.read-err"
echo $? > "$out/state.read-rc"

# 2: the credential proxy answers 503 (PROXY_URL is the documented override).
systemctl set-environment PROXY_URL=__FAILING_PROXY__
start_and_wait "$svc" "$out/failure.status"
record "$svc" failure
systemctl unset-environment PROXY_URL
for _ in $(seq 1 300); do
  [ -n "$(systemctl show -p InvocationID --value "$alert")" ] && break; sleep 0.1
done
wait_done "$alert" /dev/null
record "$alert" alert

# 3: systemctl stop while rclone runs (a fresh bucket, so there is something to transfer).
systemctl set-environment BACKUP_BUCKET=__STOP_BUCKET__
systemctl start "$svc"   # Type=notify: returns at READY=1, before the database dumps
for _ in $(seq 1 300); do  # the sync's STATUS= says rclone runs
  case "$(systemctl show -p StatusText --value "$svc")" in syncing*) break;; esac; sleep 0.1
done
# Meanwhile an operator runs a command by hand (root): refused with 75 naming the unit.
gb=$(systemctl show -p ExecStart --value "$svc" | sed -n 's/^{ path=\([^ ;]*\) .*/\1/p')
"$gb" check > "$out/handrun.stdout" 2> "$out/handrun.stderr"
echo $? > "$out/handrun.rc"
ls -A /run/ghost-backup-manual > "$out/handrun.manual-dir" 2>&1
sleep 0.5
systemctl stop "$svc"
record "$svc" stopped
for p in /proc/[0-9]*; do cat "$p/comm" 2>/dev/null; done | grep -c '^rclone$' \
  > "$out/stopped.rclone"
systemctl unset-environment BACKUP_BUCKET

# 4: the timer.
systemctl start ghost-backup.timer
systemctl show -p NextElapseUSecRealtime -p TimersCalendar --value ghost-backup.timer \
  > "$out/timer.show"
systemctl list-timers --all --no-pager ghost-backup.timer > "$out/list-timers.txt"
systemd-analyze calendar --iterations=2 '*-*-* 02:00:00' > "$out/calendar.txt"
date +%s > "$out/now"

# 5: the host audit, as an operator runs it (root, outside the unit's sandbox), finds no
# long-lived key after the backups. The executable is the one the service runs ($gb).
"$gb" audit-host --json > "$out/audit.json" 2> "$out/audit.stderr"
echo $? > "$out/audit.rc"

# 6: what is left behind.
mkdir -p "$out/left"
cp -a /var/lib "$out/left/var-lib" 2>/dev/null
cp -aL /etc "$out/left/etc" 2>/dev/null

# 6b: the other way round: a hand-run command (here flock(1), as root) holds the lock when
# the unit starts: the unit exits 75 saying why, and would retry in 10 min.
systemctl reset-failed "$svc"   # the start rate limit (StartLimitBurst=3)
flock --no-fork /run/ghost-backup.lock sleep 30 &
holder=$!
sleep 0.3
start_and_wait "$svc" "$out/locked.status"
record "$svc" locked
kill $holder
systemctl stop "$svc"; systemctl reset-failed "$svc"

# 6: the same backup with the keys handed over by systemd (source systemd-credential):
# LoadCredential= under the unit's DynamicUser=. Last, so that the state and the files
# left behind (5) are those of the runs before.
systemctl reset-failed "$svc"   # also resets the start rate limit (StartLimitBurst=3)
mkdir -p "/run/systemd/system/$svc.d"
cat > "/run/systemd/system/$svc.d/60-credential.conf" <<'EOF'
[Service]
LoadCredential=r2-backup:/srv/ghost-test-credential.json
Environment=GHOST_BACKUP_CONFIG=/etc/ghost-backup/config-credential.toml
ExecStartPre=/bin/sh -c 'stat -c "credential file mode %%a" "$CREDENTIALS_DIRECTORY/r2-backup"'
EOF
systemctl daemon-reload
start_and_wait "$svc" "$out/credential.status"
record "$svc" credential
rm "/run/systemd/system/$svc.d/60-credential.conf"
systemctl daemon-reload
echo done > "$out/probe.done"
"""

PROBE_UNIT = """[Unit]
Description=ghost-backup system test probe
Wants=multi-user.target timers.target
After=multi-user.target timers.target

[Service]
Type=oneshot
ExecStart=/bin/sh /etc/ghost-probe.sh
StandardOutput=journal+console
StandardError=journal+console
ExecStopPost=/bin/systemctl poweroff --no-block
"""


@dataclass(frozen=True)
class Install:
    """How ghost-backup and rclone reach the container.

    ``ro_binds``: (host path, container path) pairs. ``dropin``: text of a drop-in given to
    both ghost-backup units (empty: none, the units run ``/usr/bin/ghost-backup``).
    ``service_dropin``: lines added to the backup unit's drop-in only (its ``ExecStopPost=``).
    ``rclone``: rclone's path inside the container (the config's ``rclone.binary``).
    ``units_dir``: where the unit files come from (None: the image brings them).
    ``setup``: shell lines the probe runs first (e.g. ``systemctl daemon-reload``).
    """

    name: str
    ro_binds: tuple[tuple[Path, Path], ...]
    rclone: str
    dropin: str = ""
    service_dropin: str = ""
    units_dir: Path | None = UNITS_DIR
    extra_args: tuple[str, ...] = ()
    setup: str = ""


def venv_install(venv: Path | None = None) -> Install:
    """Return the install that runs this checkout's virtualenv inside the container.

    The venv (an editable install of the checkout) and the interpreter it points to are bound
    read-only at their own paths. ``ExecStart=`` is replaced by a drop-in; whatever of them
    the unit would hide (under /root, /home, /tmp) is bound back in read-only.
    """
    venv = venv or Path(sys.prefix)
    interpreter_home = Path(sys.base_prefix).resolve()
    binds = [(REPO, REPO), (interpreter_home, interpreter_home)]
    if not venv.resolve().is_relative_to(REPO):
        binds.append((venv.resolve(), venv.resolve()))
    dropin = "[Service]\nExecStart=\nExecStart={exe} {args}\n".replace(
        "{exe}", str(venv / "bin" / "ghost-backup"))
    post_stop = "ExecStopPost=\nExecStopPost=-+{exe} post-stop\n".replace(
        "{exe}", str(venv / "bin" / "ghost-backup"))
    # The shipped unit hides /root and /home (ProtectHome=yes) and /tmp (PrivateTmp=yes) from
    # the service; a checkout, venv or interpreter living there (pyenv under /root, a CI clone
    # under /tmp) is bound back in read-only. ProtectHome=tmpfs (instead of yes) is the only
    # change to the shipped hardening, and only when something lives under a home.
    needed = sorted({REPO.resolve(), venv.resolve(), interpreter_home})
    hidden = [p for p in needed
              if any(p.is_relative_to(h) for h in (Path("/root"), Path("/home"),
                                                   Path("/tmp"), Path("/var/tmp")))]
    if any(p.is_relative_to(h) for p in hidden for h in (Path("/root"), Path("/home"))):
        dropin += "ProtectHome=tmpfs\n"
    for path in hidden:
        dropin += f"BindReadOnlyPaths={path}\n"
    return Install(name="venv", ro_binds=tuple(binds), rclone=str(venv / "bin" / "rclone"),
                   dropin=dropin, service_dropin=post_stop)


def cannot_boot_reason() -> str | None:
    """Return why this machine cannot boot a container here, or None if it can."""
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn is missing (apt-get install systemd-container)"
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    if not Path("/usr/lib/systemd/systemd").exists():
        return "the host has no systemd to boot (/usr/lib/systemd/systemd)"
    # A container that only runs /bin/true: if even that fails, the machine (an unprivileged
    # CI container, say) cannot run one, and that is not our units' fault.
    try:
        done = subprocess.run(
            ["timeout", "30", "systemd-nspawn", "--quiet", "--directory=/", "--volatile=yes",
             "--register=no", "--keep-unit", "/bin/true"],
            capture_output=True, text=True, timeout=40, check=False)
    except subprocess.TimeoutExpired:
        return "systemd-nspawn could not start a trivial container within 30 s"
    if done.returncode != 0:
        return f"systemd-nspawn cannot start a container here: {done.stderr.strip()[-300:]}"
    return None


@dataclass
class Evidence:
    """Everything the scenario produced, read back on the host."""

    out: Path
    boot_seconds: float
    console: str
    secrets: tuple[str, ...]
    proxy_requests: list[dict[str, Any]]
    failing_proxy_requests: list[dict[str, Any]]
    alerts: list[Received]
    s3: S3Server
    source: Path
    show: dict[str, dict[str, str]] = field(default_factory=dict)
    journal: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Keep pytest's failure output short: the evidence lives in ``out``."""
        return f"Evidence(out={self.out}, boot_seconds={self.boot_seconds:.1f})"

    def text(self, name: str) -> str:
        """Return the content of ``/out/<name>`` ('' if the probe never wrote it)."""
        path = self.out / name
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self, name: str, priority: int | None = None) -> list[str]:
        """Return the journal messages of run ``name`` (optionally of one priority)."""
        return [str(e.get("MESSAGE", "")) for e in self.journal.get(name, [])
                if priority is None or e.get("PRIORITY") == str(priority)]

    @property
    def bucket_root(self) -> Path:
        """Return the folder holding the whole bucket (mirror, history, database dumps)."""
        return self.s3.bucket_dir(BUCKET)

    @property
    def bucket_dir(self) -> Path:
        """Return the folder holding the mirror (`destination.path`, "current" by default)."""
        return self.bucket_root / "current"


def _parse_show(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _parse_journal(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)
            if isinstance(entry.get("MESSAGE"), list):  # journald's form for non-UTF-8 bytes
                entry["MESSAGE"] = bytes(entry["MESSAGE"]).decode("utf-8", "replace")
            entries.append(entry)
    return entries


def build_nspawn_argv(root: Path, install: Install) -> list[str]:
    """Return the ``timeout systemd-nspawn ...`` argv booting the host OS with ``root``'s files."""
    argv = ["timeout", "--kill-after=10", str(BOOT_TIMEOUT_SECONDS),
            "systemd-nspawn", "--quiet", "--directory=/", "--volatile=yes", "--register=no",
            "--keep-unit", f"--machine=ghost-test-{os.getpid()}",
            f"--bind={root / 'out'}:/out",
            f"--bind-ro={root / 'probe.sh'}:/etc/ghost-probe.sh",
            f"--bind-ro={root / 'config.toml'}:/etc/ghost-backup/config.toml",
            f"--bind-ro={root / 'config-credential.toml'}:"
            "/etc/ghost-backup/config-credential.toml",
            f"--bind-ro={root / 'credential.json'}:/srv/ghost-test-credential.json",
            f"--bind-ro={root / 'storage'}:/var/mnt/storage"]
    if install.units_dir is not None:  # the image brings its own under /usr/lib/tmpfiles.d
        argv.append(f"--bind-ro={TMPFILES_CONF}:/etc/tmpfiles.d/ghost-backup.conf")
    for path in sorted((root / "units").rglob("*")):
        if path.is_file():
            argv.append(f"--bind-ro={path}:/etc/systemd/system/{path.relative_to(root / 'units')}")
    argv += [f"--bind-ro={host}:{inside}" for host, inside in install.ro_binds]
    argv += list(install.extra_args)
    argv += ["--boot", "systemd.unit=probe.service", "systemd.firstboot=off"]
    return argv


def _write_units(units: Path, install: Install) -> None:
    units.mkdir()
    (units / "probe.service").write_text(PROBE_UNIT)
    if install.units_dir is not None:
        for name in UNIT_FILES:
            shutil.copy(install.units_dir / name, units / name)
    # The shipped WatchdogSec=1min would never fire in a 7 s run; 4 s proves that the
    # supervisor's pings (every WATCHDOG_USEC/2) reach systemd while rclone runs.
    (units / f"{SERVICE}.d").mkdir()
    (units / f"{SERVICE}.d" / "60-system-test-watchdog.conf").write_text(
        "[Service]\nWatchdogSec=4s\n")
    if install.dropin:
        for unit in ("ghost-backup.service", "ghost-backup-alert@.service"):
            exe_args = "run" if unit == SERVICE else "alert --unit %i.service"
            (units / f"{unit}.d").mkdir(exist_ok=True)
            extra = install.service_dropin if unit == SERVICE else ""
            (units / f"{unit}.d" / "50-system-test.conf").write_text(
                install.dropin.replace("{args}", exe_args) + extra)


def _base_config(install: Install, s3: S3Server, proxy: DevProxy,
                 receiver: AlertReceiver) -> dict[str, Any]:
    """Return the config every booted container starts from: these servers, short retries,
    a throttled rclone (so a run is still going when a test stops it)."""
    return {
        "destination": {"bucket": BUCKET, "endpoint": s3.endpoint},
        "credentials": {"url": proxy.url(), "max_attempts": 2, "max_total_seconds": 5,
                        "timeout_seconds": 3, "connect_timeout_seconds": 2},
        "rclone": {"binary": install.rclone, "stats_interval_seconds": 1,
                   "extra_args": ["--bwlimit", BWLIMIT]},
        "alerts": {"webhook_url": receiver.webhook_url,
                   "healthcheck_url": receiver.healthcheck_url, "attempts": 1,
                   "timeout_seconds": 5},
    }


def _write_credential(path: Path, s3: S3Server) -> None:
    """Write the JSON credential systemd hands over with LoadCredential= (valid 30 min)."""
    expires = datetime.now(UTC) + timedelta(minutes=30)
    path.write_text(json.dumps({
        "access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key,
        "expires_at": expires.isoformat(timespec="seconds")}))
    path.chmod(0o600)


@contextmanager
def _servers(tmp: Path) -> Iterator[tuple[S3Server, DevProxy, DevProxy, AlertReceiver]]:
    # R2-shaped canaries (32/64 hex, like real R2 keys), so the in-container audit-host
    # would find them if they leaked anywhere it looks.
    access, secret = secrets.token_hex(16), secrets.token_hex(32)
    s3 = start_s3_server(RCLONE, tmp / "s3", access, secret, log_path=tmp / "s3.log")
    proxy = DevProxy(ProxyState(access, secret, ttl_seconds=3600)).start()
    failing = DevProxy(ProxyState(access, secret, mode="status:503")).start()
    receiver = AlertReceiver()
    try:
        s3.bucket_dir(BUCKET)
        s3.bucket_dir(STOP_BUCKET)
        yield s3, proxy, failing, receiver
    finally:
        receiver.stop()
        failing.stop()
        proxy.stop()
        s3.stop()


# Ghost's SQLite database in the source: the unit dumps it through the backup API from the
# read-only source (ReadOnlyPaths=, and a read-only bind here) into its StateDirectory spool.
SQLITE_PATH = "ghost/content/data/ghost.db"
SQLITE_ROWS = 500
SQLITE_TABLE = ('\n[[database]]\nname = "ghost"\nkind = "sqlite"\n'
                f'path = "/var/mnt/storage/{SQLITE_PATH}"\n')


def _write_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE posts(id INTEGER PRIMARY KEY, html TEXT)")
        con.executemany("INSERT INTO posts VALUES (?, ?)",
                        ((i, f"<p>post {i}</p>" * 10) for i in range(SQLITE_ROWS)))
    con.close()
    path.chmod(0o644)


def run_scenario(tmp: Path, install: Install) -> Evidence:
    """Boot the container once and run the whole scenario; return what it left in /out."""
    root = tmp / "nspawn"
    (root / "out").mkdir(parents=True)
    source = root / "storage"
    make_tree(source, SOURCE_FILES, max_size=SOURCE_MAX_SIZE)
    (source / "ghost-compose").mkdir()
    (source / "ghost-compose" / ".env.production").write_text("database__password=not-synced\n")
    _write_sqlite(source / SQLITE_PATH)
    _write_units(root / "units", install)
    with _servers(tmp) as (s3, proxy, failing, receiver):
        (root / "config.toml").write_text(
            render_toml(_base_config(install, s3, proxy, receiver)) + SQLITE_TABLE)
        (root / "config-credential.toml").write_text(render_toml({
            "destination": {"bucket": BUCKET, "endpoint": s3.endpoint},
            "credentials": {"source": "systemd-credential"},
            "rclone": {"binary": install.rclone, "stats_interval_seconds": 1},
        }) + SQLITE_TABLE)
        _write_credential(root / "credential.json", s3)
        (root / "probe.sh").write_text(
            PROBE_SCRIPT.replace("__SETUP__", install.setup)
            .replace("__FAILING_PROXY__", failing.base_url)
            .replace("__STOP_BUCKET__", STOP_BUCKET))
        started = time.monotonic()
        done = subprocess.run(build_nspawn_argv(root, install), capture_output=True, text=True,
                              timeout=BOOT_TIMEOUT_SECONDS + 30, check=False)
        evidence = Evidence(
            out=root / "out",
            boot_seconds=time.monotonic() - started,
            console=done.stdout + done.stderr,
            secrets=(proxy.state.access_key_id, proxy.state.secret_access_key),
            proxy_requests=list(proxy.state.requests),
            failing_proxy_requests=list(failing.state.requests),
            alerts=receiver.received,
            s3=s3,
            source=source,
        )
    for name in ("success", "failure", "alert", "stopped", "locked", "credential"):
        evidence.show[name] = _parse_show(evidence.text(f"{name}.show"))
        evidence.journal[name] = _parse_journal(evidence.text(f"{name}.journal.json"))
    return evidence
