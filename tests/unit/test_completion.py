"""Bash completion generated from the parser: what bash offers at each point of a command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ghost_backup.cli import build_parser
from ghost_backup.completion import render_bash_completion

SCRIPT = render_bash_completion(build_parser())
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _complete(tmp_path: Path, *words: str) -> list[str]:
    """Return COMPREPLY after typing ``words`` (the last one is being completed)."""
    script = tmp_path / "completion.bash"
    script.write_text(SCRIPT)
    quoted = " ".join(f"'{w}'" for w in ("ghost-backup", *words))
    probe = (f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
             f"cd {tmp_path}; _ghost_backup; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return sorted(line for line in out.splitlines() if line)


def test_script_is_valid_bash_and_registers_itself(tmp_path: Path) -> None:
    (tmp_path / "c.bash").write_text(SCRIPT)
    subprocess.run(["bash", "-n", str(tmp_path / "c.bash")], check=True, timeout=30)
    assert SCRIPT.rstrip().endswith("complete -F _ghost_backup ghost-backup")


@pytest.mark.parametrize(("words", "expected"), [
    (("r",), ["restore", "restore-db", "run"]),
    (("config", ""), ["--config", "--help", "--verbose", "-h", "-v", "example", "validate"]),
    (("config", "validate", "--j"), ["--json"]),
    (("--config", "x.toml", "run", "--d"), ["--dry-run"]),
    (("run", "--config", "x.toml", "--"), ["--allow-shrink", "--config", "--dry-run", "--help",
                                            "--verbose"]),
    (("completion", "b"), ["bash"]),
    (("verify", "--sample", ""), []),  # a number: nothing to offer
])
def test_offers_commands_actions_and_flags_of_the_right_command(
        tmp_path: Path, words: tuple[str, ...], expected: list[str]) -> None:
    assert _complete(tmp_path, *words) == expected


def test_completes_files_after_config_and_directories_after_to(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text("")
    (tmp_path / "sdir").mkdir()
    assert _complete(tmp_path, "check", "--config", "s") == ["sdir", "site.toml"]
    assert _complete(tmp_path, "restore", "--to", "s") == ["sdir"]
