"""The operator's toolkit end to end: `check`, `restore`, `verify`, `status` and the metrics
textfile, against real rclone, a real loopback S3 endpoint that checks signatures, and the dev
credential proxy. Every test searches its outputs, the state file and the textfile for the
canary keys."""

from __future__ import annotations

import filecmp
import json
import signal
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import RCLONE, Stack, find_canaries, make_tree
from tests.support.devproxy import ProxyState

FILES = 60


def _same_tree(src: Path, dst: Path) -> bool:
    left = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    right = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    return left == right and all(filecmp.cmp(src / p, dst / p, shallow=False) for p in left)


def _assert_clean(stack: Stack, *texts: str) -> None:
    assert find_canaries(stack.secrets, texts=texts,
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def _backed_up(stack: Stack) -> Stack:
    make_tree(stack.source, FILES)
    result = stack.run("run")
    assert result.returncode == 0, result.stderr
    return stack


def _set_mode(state: ProxyState, mode: str) -> None:
    with state.lock:
        state.mode = mode
        state.counter = 0


def test_check_passes_on_a_healthy_stack_and_writes_nothing(stack: Stack) -> None:
    _backed_up(stack)
    before = sorted(p.relative_to(stack.bucket_dir) for p in stack.bucket_dir.rglob("*"))
    result = stack.run("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("[ok]") == 7, result.stdout
    for name in ("settings", "history", "rclone", "source", "runtime dir", "credentials",
                 "bucket"):
        assert f" {name}: " in result.stdout
    assert "command=check" in result.stderr  # the audit line names the command
    after = sorted(p.relative_to(stack.bucket_dir) for p in stack.bucket_dir.rglob("*"))
    assert after == before
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_clean(stack, result.stdout, result.stderr)


@pytest.mark.parametrize(("mode", "code", "failing"), [
    ("status:403", 77, "credentials"),
    ("expired", 65, "credentials"),
    ("status:404", 69, "credentials"),
    ("wrong-keys", 65, "bucket"),
])
def test_check_fails_with_the_first_failures_documented_code(
    stack: Stack, mode: str, code: int, failing: str
) -> None:
    make_tree(stack.source, 5)
    _set_mode(stack.proxy.state, mode)
    stack.overrides["credentials"] = {"max_attempts": 1}
    result = stack.run("check")
    assert result.returncode == code, result.stdout + result.stderr
    assert f"[FAIL] {failing}: " in result.stdout
    _assert_clean(stack, result.stdout, result.stderr)


def test_check_reports_source_and_bucket_problems_and_exits_with_the_first(stack: Stack) -> None:
    stack.overrides["destination"] = {"bucket": "no-such-bucket"}
    result = stack.run("check")  # the source is empty: refused (66) before the bucket (78)
    assert result.returncode == 66, result.stdout + result.stderr
    assert "[FAIL] source:" in result.stdout
    assert "[FAIL] bucket: bucket not found" in result.stdout
    _assert_clean(stack, result.stdout, result.stderr)


def test_check_fails_on_an_invalid_config_with_code_78(stack: Stack) -> None:
    stack.overrides["rclone"] = {"transfers": 0}
    result = stack.run("check")
    assert result.returncode == 78
    assert "[FAIL] settings:" in result.stdout


def test_check_json_has_the_shape_of_status_json_and_names_the_rclone_binary(
        stack: Stack) -> None:
    _backed_up(stack)
    status = json.loads(stack.run("status", "--json").stdout)
    result = stack.run("check", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    for key in ("outcome", "exit_code", "exit_name", "message"):
        assert type(payload[key]) is type(status[key])
    assert (payload["outcome"], payload["exit_code"], payload["exit_name"]) == (
        "success", 0, "OK")
    assert [i["name"] for i in payload["items"]] == [
        "settings", "history", "rclone", "source", "runtime dir", "credentials", "bucket"]
    assert {i["status"] for i in payload["items"]} == {"ok"}
    rclone_item = payload["items"][2]["detail"]
    assert rclone_item.startswith("v1.")
    assert f" at {RCLONE} " in rclone_item
    _assert_clean(stack, result.stdout, result.stderr)


def test_check_json_reports_a_failure_and_a_bad_config(stack: Stack) -> None:
    make_tree(stack.source, 5)
    _set_mode(stack.proxy.state, "status:403")
    stack.overrides["credentials"] = {"max_attempts": 1}
    denied = stack.run("check", "--json")
    assert denied.returncode == 77
    payload = json.loads(denied.stdout)
    assert (payload["outcome"], payload["exit_code"], payload["exit_name"]) == (
        "failure", 77, "PROXY_DENIED")
    assert payload["message"].startswith("credentials: ")
    assert [(i["name"], i["status"], i["exit_code"]) for i in payload["items"]][-2:] == [
        ("credentials", "fail", 77), ("bucket", "skip", None)]

    stack.overrides["rclone"] = {"transfers": 0}
    bad = stack.run("check", "--json")
    assert bad.returncode == 78
    payload = json.loads(bad.stdout)
    assert payload["exit_name"] == "CONFIG"
    assert payload["problems"] == ["rclone.transfers: Input should be greater than or equal to 1"]
    _assert_clean(stack, denied.stdout, denied.stderr, bad.stdout)


def test_restore_of_a_backed_up_tree_is_byte_identical(stack: Stack) -> None:
    _backed_up(stack)
    target = stack.tmp / "restored"
    result = stack.run("restore", "--to", str(target))
    assert result.returncode == 0, result.stderr
    assert _same_tree(stack.source, target)
    assert f"restored {FILES} files" in result.stderr
    assert f"verified {FILES} files identical" in result.stderr
    assert "command=restore" in result.stderr
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_clean(stack, result.stdout, result.stderr)


def test_restore_longer_than_the_credentials_continues_with_fresh_ones(stack: Stack) -> None:
    _backed_up(stack)
    # Keys valid 70 s, rclone stopped 60 s before expiry: each window lasts about 9 s, and a
    # bandwidth-limited real rclone needs more than one of them for the tree.
    slow = stack.tmp / "rclone-slow"
    slow.write_text(f'#!/bin/sh\nexec {RCLONE} "$@" --bwlimit 16k\n')
    slow.chmod(0o755)
    stack.proxy.state.ttl_seconds = 70
    stack.overrides["credentials"] = {"min_validity_seconds": 62, "safety_margin_seconds": 60}
    stack.overrides["rclone"] = {"binary": str(slow)}
    target = stack.tmp / "restored"
    result = stack.run("restore", "--to", str(target), timeout=90)
    assert result.returncode == 0, result.stderr
    assert _same_tree(stack.source, target)
    assert "credential window 1 ended" in result.stderr
    requests = [r for r in stack.proxy.state.requests if r["mode"] == "ok"]
    assert result.stderr.count("command=restore") >= 2  # an audited request per window
    assert len({r["request_id"] for r in requests[-2:]}) == 1  # one run id, audited each time
    _assert_clean(stack, result.stdout, result.stderr)


def test_restore_of_one_folder_and_a_dry_run(stack: Stack) -> None:
    _backed_up(stack)
    dry = stack.run("restore", "--to", str(stack.tmp / "dry"), "--path", "dir1",
                    "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not (stack.tmp / "dry").exists()
    part = stack.tmp / "part"
    result = stack.run("restore", "--to", str(part), "--path", "/dir1/sub2/")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in part.iterdir()] == ["dir1"]
    assert _same_tree(stack.source / "dir1" / "sub2", part / "dir1" / "sub2")
    missing = stack.run("restore", "--to", str(stack.tmp / "none"), "--path", "no/such")
    assert missing.returncode == 64
    assert "nothing to restore" in missing.stderr
    _assert_clean(stack, dry.stderr, result.stderr, missing.stderr)


def test_restore_refuses_a_non_empty_target_and_the_live_source(stack: Stack) -> None:
    _backed_up(stack)
    busy = stack.tmp / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine\n")
    refused = stack.run("restore", "--to", str(busy))
    assert refused.returncode == 64
    assert "already exists" in refused.stderr
    live = stack.run("restore", "--to", str(stack.source))
    assert live.returncode == 64
    assert "overlaps the live source" in live.stderr
    inside = stack.run("restore", "--to", str(stack.source / "dir0" / "new"))
    assert inside.returncode == 64
    assert stack.proxy.state.requests == [r for r in stack.proxy.state.requests
                                          if "restore" not in str(r)]  # refused before fetch
    lost = next(stack.source.rglob("*.dat"))
    lost.unlink()
    forced = stack.run("restore", "--to", str(stack.source), "--force")
    assert forced.returncode == 0, forced.stderr
    assert lost.exists()
    assert (busy / "keep.txt").read_text() == "mine\n"
    _assert_clean(stack, refused.stderr, live.stderr, inside.stderr, forced.stderr)


def test_restore_from_archive_brings_back_the_replaced_version(stack: Stack) -> None:
    stack.overrides["destination"] = {"path": "current", "archive_path": "archive"}
    _backed_up(stack)
    victim = sorted(stack.source.rglob("*.dat"))[0]
    original = victim.read_bytes()
    victim.write_bytes(b"changed after the first backup\n")
    second = stack.run("run")
    assert second.returncode == 0, second.stderr
    run_id = json.loads(stack.run("status", "--json").stdout)["run_id"]

    target = stack.tmp / "from-archive"
    result = stack.run("restore", "--to", str(target), "--from-archive", run_id[:8])
    assert result.returncode == 0, result.stderr
    assert (target / victim.relative_to(stack.source)).read_bytes() == original
    assert "restored 1 files" in result.stderr
    wrong = stack.run("restore", "--to", str(stack.tmp / "x"), "--from-archive", "1999-01-01")
    assert wrong.returncode == 64
    assert "no archive folder matches" in wrong.stderr
    _assert_clean(stack, second.stderr, result.stderr, wrong.stderr)


def test_verify_passes_then_finds_a_tampered_object(stack: Stack) -> None:
    _backed_up(stack)
    clean = stack.run("verify")
    assert clean.returncode == 0, clean.stderr
    assert f"{FILES} files identical" in clean.stderr
    sample = stack.run("verify", "--sample", "5", "--seed", "2026-W48")
    assert sample.returncode == 0, sample.stderr
    assert f"a sample of 5 of {FILES} files" in sample.stderr

    victim = sorted(stack.bucket_dir.rglob("*.dat"))[3]
    original = victim.read_bytes()
    data = bytearray(original)
    data[0] ^= 0xFF  # same size, one flipped bit: only the hash can tell
    victim.write_bytes(bytes(data))
    tampered = stack.run("verify")
    assert tampered.returncode == 81, tampered.stderr
    assert f"differs {victim.relative_to(stack.bucket_dir)}" in tampered.stderr
    assert "1 differ, 0 missing" in tampered.stderr
    # A file the backup has not seen yet is missing there. (Deleting an object from the
    # bucket folder would not do: `rclone serve s3` keeps listing it from its directory cache.)
    victim.write_bytes(original)
    (stack.source / "dir0" / "after-the-backup.txt").write_text("new\n")
    gone = stack.run("verify")
    assert gone.returncode == 81
    assert "0 differ, 1 missing" in gone.stderr
    _assert_clean(stack, clean.stderr, sample.stderr, tampered.stderr, gone.stderr)


def test_status_and_textfile_reflect_the_last_run(stack: Stack) -> None:
    textfile_dir = stack.tmp / "textfile"
    textfile_dir.mkdir()
    textfile = textfile_dir / "ghost_backup.prom"
    stack.overrides["metrics"] = {"textfile_path": str(textfile)}
    never = stack.run("status", "--json")
    assert never.returncode == 0
    assert json.loads(never.stdout) == {"outcome": "none"}

    _backed_up(stack)
    ok = json.loads(stack.run("status", "--json").stdout)
    assert ok["outcome"] == "success"
    assert ok["exit_code"] == 0
    assert ok["files"] == FILES
    assert ok["bytes"] > 0
    assert ok["rclone_version"].startswith("v1.")
    assert 1790 < ok["credential_ttl_seconds"] <= 1800
    assert ok["last_success_run_id"] == ok["run_id"]
    state_file = stack.tmp / "state" / "last-run.json"
    assert oct(state_file.stat().st_mode & 0o777) == "0o644"
    staged = stack.tmp / "state" / "metrics.prom"
    assert oct(staged.stat().st_mode & 0o777) == "0o644"
    assert not textfile.exists()  # published by the unit's root hook, not by the run
    assert stack.run("post-stop").returncode == 0
    assert textfile.read_text() == staged.read_text()
    metrics = _parse_prom(textfile.read_text())
    assert metrics["ghost_backup_last_run_exit_code"] == 0
    assert metrics["ghost_backup_last_run_success"] == 1
    assert metrics["ghost_backup_last_run_transferred_files"] == FILES
    assert metrics["ghost_backup_last_success_timestamp_seconds"] > 0

    _set_mode(stack.proxy.state, "status:403")
    failed = stack.run("run")
    assert failed.returncode == 77
    bad = json.loads(stack.run("status", "--json").stdout)
    assert bad["outcome"] == "failure"
    assert bad["exit_name"] == "PROXY_DENIED"
    assert bad["last_success_run_id"] == ok["run_id"]
    assert bad["credential_expires_at"] is None
    human = stack.run("status")
    assert "failure, exit 77 PROXY_DENIED" in human.stdout
    assert f"run {ok['run_id']}" in human.stdout
    assert stack.run("post-stop").returncode == 0
    after = _parse_prom(textfile.read_text())
    assert after["ghost_backup_last_run_exit_code"] == 77
    assert after["ghost_backup_last_success_timestamp_seconds"] == \
        metrics["ghost_backup_last_success_timestamp_seconds"]
    assert [p.name for p in textfile_dir.iterdir()] == ["ghost_backup.prom"]
    _assert_clean(stack, failed.stderr, human.stdout, state_file.read_text(),
                  textfile.read_text())


def test_a_state_dir_that_cannot_be_written_is_logged_and_leaves_the_outcome(
    stack: Stack,
) -> None:
    make_tree(stack.source, 5)
    blocker = stack.tmp / "not-a-dir"
    blocker.write_text("a file where the state directory should be\n")
    stack.overrides["state"] = {"dir": str(blocker / "state")}
    result = stack.run("run")
    assert result.returncode == 0, result.stderr
    assert "cannot write state file" in result.stderr
    assert "cannot write metrics textfile" in result.stderr
    _assert_clean(stack, result.stderr)


def test_sigterm_during_a_restore_stops_rclone_and_shreds_the_run_dir(stack: Stack) -> None:
    _backed_up(stack)
    slow = stack.tmp / "rclone-slow"
    slow.write_text(f'#!/bin/sh\nexec {RCLONE} "$@" --bwlimit 4k\n')
    slow.chmod(0o755)
    stack.overrides["rclone"] = {"binary": str(slow)}
    proc = stack.popen("restore", "--to", str(stack.tmp / "restored"))
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "rclone copy started" in line:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by a signal" in err
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_clean(stack, out, err, *seen)


def _parse_prom(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
