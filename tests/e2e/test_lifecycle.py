"""What happens around rclone: sd_notify order, the per-run dir while it lives, cleanup after
success, failure and SIGTERM, and the child's environment."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghost_backup.host.libc import RAMFS_MAGIC, TMPFS_MAGIC, read_fs_magic
from tests.helpers import RCLONE, Stack, find_canaries, make_tree

# A stand-in rclone that records what it was given (file modes, filesystem, env *names*)
# and then execs the real rclone, so the real sync still happens.
INSPECTOR = f"""#!{sys.executable}
import json, os, sys
argv = sys.argv
conf = argv[argv.index("--config") + 1]
st, dst = os.stat(conf), os.stat(os.path.dirname(conf))
report = {{
    "conf_mode": st.st_mode & 0o7777, "dir_mode": dst.st_mode & 0o7777,
    "conf_text": open(conf).read(), "argv": argv,
    "env": {{k: (v if not k.startswith("RCLONE_CONFIG_") else "<set>")
             for k, v in os.environ.items()}},
    "conf": conf,
}}
with open(os.environ["HOME"] + "/inspect.json", "w") as f:
    json.dump(report, f)
os.execv({RCLONE!r}, [{RCLONE!r}] + argv[1:])
"""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.1)
    yield sock
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


def test_notify_ready_status_stopping_in_order(
    filled_stack: Stack, notify_socket: socket.socket, tmp_path: Path
) -> None:
    stack = filled_stack
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"}
    result = stack.run("run", env=env)
    assert result.returncode == 0, result.stderr
    messages = _drain(notify_socket)
    kinds = [m.split("=", 1)[0] for m in messages]
    assert "READY" in kinds
    assert "STOPPING" in kinds
    ready, stopping = kinds.index("READY"), kinds.index("STOPPING")
    statuses = [m for m in messages[ready:stopping] if m.startswith("STATUS=")]
    assert statuses, messages
    assert any(" files, " in m for m in statuses), statuses
    assert ready < stopping
    assert "WATCHDOG=1" in messages[ready:stopping]
    assert find_canaries(stack.secrets, texts=messages) == []


def test_notify_is_silent_without_notify_socket(filled_stack: Stack) -> None:
    result = filled_stack.run("run")
    assert result.returncode == 0, result.stderr


def test_config_lives_0600_in_0700_on_tmpfs_and_child_env_is_allowlisted(
    filled_stack: Stack, tmp_path: Path
) -> None:
    stack = filled_stack
    wrapper = tmp_path / "rclone-inspector"
    wrapper.write_text(INSPECTOR)
    wrapper.chmod(0o755)
    stack.overrides["rclone"] = {"binary": str(wrapper)}
    hostile = {"AWS_ACCESS_KEY_ID": "inherited-ak", "AWS_SESSION_TOKEN": "inherited-tok",
               "RCLONE_CONFIG_R2_ENDPOINT": "http://127.0.0.1:1", "JOURNAL_STREAM": "0:0",
               "CREDENTIALS_DIRECTORY": "/nowhere", "WATCHDOG_PID": "1"}
    result = stack.run("run", env=hostile)
    assert result.returncode == 0, result.stderr
    report = json.loads((stack.tmp / "inspect.json").read_text())
    assert report["conf_mode"] == 0o600
    assert report["dir_mode"] == 0o700
    assert read_fs_magic(stack.runtime_dir) in (TMPFS_MAGIC, RAMFS_MAGIC)
    assert Path(report["conf"]).parent.parent == stack.runtime_dir
    assert "secret" not in report["conf_text"]
    env = report["env"]
    assert env["RCLONE_CONFIG_R2_ACCESS_KEY_ID"] == "<set>"
    assert env["RCLONE_CONFIG_R2_SECRET_ACCESS_KEY"] == "<set>"
    assert "RCLONE_CONFIG_R2_SESSION_TOKEN" not in env
    for name in hostile:
        if name != "RCLONE_CONFIG_R2_ENDPOINT":
            assert name not in env
    assert "RCLONE_CONFIG_R2_ENDPOINT" not in env
    assert find_canaries(stack.secrets, texts=[" ".join(report["argv"])]) == []
    assert not Path(report["conf"]).exists()
    assert not Path(report["conf"]).parent.exists()
    assert find_canaries(stack.secrets, texts=[result.stderr],
                         dirs=[stack.tmp, stack.runtime_dir]) == []


def test_session_token_reaches_rclone_only_through_its_environment(
    filled_stack: Stack, tmp_path: Path
) -> None:
    stack = filled_stack
    stack.proxy.state.session_token = "tok-canary-" + os.urandom(8).hex()
    wrapper = tmp_path / "rclone-inspector"
    wrapper.write_text(INSPECTOR)
    wrapper.chmod(0o755)
    stack.overrides["rclone"] = {"binary": str(wrapper)}
    stack.run("run")  # rclone serve s3 may reject an unexpected token; we check delivery
    report = json.loads((stack.tmp / "inspect.json").read_text())
    assert report["env"].get("RCLONE_CONFIG_R2_SESSION_TOKEN") == "<set>"
    assert find_canaries(stack.secrets, texts=[" ".join(report["argv"])]) == []


def _wait_for(proc_stderr: list[str], stream: object, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        proc_stderr.append(line)
        if needle in line:
            return
    raise AssertionError(f"never saw {needle!r}: {''.join(proc_stderr)}")


def test_sigterm_mid_sync_stops_rclone_shreds_config_and_exits_143(
    stack: Stack,
) -> None:
    make_tree(stack.source, 40, max_size=200_000)
    stack.overrides["rclone"] = {"extra_args": ["--bwlimit", "200k", "--transfers", "1"]}
    proc = stack.popen("run")
    seen: list[str] = []
    assert proc.stderr is not None
    _wait_for(seen, proc.stderr, "rclone started", 30)
    run_dirs = [p for p in stack.runtime_dir.iterdir() if p.name.startswith("run-")]
    assert len(run_dirs) == 1
    config = run_dirs[0] / "rclone.conf"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    seen.append(err)
    text = "".join(seen)
    assert proc.returncode == 143, text
    assert "terminated" in text
    assert not run_dirs[0].exists()
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    assert find_canaries(stack.secrets, texts=[text, out], dirs=[stack.tmp]) == []
    # rclone is gone too (its own process group got the signal).
    pid = int(re.search(r"rclone started \(pid (\d+)\)", text).group(1))  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists()


def test_cleanup_after_rclone_failure(filled_stack: Stack) -> None:
    stack = filled_stack
    # An allowed flag with a value rclone rejects: rclone itself fails (usage error).
    stack.overrides["rclone"] = {"extra_args": ["--timeout=not-a-duration"]}
    result = stack.run("run")
    assert result.returncode == 1, result.stderr
    assert [p.name for p in stack.runtime_dir.iterdir()] == []
    assert find_canaries(stack.secrets, texts=[result.stderr], dirs=[stack.tmp]) == []
