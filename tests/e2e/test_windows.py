"""The credential window: no rclone outlives its keys, and a sync too big for one window
continues with fresh keys. Real rclone against the loopback S3 endpoint."""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from ghost_backup.errors import ExitCode
from tests.helpers import GHOST_BACKUP, RCLONE, Stack, error_lines, find_canaries, make_tree


def _objects(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _rclone_pids(marker: str) -> list[int]:
    """Return the pids of live rclone processes whose argv mentions ``marker`` (our runtime
    dir: every rclone that holds keys reads its config there)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = next(line for line in (proc / "status").read_text().splitlines()
                         if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if (argv and argv[0].decode() == RCLONE and any(marker.encode() in a for a in argv)
                and "Z" not in state):
            pids.append(int(proc.name))
    return pids


def test_no_rclone_is_alive_when_its_45_second_keys_expire(stack: Stack) -> None:
    # Six 512 KB files, one at a time at 50 KiB/s, need a minute; the keys live ~45 s,
    # margin 5 s: a few files finish, the one in flight is cut off.
    make_tree(stack.source, 6, max_size=1)
    for path in stack.source.rglob("*.dat"):
        path.write_bytes(b"x" * 512_000)
    stack.proxy.state.ttl_seconds = 45
    stack.overrides["credentials"] = {"min_validity_seconds": 10, "safety_margin_seconds": 5,
                                      "max_windows": 1}
    stack.overrides["rclone"] = {"extra_args": ["--bwlimit", "50k", "--transfers=1"]}
    journal = stack.tmp / "journal.log"
    config = stack.write_config()

    seen: list[tuple[datetime, int]] = []
    with journal.open("w") as err:
        st = os.fstat(err.fileno())  # lines carry journald's <N> priority prefixes
        proc = subprocess.Popen([GHOST_BACKUP, "--config", str(config), "run"],
                                env=stack.env({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}),
                                stdout=subprocess.DEVNULL, stderr=err)
        # Watch the process table until the keys have expired (and the run has ended).
        expires_at: datetime | None = None
        while True:
            now = datetime.now(UTC)
            seen += [(now, pid) for pid in _rclone_pids(str(stack.runtime_dir))]
            if expires_at is None:
                match = re.search(r"expires_at=(\S+)", journal.read_text())
                expires_at = datetime.fromisoformat(match.group(1)) if match else None
            if proc.poll() is not None and expires_at is not None and now > expires_at:
                break
            assert (now - seen[0][0]).total_seconds() < 90 if seen else True
            time.sleep(0.1)
    text = journal.read_text()

    assert proc.returncode == ExitCode.TEMPORARY, text
    assert expires_at is not None
    assert seen, "rclone never seen running"
    last_alive = max(when for when, _ in seen)
    assert last_alive < expires_at
    # It ran for most of the window, then stopped inside the 5-second margin.
    assert (expires_at - last_alive).total_seconds() < 8
    assert (last_alive - seen[0][0]).total_seconds() > 30
    assert 0 < len(_objects(stack.bucket_dir)) < 6
    ours = [line for line in error_lines(text) if "rclone:" not in line]
    assert len(ours) == 1, text
    assert "unfinished after 1 credential windows" in ours[0]
    assert len(stack.proxy.state.requests) == 1
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    assert find_canaries(stack.secrets, texts=[text],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_a_sync_longer_than_one_window_continues_with_fresh_keys_and_finishes(
    stack: Stack,
) -> None:
    # ~480 KB at 50 KiB/s needs ~10 s; keys live 8 s, rclone stops 2 s before expiry.
    make_tree(stack.source, 12, max_size=1)
    for path in stack.source.rglob("*.dat"):
        path.write_bytes(b"y" * 40_000)
    stack.proxy.state.ttl_seconds = 8
    stack.overrides["credentials"] = {"min_validity_seconds": 4, "safety_margin_seconds": 2,
                                      "max_windows": 6}
    stack.overrides["rclone"] = {"extra_args": ["--bwlimit", "50k"]}

    done = stack.run("run", timeout=90)

    assert done.returncode == 0, done.stderr
    assert len(_objects(stack.bucket_dir)) == 12
    requests = stack.proxy.state.requests
    assert len(requests) >= 2
    ids = [r["request_id"] for r in requests]
    assert len(set(ids)) == len(ids)  # a new request id per window
    assert ids[1:] == [f"{ids[0]}.w{n}" for n in range(2, len(ids) + 1)]
    audit = re.findall(r"credential request: run_id=(\S+) .*request_id=(\S+)", done.stderr)
    assert [rid for _, rid in audit] == ids
    assert "credential window 1 ended" in done.stderr
    # rclone reports the transfers its hard cutoff cancelled; ours says nothing failed.
    assert [line for line in error_lines(done.stderr) if "rclone:" not in line] == []
    assert find_canaries(stack.secrets, texts=[done.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []
