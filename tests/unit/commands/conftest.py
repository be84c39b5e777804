"""Fixtures shared by the in-process command tests (fake Deps, fake rclone)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Path]]:
    shm = Path("/dev/shm")
    runtime = Path(os.environ.get("GHOST_TEST_TMPFS", shm)) / f"seq-{os.getpid()}-{id(tmp_path)}"
    source = tmp_path / "storage"
    source.mkdir()
    (source / "a.txt").write_text("abc")
    tools = tmp_path / "bin"
    tools.mkdir()
    yield {"runtime": runtime, "source": source, "tools": tools, "state": tmp_path / "state"}
    if runtime.exists():
        for entry in sorted(runtime.rglob("*"), reverse=True):
            entry.rmdir() if entry.is_dir() else entry.unlink()
        runtime.rmdir()
    Path(f"{runtime}.lock").unlink(missing_ok=True)
