"""Hostile review, items 4 and 8: signals.

4. Every child dies with the supervisor: SIGKILL (no handler can run) or SIGHUP (an SSH
   session closing) during `check`'s `rclone lsf` or `restore --from-archive`'s listing
   leaves no rclone behind with the key in its environment.
8. SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 once killed the supervisor outright (no state file,
   no alert, the run dir left behind). Each is now an orderly stop like SIGTERM: exit 143,
   rclone stopped, state written, alert sent, the run dir shredded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import pytest

from ghost_backup.errors import ExitCode
from tests.e2e.test_lock_and_deaths import (
    _alive,
    _assert_clean,
    _fake_rclone,
    _signal_a_run_whose_rclone_ignores_sigterm,
    _wait_until,
)
from tests.helpers import Stack, make_tree

# A fake rclone whose listing (`lsf`) hangs; it notes its pid for the test.
HANGING_LISTING = """
import os, time
open(__file__.rsplit(".", 1)[0] + ".pid", "w").write(str(os.getpid()))
time.sleep(600)
"""


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                                    signal.SIGUSR2], ids=lambda s: signal.Signals(s).name)
def test_other_fatal_signals_stop_the_run_like_sigterm(
    stack: Stack, tmp_path: Path, signum: signal.Signals,
) -> None:
    proc, text, out, child = _signal_a_run_whose_rclone_ignores_sigterm(stack, tmp_path, signum)

    assert proc.returncode == ExitCode.TERMINATED, text
    assert f"stopping rclone (pid {child}) after {signal.Signals(signum).name}" in text
    assert not _alive(child)
    record = json.loads((stack.tmp / "state" / "last-run.json").read_text())
    assert record["exit_code"] == ExitCode.TERMINATED
    assert [h["exit_code"] for h in stack.alerts.webhooks()] == [ExitCode.TERMINATED]
    _assert_clean(stack, text, out)  # run dir shredded, only the lock left


def _listing_stack(stack: Stack, tmp_path: Path, command: str) -> list[str]:
    make_tree(stack.source, 3)
    fake = _fake_rclone(tmp_path, "hanging-lsf", HANGING_LISTING, all_listings=False)
    stack.overrides["rclone"] = {"binary": str(fake)}
    if command == "check":
        return ["check"]
    stack.overrides["destination"] = {"path": "current", "archive_path": "archive"}
    return ["restore", "--to", str(tmp_path / "restored"), "--from-archive", "2026-11-25"]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("command", ["check", "restore --from-archive"])
def test_rclone_listing_dies_with_its_supervisor(
    stack: Stack, tmp_path: Path, command: str, signum: signal.Signals,
) -> None:
    args = _listing_stack(stack, tmp_path, command)
    pid_file = tmp_path / "hanging-lsf.pid"
    proc = stack.popen(*args)
    _wait_until(lambda: pid_file.exists() and pid_file.read_text(), 20, "rclone lsf to start")
    child = int(pid_file.read_text())
    assert "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY" in Path(f"/proc/{child}/environ").read_text()

    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    try:
        _wait_until(lambda: not _alive(child), 5, "rclone lsf to die with its supervisor")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    if signum == signal.SIGHUP:  # handled: an orderly stop, nothing left behind
        assert proc.returncode == ExitCode.TERMINATED, err
        _assert_clean(stack, out, err)
    else:
        assert proc.returncode == -signal.SIGKILL
