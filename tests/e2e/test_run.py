"""`ghost-backup run` end to end: real rclone, real loopback S3 with signature checks,
the dev credential proxy, a tmpfs runtime dir. Every test searches for its canary keys."""

from __future__ import annotations

import filecmp
from pathlib import Path

from tests.helpers import Stack, find_canaries


def _same_tree(src: Path, dst: Path, *, exclude: tuple[str, ...] = ()) -> bool:
    left = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    left = [p for p in left if not any(p.match(e) for e in exclude)]
    right = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    if left != right:
        return False
    return all(filecmp.cmp(src / p, dst / p, shallow=False) for p in left)


def _assert_clean(stack: Stack, *texts: str) -> None:
    assert find_canaries(stack.secrets, texts=texts,
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []


def test_run_syncs_tree_byte_identical_then_nothing_then_deletes(filled_stack: Stack) -> None:
    stack = filled_stack
    first = stack.run("run")
    assert first.returncode == 0, first.stderr
    assert _same_tree(stack.source, stack.bucket_dir)
    assert "summary: " in first.stderr
    assert "300 files" in first.stderr

    second = stack.run("run")
    assert second.returncode == 0, second.stderr
    assert "transferred in 0 files" in second.stderr

    victim = next(stack.source.rglob("*.dat"))
    victim.unlink()
    third = stack.run("run")
    assert third.returncode == 0, third.stderr
    assert not (stack.bucket_dir / victim.relative_to(stack.source)).exists()
    assert _same_tree(stack.source, stack.bucket_dir)
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_clean(stack, first.stderr, second.stderr, third.stderr, first.stdout)


def test_exclude_keeps_compose_secrets_out_of_the_bucket(filled_stack: Stack) -> None:
    stack = filled_stack
    compose = stack.source / "ghost-compose"
    compose.mkdir()
    (compose / "docker-compose.yml").write_text("services: {}\n")
    (compose / ".env.production").write_text("DB_PASSWORD=x\n")
    result = stack.run("run")
    assert result.returncode == 0, result.stderr
    assert (stack.bucket_dir / "ghost-compose" / "docker-compose.yml").exists()
    assert not (stack.bucket_dir / "ghost-compose" / ".env.production").exists()
    _assert_clean(stack, result.stderr)


def test_wrong_keys_from_the_proxy_fail_the_run_clearly(filled_stack: Stack) -> None:
    stack = filled_stack
    stack.proxy.state.mode = "wrong-keys"
    stack.overrides["rclone"] = {"extra_args": ["--retries", "1", "--low-level-retries", "1"]}
    result = stack.run("run")
    # The deletion pre-flight lists the backup before the sync: the refusal shows there.
    assert result.returncode == 65, result.stderr
    assert "backup run" in result.stderr
    assert "failed: cannot list the backup: the bucket refused the credentials" in result.stderr
    assert "rclone started" not in result.stderr
    assert list(stack.bucket_root.iterdir()) == []
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    _assert_clean(stack, result.stderr)


def test_runtime_dir_on_persistent_disk_is_refused_before_any_secret(filled_stack: Stack) -> None:
    stack = filled_stack
    stack.runtime_dir = stack.tmp / "not-tmpfs"
    result = stack.run("run")
    assert result.returncode == 73, result.stderr
    assert "not on tmpfs" in result.stderr
    assert stack.proxy.state.requests == []
    assert "rclone started" not in result.stderr
    assert list(stack.bucket_root.iterdir()) == []


def test_runtime_dir_with_loose_mode_is_refused(filled_stack: Stack) -> None:
    stack = filled_stack
    stack.runtime_dir.mkdir(mode=0o755)
    stack.runtime_dir.chmod(0o755)
    result = stack.run("run")
    assert result.returncode == 73, result.stderr
    assert "0700" in result.stderr
    assert stack.proxy.state.requests == []


def test_each_run_makes_one_traceable_credential_request(filled_stack: Stack) -> None:
    stack = filled_stack
    result = stack.run("run")
    assert result.returncode == 0, result.stderr
    (request,) = stack.proxy.state.requests
    run_id = request["request_id"]
    assert request["user_agent"].startswith("ghost-backup/")
    audit = [line for line in result.stderr.splitlines() if "credentials received" in line]
    assert len(audit) == 1
    assert f"run_id={run_id}" in audit[0]
    assert "provider=r2-backup" in audit[0]
    assert "requested_at=" in audit[0]
    assert "expires_at=" in audit[0]
