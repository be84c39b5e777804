"""Nothing lost at the destination: the source guard, the deletion guard, the archive, and
the credential window (--max-duration). Real rclone against the loopback S3 endpoint."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ghost_backup.errors import ExitCode
from tests.helpers import Stack, error_lines, find_canaries, make_tree


def _objects(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_no_canaries(stack: Stack, *texts: str) -> None:
    assert find_canaries(stack.secrets, texts=[*texts, *stack.alerts.bodies()],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def _assert_alerted(stack: Stack, code: ExitCode, says: str) -> None:
    hooks = stack.alerts.webhooks()
    assert [(h["outcome"], h["exit_code"]) for h in hooks][-1] == ("failure", code)
    assert says in hooks[-1]["message"]
    assert stack.alerts.ping_actions()[-1] == f"exit {int(code)}"


def _missing(stack: Stack) -> None:
    shutil.rmtree(stack.source)


def _emptied(stack: Stack) -> None:
    shutil.rmtree(stack.source)
    stack.source.mkdir()


def _only_empty_dirs(stack: Stack) -> None:
    for path in stack.source.rglob("*.dat"):
        path.unlink()


def _only_excluded_files(stack: Stack) -> None:
    _emptied(stack)
    (stack.source / "ghost-compose").mkdir()
    (stack.source / "ghost-compose" / ".env.production").write_text("DB_PASSWORD=x\n")


def _only_symlinks(stack: Stack) -> None:
    _emptied(stack)
    outside = stack.tmp / "outside"
    outside.mkdir()
    (outside / "real.txt").write_text("not in the source\n")
    (stack.source / "link.txt").symlink_to(outside / "real.txt")
    (stack.source / "linkdir").symlink_to(outside)


def _not_a_mountpoint(stack: Stack) -> None:
    stack.overrides["source"] = {"require_mountpoint": True}


def _sentinel_missing(stack: Stack) -> None:
    stack.overrides["source"] = {"sentinel": ".ghost-backup-sentinel"}


SOURCE_REFUSALS: dict[str, tuple[Callable[[Stack], None], str]] = {
    "source missing": (_missing, "does not exist"),
    "source empty": (_emptied, "holds no files"),
    "source holds only empty directories": (_only_empty_dirs, "holds no files"),
    "source holds only excluded files": (_only_excluded_files,
                                         "holds no files rclone would copy"),
    "source holds only symlinks": (_only_symlinks, "holds no files rclone would copy"),
    "source not a mount point": (_not_a_mountpoint, "not a mount point"),
    "sentinel file missing": (_sentinel_missing, "sentinel file .ghost-backup-sentinel missing"),
}


@pytest.mark.parametrize(("spoil", "says"), SOURCE_REFUSALS.values(),
                         ids=SOURCE_REFUSALS.keys())
def test_unsafe_source_against_a_full_bucket_deletes_nothing_exits_66_and_alerts(
    stack: Stack, spoil: Callable[[Stack], None], says: str
) -> None:
    make_tree(stack.source, 12)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    backed_up = _objects(stack.bucket_dir)
    assert len(backed_up) == 12

    spoil(stack)
    done = stack.run("run")

    assert done.returncode == ExitCode.SOURCE_REFUSED, done.stderr
    assert _objects(stack.bucket_dir) == backed_up
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    assert says in errors[0]
    assert "rclone started" not in done.stderr
    assert len(stack.proxy.state.requests) == 1  # only the first run asked for keys
    _assert_alerted(stack, ExitCode.SOURCE_REFUSED, says)
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_no_canaries(stack, first.stderr, done.stderr)


def test_sentinel_present_lets_the_sync_run(stack: Stack) -> None:
    make_tree(stack.source, 3)
    (stack.source / ".ghost-backup-sentinel").write_text("the real data disk\n")
    stack.overrides["source"] = {"sentinel": ".ghost-backup-sentinel"}
    done = stack.run("run")
    assert done.returncode == 0, done.stderr
    assert len(_objects(stack.bucket_dir)) == 4


def test_source_whose_only_files_sit_on_a_nested_mount_is_empty_to_rclone_and_refused(
    stack: Stack,
) -> None:
    make_tree(stack.source, 5)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    backed_up = _objects(stack.bucket_dir)
    _emptied(stack)
    mount = stack.source / "mnt" / "sub"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], check=True)
    try:
        (mount / "inmount.txt").write_text("on another filesystem\n")
        done = stack.run("run")
    finally:
        subprocess.run(["umount", str(mount)], check=True)

    assert done.returncode == ExitCode.SOURCE_REFUSED, done.stderr
    assert "holds no files rclone would copy" in done.stderr
    assert _objects(stack.bucket_dir) == backed_up
    assert len(stack.proxy.state.requests) == 1


def test_a_shrunken_source_is_refused_until_allow_shrink_and_says_before_and_after(
    stack: Stack,
) -> None:
    files = make_tree(stack.source, 30)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    for path in files[:20]:
        path.unlink()

    refused = stack.run("run")

    assert refused.returncode == ExitCode.SOURCE_REFUSED, refused.stderr
    [error] = error_lines(refused.stderr)
    assert "shrink guard: the source holds 10 files" in error
    assert "of the 30 files" in error
    assert "last successful run" in error
    assert len(_objects(stack.bucket_dir)) == 30
    assert len(stack.proxy.state.requests) == 1  # refused before any key was asked for

    allowed = stack.run("run", "--allow-shrink")

    assert allowed.returncode == 0, allowed.stderr
    warnings = [line for line in allowed.stderr.splitlines() if line.startswith("<4>")]
    assert any("--allow-shrink: the source holds 10 files" in w for w in warnings), warnings
    assert any("--allow-shrink: the sync would delete 20 of the 30 objects" in w
               for w in warnings), warnings
    assert len(_objects(stack.bucket_dir)) == 10
    _assert_no_canaries(stack, first.stderr, refused.stderr, allowed.stderr)


def test_shrink_guard_without_a_state_file_compares_with_the_backup(stack: Stack) -> None:
    files = make_tree(stack.source, 30)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    shutil.rmtree(stack.tmp / "state")  # a reinstall, a new machine
    for path in files[:20]:
        path.unlink()

    done = stack.run("run")

    assert done.returncode == ExitCode.SOURCE_REFUSED, done.stderr
    [error] = error_lines(done.stderr)
    assert "shrink guard: the source holds 10 files" in error
    assert "of the backup" in error
    assert len(_objects(stack.bucket_dir)) == 30


def test_deletion_guard_as_a_percentage_refuses_before_deleting_anything_with_79(
    stack: Stack,
) -> None:
    files = make_tree(stack.source, 30)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    for path in files[:5]:  # 25 of 30 left: no shrink, but 5 deletions > 10% of 30
        path.unlink()
    shutil.rmtree(stack.tmp / "state")  # the percentage needs no state file

    done = stack.run("run")

    assert done.returncode == ExitCode.DELETE_GUARD, done.stderr
    [error] = error_lines(done.stderr)
    assert "would delete 5 of the 30 objects in the backup; rclone.max_delete = '10%' " \
        "allows 3" in error
    assert "rclone started" not in done.stderr
    assert len(_objects(stack.bucket_dir)) == 30  # nothing deleted
    _assert_alerted(stack, ExitCode.DELETE_GUARD, "deletion guard")
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_no_canaries(stack, first.stderr, done.stderr)


def test_archive_path_keeps_deleted_and_overwritten_objects_under_a_dated_prefix(
    stack: Stack,
) -> None:
    files = make_tree(stack.source, 6)
    stack.overrides["destination"] = {"path": "current", "archive_path": "archive"}
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    deleted, changed = files[0], files[1]
    old_content = changed.read_bytes()
    deleted_content = deleted.read_bytes()
    deleted.unlink()
    changed.write_bytes(b"new content")

    second = stack.run("run")

    assert second.returncode == 0, second.stderr
    current = stack.bucket_root / "current"
    assert not (current / deleted.relative_to(stack.source)).exists()
    assert (current / changed.relative_to(stack.source)).read_bytes() == b"new content"
    [stamp] = [p for p in (stack.bucket_root / "archive").iterdir() if p.is_dir()]
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", stamp.name)
    assert (stamp / deleted.relative_to(stack.source)).read_bytes() == deleted_content
    assert (stamp / changed.relative_to(stack.source)).read_bytes() == old_content
    _assert_no_canaries(stack, first.stderr, second.stderr)


def test_extra_args_that_would_override_a_guard_are_refused_at_load_with_78(
    stack: Stack,
) -> None:
    make_tree(stack.source, 3)
    stack.overrides["rclone"] = {"extra_args": ["--bwlimit", "1M", "--max-delete=-1"]}

    done = stack.run("run")

    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert "--max-delete is refused" in done.stderr
    assert "rclone started" not in done.stderr
    assert stack.proxy.state.requests == []
    assert _objects(stack.bucket_dir) == []
