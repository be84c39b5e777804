"""Hostile review, item 1: restore never writes through a symlink in its target.

rclone's local backend creates directories and files through symlinked directories in the
target, so whoever plants a link there, or swaps the target itself, chooses where root's
files land. Restore creates its target itself (0700, after the credential fetch, refusing
anything that appeared meanwhile), refuses an existing one unless --force, refuses with
--force a tree holding a symlink or a directory another user can write to, and refuses a
target below a directory another user could rename it in.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from tests.helpers import Stack, find_canaries, make_tree


def _backed_up(stack: Stack) -> None:
    make_tree(stack.source, 14)  # dir0..dir6, each with sub0..sub2
    done = stack.run("run")
    assert done.returncode == 0, done.stderr


def _elsewhere(stack: Stack) -> Path:
    """The place an attacker wants root's files to land (stands for /etc, ~root/.ssh...)."""
    path = stack.tmp / "elsewhere"
    path.mkdir()
    return path


def _clean(stack: Stack, *texts: str) -> None:
    assert find_canaries(stack.secrets, texts=texts,
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_force_refuses_a_target_holding_a_symlinked_directory(stack: Stack) -> None:
    _backed_up(stack)
    elsewhere = _elsewhere(stack)
    target = stack.tmp / "restore"
    target.mkdir(mode=0o700)
    (target / "dir0").symlink_to(elsewhere)
    done = stack.run("restore", "--to", str(target), "--force")
    assert done.returncode == 64, done.stderr
    assert "dir0 is a symlink" in done.stderr
    assert list(elsewhere.iterdir()) == []
    _clean(stack, done.stderr)


def test_force_refuses_a_tree_another_user_can_write_into(stack: Stack) -> None:
    _backed_up(stack)
    target = stack.tmp / "restore"
    (target / "dir1").mkdir(parents=True, mode=0o700)
    (target / "dir1").chmod(0o777)  # anyone could plant a link in it during the copy
    done = stack.run("restore", "--to", str(target), "--force")
    assert done.returncode == 64, done.stderr
    assert "writable by every user" in done.stderr


def test_force_with_path_checks_the_way_to_the_path_and_below_it(stack: Stack) -> None:
    _backed_up(stack)
    elsewhere = _elsewhere(stack)
    target = stack.tmp / "live"
    (target / "dir5").mkdir(parents=True, mode=0o700)
    os.chown(target / "dir5", 12345, 12345)  # another user's data, not on our way
    (target / "dir0").symlink_to(elsewhere)
    refused = stack.run("restore", "--to", str(target), "--path", "dir0/sub1", "--force")
    assert refused.returncode == 64, refused.stderr
    assert "dir0 is a symlink" in refused.stderr
    (target / "dir0").unlink()
    done = stack.run("restore", "--to", str(target), "--path", "dir1", "--force")
    assert done.returncode == 0, done.stderr
    assert list(elsewhere.iterdir()) == []
    assert any((target / "dir1").rglob("*.dat"))
    _clean(stack, refused.stderr, done.stderr)


def test_an_existing_target_is_refused_without_force_even_when_empty(stack: Stack) -> None:
    _backed_up(stack)
    planted = stack.tmp / "restore"
    planted.mkdir(mode=0o777)  # created ahead by someone else, to fill with links later
    before = len(stack.proxy.state.requests)
    done = stack.run("restore", "--to", str(planted))
    assert done.returncode == 64, done.stderr
    assert "already exists" in done.stderr
    assert len(stack.proxy.state.requests) == before  # refused before any credential request


def test_a_target_planted_during_the_credential_fetch_is_refused(stack: Stack) -> None:
    _backed_up(stack)
    elsewhere = _elsewhere(stack)
    target = stack.tmp / "restore"
    stack.proxy.state.mode = "slow-headers:2"
    proc = stack.popen("restore", "--to", str(target))
    deadline = time.monotonic() + 10
    while len(stack.proxy.state.requests) < 2 and time.monotonic() < deadline:  # run + ours
        time.sleep(0.05)
    target.mkdir(mode=0o777)
    for name in ("dir0", "dir1", "dir2"):
        (target / name).symlink_to(elsewhere)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 64, err
    assert "appeared while credentials were fetched" in err
    assert list(elsewhere.iterdir()) == []
    _clean(stack, out, err)


def test_a_target_that_is_a_symlink_is_refused_even_with_force(stack: Stack) -> None:
    _backed_up(stack)
    elsewhere = _elsewhere(stack)
    link = stack.tmp / "restore"
    link.symlink_to(elsewhere)
    done = stack.run("restore", "--to", str(link), "--force")
    assert done.returncode == 64, done.stderr
    assert "is a symlink" in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_target_below_a_directory_others_can_rename_in_is_refused(stack: Stack) -> None:
    _backed_up(stack)
    shared = stack.tmp / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable without the sticky bit: our target can be swapped
    done = stack.run("restore", "--to", str(shared / "restore"))
    assert done.returncode == 64, done.stderr
    assert "writable by every user" in done.stderr
    sticky = stack.tmp / "sticky"
    sticky.mkdir()
    sticky.chmod(0o777 | stat.S_ISVTX)  # like /tmp: others may not rename what we create
    ok = stack.run("restore", "--to", str(sticky / "restore"))
    assert ok.returncode == 0, ok.stderr
    mode = (sticky / "restore").stat().st_mode
    assert stat.S_IMODE(mode) == 0o700  # created by restore itself, private
    _clean(stack, done.stderr, ok.stderr)
