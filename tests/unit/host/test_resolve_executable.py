"""Which rclone a command starts: beside the interpreter first, then $PATH."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghost_backup.host.process import resolve_executable


def _exe(directory: Path, name: str = "rclone", mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_an_explicit_path_is_kept_as_is(tmp_path: Path) -> None:
    _exe(tmp_path / "venv")
    assert resolve_executable("/usr/bin/rclone", beside=[tmp_path / "venv"],
                              search_path=str(tmp_path)) == "/usr/bin/rclone"


def test_the_rclone_beside_the_interpreter_wins_over_path(tmp_path: Path) -> None:
    venv = _exe(tmp_path / "venv" / "bin")
    _exe(tmp_path / "usr" / "bin")
    found = resolve_executable("rclone", beside=[venv.parent],
                               search_path=str(tmp_path / "usr" / "bin"))
    assert found == str(venv)


def test_path_is_searched_when_the_interpreter_has_no_rclone(tmp_path: Path) -> None:
    on_path = _exe(tmp_path / "usr" / "bin")
    (tmp_path / "venv").mkdir()
    found = resolve_executable("rclone", beside=[tmp_path / "venv"],
                               search_path=f"/nonexistent:{on_path.parent}")
    assert found == str(on_path)


@pytest.mark.parametrize("search_path", [None, "", "/nonexistent"])
def test_nothing_found_leaves_the_name_for_a_clear_cannot_start(
        tmp_path: Path, search_path: str | None) -> None:
    _exe(tmp_path / "venv", mode=0o644)  # not executable: skipped
    assert resolve_executable("rclone", beside=[tmp_path / "venv"],
                              search_path=search_path) == "rclone"
