"""`ghost-backup run --dry-run` against the real loopback S3 endpoint: just-in-time keys are
fetched as usual, the report names what would be copied and deleted, and nothing at the
destination changes (every object's bytes and mtime, the archive, the state file)."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

from tests.helpers import Stack, find_canaries, make_tree


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _credential_requests(stack: Stack) -> int:
    with urllib.request.urlopen(stack.proxy.base_url + "/_control/requests",
                                timeout=5) as answer:
        return len(json.load(answer))


def test_dry_run_reports_copies_and_deletions_and_changes_nothing(stack: Stack) -> None:
    make_tree(stack.source, 30)
    stack.overrides = {"destination": {"path": "current", "archive_path": "archive"},
                       "rclone": {"max_delete": 2}}
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    for victim in sorted(stack.source.rglob("*.dat"))[:3]:
        victim.unlink()
    make_tree(stack.source / "new", 25, seed=11)
    bucket = stack.s3.bucket_dir("ghost-test")
    before = _snapshot(bucket)
    state_before = (stack.tmp / "state" / "last-run.json").read_bytes()
    requests_before = _credential_requests(stack)
    pings_before = len(stack.alerts.received)

    dry = stack.run("run", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    out = dry.stdout
    assert "(nothing was changed)" in out
    assert "would copy 25 file(s)" in out
    assert "would delete 3 file(s)" in out
    assert "moved to r2:ghost-test/archive/<run id>" in out
    assert "  ... and 5 more" in out  # 20 copies shown, 5 counted
    assert ("a real run would refuse more than 2 deletion(s) (rclone.max_delete) and exit 79 "
            "before deleting anything") in out
    assert "Skipped" not in dry.stderr  # counted, not logged one line each
    assert "progress:" not in dry.stderr  # rclone's dry-run figures count skipped copies
    assert _snapshot(bucket) == before
    assert (stack.tmp / "state" / "last-run.json").read_bytes() == state_before
    assert _credential_requests(stack) == requests_before + 1
    assert len(stack.alerts.received) == pings_before
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    assert find_canaries(stack.secrets, texts=[dry.stdout, dry.stderr, first.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_dry_run_into_an_empty_bucket_lists_everything_and_writes_nothing(stack: Stack) -> None:
    make_tree(stack.source, 4)
    dry = stack.run("run", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would copy 4 file(s)" in dry.stdout
    assert "would delete 0 file(s)" in dry.stdout
    assert _snapshot(stack.s3.bucket_dir("ghost-test")) == {}
    assert not (stack.tmp / "state" / "last-run.json").exists()
    assert find_canaries(stack.secrets, texts=[dry.stdout, dry.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []
