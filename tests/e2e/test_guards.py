"""Nothing lost at the destination: the source guard, the deletion guard, the archive, and
the credential window (--max-duration). Real rclone against the loopback S3 endpoint."""

from __future__ import annotations

import re
import shutil
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


def _not_a_mountpoint(stack: Stack) -> None:
    stack.overrides["source"] = {"require_mountpoint": True}


def _sentinel_missing(stack: Stack) -> None:
    stack.overrides["source"] = {"sentinel": ".ghost-backup-sentinel"}


SOURCE_REFUSALS: dict[str, tuple[Callable[[Stack], None], str]] = {
    "source missing": (_missing, "does not exist"),
    "source empty": (_emptied, "holds no files"),
    "source holds only empty directories": (_only_empty_dirs, "holds no files"),
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


def test_max_delete_guard_stops_a_mass_delete_with_exit_79(stack: Stack) -> None:
    files = make_tree(stack.source, 30)
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    for path in files[:20]:
        path.unlink()
    stack.overrides["rclone"] = {"max_delete": 5}

    done = stack.run("run")

    assert done.returncode == ExitCode.DELETE_GUARD, done.stderr
    # With the history on, a deletion is a server-side move into the run's archive folder:
    # rclone moves at most max_delete objects, then stops (measured: 5 copied into the
    # archive, and the cancelled sync may leave their originals in the mirror too).
    mirror = _objects(stack.bucket_dir)
    assert 25 <= len(mirror) <= 30
    [archived] = [p for p in stack.history_dir.iterdir() if p.is_dir()]
    assert 0 < len(_objects(archived)) <= 5
    assert {str(f.relative_to(stack.source)) for f in files} <= {*mirror, *_objects(archived)}
    ours = [line for line in error_lines(done.stderr) if "rclone:" not in line]
    assert len(ours) == 1, done.stderr
    assert "deletion guard tripped" in ours[0]
    # rclone logs one error per refused deletion; we relay the first and count the rest.
    assert done.stderr.count("--max-delete threshold reached") == 1
    assert re.search(r"rclone refused \d+ more deletions past --max-delete", done.stderr)
    _assert_alerted(stack, ExitCode.DELETE_GUARD, "deletion guard tripped")
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
