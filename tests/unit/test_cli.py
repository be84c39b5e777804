"""The command line as a newcomer meets it: help, global options anywhere, `config`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from ghost_backup.cli import build_parser, main
from ghost_backup.config_example import render_example_toml
from ghost_backup.errors import EXIT_CODES, ExitCode
from ghost_backup.settings import parse_settings


def test_top_help_describes_the_tool_and_lists_every_exit_code() -> None:
    text = build_parser().format_help()
    assert "``main``" not in text  # the module docstring is for engineers, not operators
    assert "just-in-time" in text
    for code, info in EXIT_CODES.items():
        assert f"{int(code):>3}  {info.meaning.replace('`', '')}" in text


@pytest.mark.parametrize("command", ["run", "check", "status", "restore", "verify", "config",
                                     "audit-host", "alert", "completion"])
def test_every_command_has_a_description_and_examples(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices[command].format_help()  # type: ignore[attr-defined]
    assert "examples:\n  ghost-backup " in text
    assert len(text.split("\n\n")[1]) > 40  # a real description paragraph


@pytest.mark.parametrize("argv", [
    ["--config", "/x.toml", "-v", "status"],
    ["status", "--config", "/x.toml", "-v"],
    ["-v", "status", "--config", "/x.toml"],
    ["config", "validate", "--config", "/x.toml", "-v"],
    ["config", "--config", "/x.toml", "validate", "--verbose"],
])
def test_global_options_are_accepted_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.config == Path("/x.toml")
    assert args.verbose is True


def test_global_options_given_before_the_command_survive_the_subparser() -> None:
    args = build_parser().parse_args(["--config", "/x.toml", "run"])
    assert args.config == Path("/x.toml")
    assert args.verbose is False


def test_config_example_prints_a_file_that_validates(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", "example"], env={}) == 0
    printed = capsys.readouterr().out
    assert printed == render_example_toml()
    parse_settings(tomllib.loads(printed), {})
    (tmp_path / "c.toml").write_text(printed)
    assert main(["config", "validate", "--config", str(tmp_path / "c.toml")], env={}) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'c.toml'}: valid\n"


def test_config_validate_lists_every_problem_as_json_and_exits_78(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[destination]\nbucket = "X"\nfoo = 1\n[rclone]\ntransfers = 0\n')
    code = main(["config", "validate", "--json", "--config", str(path)], env={})
    assert code == ExitCode.CONFIG
    payload = json.loads(capsys.readouterr().out)
    assert payload["valid"] is False
    assert payload["config"] == str(path)
    assert [p.split(":")[0] for p in payload["problems"]] == [
        "destination.bucket", "destination.foo", "rclone.transfers"]


def test_config_validate_reports_a_missing_file_as_one_problem(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    env = {"GHOST_BACKUP_CONFIG": str(tmp_path / "none.toml")}
    assert main(["config", "validate", "--json"], env=env) == ExitCode.CONFIG
    payload = json.loads(capsys.readouterr().out)
    assert payload["config"] == str(tmp_path / "none.toml")
    assert len(payload["problems"]) == 1
    assert "not found" in payload["problems"][0]


def test_config_validate_applies_the_environment_overrides(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[destination]\nbucket = "ghost-backups"\n')  # no account id: invalid
    assert main(["config", "validate", "--config", str(path)], env={}) == ExitCode.CONFIG
    env = {"CF_ACCOUNT_ID": "0123456789abcdef0123456789abcdef"}
    assert main(["config", "validate", "--config", str(path)], env=env) == 0
    capsys.readouterr()
