"""Hostile review, item 2: no failure skips the state file, /fail and the webhook.

A bug (any unexpected exception) still writes state, alerts and shreds, then exits 70; a
runtime tmpfs that fills up after the fetch and a lock path that is a FIFO or a directory are
a clean 73. In process, with the fake proxy and fake rclone of test_sequencing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghost_backup.commands import run as run_command
from ghost_backup.errors import ExitCode
from ghost_backup.host.runtime import find_lock_holder
from tests.unit.commands.test_sequencing import (
    CANARY_ID,
    CANARY_SECRET,
    FakeProxy,
    Recorder,
    _calls,
    _deps,
    _no_leftovers,
    _rclone,
    _settings,
)


def _state(world: dict[str, Path]) -> dict[str, object]:
    record: dict[str, object] = json.loads((world["state"] / "last-run.json").read_text())
    return record


def test_a_bug_after_the_window_opened_still_records_alerts_shreds_and_exits_70(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen_dirs: list[int] = []

    def buggy_sync(_settings: object, _deps: object, window: run_command.Window,
                   *_window_and_backstop: object) -> None:
        seen_dirs.append(len(list(window.run_dir.parent.glob("run-*"))))
        raise RuntimeError(f"bug quoting {CANARY_SECRET}")

    monkeypatch.setattr(run_command, "_sync", buggy_sync)
    events: list[str] = []
    recorder = Recorder(world["runtime"], events)
    report = run_command.run_backup(_settings(world, _rclone(world["tools"])),
                                    _deps(FakeProxy(events=events), recorder))
    assert seen_dirs == [1]  # the config existed when the bug struck
    assert report.exit_code == ExitCode.INTERNAL
    assert "RuntimeError" in report.message
    assert CANARY_SECRET not in report.message
    assert events[-1] == "alert-finish failure 70"
    record = _state(world)
    assert record["exit_code"] == 70
    assert record["outcome"] == "failure"
    _no_leftovers(world)  # run dir shredded, no key in the state dir
    assert find_lock_holder(Path(f"{world['runtime']}.lock")) is None  # lock released


@contextlib.contextmanager
def _tiny_tmpfs(path: Path, inodes: int) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64k,nr_inodes={inodes},mode=0700",
                    "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
        path.rmdir()


@pytest.mark.parametrize(("inodes", "says"), [
    (1, "cannot create the run directory"),  # the root only: no room for run-<id>/
    (2, "cannot write the rclone config"),  # room for run-<id>/ but not rclone.conf
])
def test_a_runtime_tmpfs_full_after_the_fetch_is_73_with_state_and_alerts(
    world: dict[str, Path], tmp_path: Path, inodes: int, says: str,
) -> None:
    with _tiny_tmpfs(tmp_path / "run", inodes) as runtime:
        world = {**world, "runtime": runtime}
        events: list[str] = []
        proxy = FakeProxy(events=events)
        report = run_command.run_backup(_settings(world, _rclone(world["tools"])),
                                        _deps(proxy, Recorder(runtime, events)))
        assert report.exit_code == ExitCode.RUNTIME_UNSAFE, report.message
        assert says in report.message
        assert "fetch" in events  # the fetch happened; the window could not open
        assert events[-1] == "alert-finish failure 73"
        assert _state(world)["exit_code"] == 73
        assert sorted(p.name for p in runtime.iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_lock_path_that_is_not_a_plain_file_is_73_before_any_fetch(
    world: dict[str, Path], kind: str,
) -> None:
    runtime = world["runtime"]
    runtime.mkdir(mode=0o700)
    lock = Path(f"{runtime}.lock")  # runtime.lock_path in _settings
    if kind == "fifo":
        os.mkfifo(lock, 0o600)
    elif kind == "directory":
        lock.mkdir()
    else:
        lock.symlink_to(world["state"])
    events: list[str] = []
    proxy = FakeProxy(events=events)
    report = run_command.run_backup(_settings(world, _rclone(world["tools"])),
                                    _deps(proxy, Recorder(runtime, events)))
    assert report.exit_code == ExitCode.RUNTIME_UNSAFE, report.message
    assert "lock" in report.message
    assert "fetch" not in events
    assert events[-1] == "alert-finish failure 73"
    assert _state(world)["exit_code"] == 73
    assert CANARY_ID not in json.dumps(_state(world))
    if kind == "directory":
        lock.rmdir()
    else:
        lock.unlink()


# Hostile review, item 5: the runtime dir is checked by path, then used from a file descriptor.

def test_a_runtime_dir_below_a_directory_another_user_owns_is_73_before_any_fetch(
    world: dict[str, Path],
) -> None:
    parent = world["runtime"].with_name(world["runtime"].name + "-parent")
    parent.mkdir(mode=0o755)
    os.chown(parent, 12345, 12345)  # its owner could rename ghost/ and plant a link
    runtime = parent / "ghost"
    try:
        events: list[str] = []
        report = run_command.run_backup(
            _settings({**world, "runtime": runtime}, _rclone(world["tools"])),
            _deps(FakeProxy(events=events), Recorder(runtime, events)))
        assert report.exit_code == ExitCode.RUNTIME_UNSAFE, report.message
        assert f"{parent} is owned by uid 12345" in report.message
        assert "fetch" not in events
    finally:
        for path in sorted(parent.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        parent.rmdir()


class _SwappingProxy(FakeProxy):
    """Answers, then swaps the runtime dir for a link to persistent disk (a race the check
    by path alone cannot see)."""

    def __init__(self, events: list[str], runtime: Path, disk: Path) -> None:
        super().__init__(events=events)
        self.runtime, self.disk = runtime, disk

    def get(self, url: str, **kwargs: object) -> object:
        answer = super().get(url, **kwargs)
        self.runtime.rename(self.runtime.with_name(self.runtime.name + ".moved"))
        self.runtime.symlink_to(self.disk)
        return answer


def test_a_runtime_dir_swapped_for_a_link_during_the_fetch_never_reaches_persistent_disk(
    world: dict[str, Path], tmp_path: Path,
) -> None:
    disk = tmp_path / "persistent"
    disk.mkdir()
    runtime = world["runtime"]
    moved = runtime.with_name(runtime.name + ".moved")
    events: list[str] = []
    proxy = _SwappingProxy(events, runtime, disk)
    try:
        report = run_command.run_backup(_settings(world, _rclone(world["tools"])),
                                        _deps(proxy, Recorder(runtime, events)))
        assert report.exit_code == ExitCode.RUNTIME_UNSAFE, report.message
        assert "was replaced" in report.message
        assert list(disk.iterdir()) == []  # nothing written through the link
        assert sorted(p.name for p in moved.iterdir()) == []  # run dir shredded by fd
        # rclone never got the keys (the source listing before the fetch needs none)
        assert _calls(world["tools"]) == ["version nokeys", "lsf nokeys"]
    finally:
        if runtime.is_symlink():
            runtime.unlink()
        if moved.exists():
            moved.rename(runtime)
