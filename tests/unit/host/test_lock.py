"""The one lock, outside both runtime directories: a second taker is refused at once and told
who holds it (its systemd unit when there is one), read from /proc/locks and the holder's
cgroup; the lock file needs no write access."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ghost_backup.errors import RuntimeUnsafe, TemporaryFailure
from ghost_backup.host import runtime

HOLDER = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
time.sleep(30)
"""
PROC_LOCKS = """\
1: POSIX  ADVISORY  WRITE 812 00:19:1234 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 00:1a:777 0 EOF
3: FLOCK  ADVISORY  WRITE 99 fd:01:777 0 EOF
"""


def test_parse_lock_holder_matches_device_and_inode_of_a_flock() -> None:
    assert runtime.parse_lock_holder(PROC_LOCKS, os.makedev(0, 0x1A), 777) == 4242
    assert runtime.parse_lock_holder(PROC_LOCKS, os.makedev(0xFD, 1), 777) == 99
    assert runtime.parse_lock_holder(PROC_LOCKS, os.makedev(0, 0x19), 1234) is None  # POSIX


@pytest.mark.parametrize(("cgroup", "unit"), [
    ("0::/system.slice/ghost-backup.service\n", "ghost-backup.service"),
    ("0::/system.slice/system-ghost\\x2dbackup\\x2dalert.slice/"
     "ghost-backup-alert@ghost-backup.service.service\n",
     "ghost-backup-alert@ghost-backup.service.service"),
    ("0::/user.slice/user-0.slice/session-3.scope\n", None),
    ("", None),
])
def test_parse_unit_from_cgroup(cgroup: str, unit: str | None) -> None:
    assert runtime.parse_unit_from_cgroup(cgroup) == unit


@pytest.mark.parametrize(("holder", "says"), [
    ((812, "ghost-backup.service"), "ghost-backup.service (pid 812) is running a backup; try "
                                    "again after it finishes (`systemctl status "
                                    "ghost-backup.service`)"),
    ((812, None), "another ghost-backup run (pid 812, a hand-run command?) holds /run/x.lock"),
    (None, "another ghost-backup process holds /run/x.lock"),
])
def test_format_lock_holder_names_the_unit_when_there_is_one(
    holder: tuple[int, str | None] | None, says: str
) -> None:
    assert says in runtime.format_lock_holder(Path("/run/x.lock"), holder)


def test_a_second_taker_is_refused_naming_the_holder_and_gets_it_once_released(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "ghost-backup.lock"
    lock.touch(mode=0o644)
    lock.chmod(0o444)  # flock needs no write access: the sandboxed unit cannot write /run
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)])
    try:
        deadline = time.monotonic() + 10
        while runtime.find_lock_holder(lock) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(TemporaryFailure, match=rf"\(pid {holder.pid}"):
            runtime.acquire_lock(lock)
    finally:
        holder.kill()
        holder.wait()
    fd = runtime.acquire_lock(lock)
    runtime.release_lock(fd)


def test_a_missing_lock_is_created_0644_by_whoever_may(tmp_path: Path) -> None:
    lock = tmp_path / "ghost-backup.lock"
    old = os.umask(0o022)
    try:
        runtime.release_lock(runtime.acquire_lock(lock))
    finally:
        os.umask(old)
    assert oct(lock.stat().st_mode & 0o777) == "0o644"


def test_a_missing_lock_that_cannot_be_created_names_the_tmpfiles_fix(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnsafe, match=r"systemd-tmpfiles --create ghost-backup\.conf"):
        runtime.acquire_lock(tmp_path / "missing-dir" / "ghost-backup.lock")


def test_a_symlinked_lock_is_refused(tmp_path: Path) -> None:
    (tmp_path / "target").touch()
    (tmp_path / "ghost-backup.lock").symlink_to(tmp_path / "target")
    with pytest.raises(RuntimeUnsafe, match="cannot open lock file"):
        runtime.acquire_lock(tmp_path / "ghost-backup.lock")


def test_runtime_dir_is_the_units_under_systemd_else_the_hand_run_one() -> None:
    unit, manual = Path("/run/ghost"), Path("/run/ghost-backup-manual")
    assert runtime.select_runtime_dir(unit, manual, {"RUNTIME_DIRECTORY": "/run/ghost"}) == unit
    assert runtime.select_runtime_dir(unit, manual, {}) == manual
