"""The supervisor's credential deadline holds for every command that streams rclone, not only
``run``'s sync: a restore, a dry run or a verify whose rclone ignores its own ``--max-duration``
(a listing it does not bound, a stuck transfer) is stopped before the keys expire, with a clear
temporary failure, and no rclone is left holding them."""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ghost_backup.commands import restore, verify
from ghost_backup.commands.context import Deps
from ghost_backup.commands.dry_run import run_dry_run
from ghost_backup.errors import TemporaryFailure
from ghost_backup.settings import Settings, parse_settings
from tests.unit.commands.test_sequencing import FakeProxy, Recorder, _deps, _no_leftovers

# rclone's one streaming call hangs (it notes its pid); every listing answers at once.
HANGING_RCLONE = """#!{python}
import os, sys, time
if sys.argv[1] == "version":
    print("rclone v1.75.2")
    sys.exit(0)
if sys.argv[1] == "lsf":
    print("a.txt\\t3")
    sys.exit(0)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hung.pid"), "w") as f:
    f.write(str(os.getpid()))
time.sleep(600)
"""
# Keys valid 62 s, stopped 60 s before: the supervisor's SIGTERM comes after about 2 s.
TTL, MARGIN = 62, 60


def _settings(world: dict[str, Path]) -> Settings:
    rclone = world["tools"] / "rclone"
    rclone.write_text(HANGING_RCLONE.format(python=sys.executable))
    rclone.chmod(stat.S_IRWXU)
    return parse_settings({
        "source": {"path": str(world["source"]), "require_mountpoint": False},
        "destination": {"bucket": "ghost-test", "endpoint": "http://127.0.0.1:9"},
        "credentials": {"url": "http://127.0.0.1:9/credentials/r2-backup",
                        "min_validity_seconds": 61, "safety_margin_seconds": MARGIN},
        "rclone": {"binary": str(rclone), "stall_timeout_seconds": 300},
        "runtime": {"dir": str(world["runtime"]), "manual_dir": str(world["runtime"]),
                    "lock_path": f"{world['runtime']}.lock"},
        "state": {"dir": str(world["state"])},
    }, {})


def _moving_deps() -> Deps:
    deps = _deps(FakeProxy(ttl_seconds=TTL), Recorder(Path("/nonexistent"), []))
    return Deps(**{**deps.__dict__, "monotonic": time.monotonic})


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize(("command", "says"), [
    (lambda s, d, w: restore.run_restore(s, d, restore.RestoreRequest(target=w["state"].parent
                                                                      / "restored")),
     "restore made no progress within a whole credential window"),
    (lambda s, d, w: run_dry_run(s, d), "the dry run did not finish before its credentials"),
    (lambda s, d, w: verify.run_verify(s, d, sample=None),
     "verify did not finish before its credentials expired"),
], ids=["restore", "dry-run", "verify"])
def test_a_streaming_rclone_is_stopped_before_its_keys_expire(
    world: dict[str, Path], command: Callable[[Settings, Deps, dict[str, Path]], object],
    says: str,
) -> None:
    settings = _settings(world)
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match=says):
        command(settings, _moving_deps(), world)
    assert time.monotonic() - started < 30  # the keys' 2 usable seconds, plus the TERM wait
    pid = int((world["tools"] / "hung.pid").read_text())
    assert _gone(pid)
    _no_leftovers(world)
