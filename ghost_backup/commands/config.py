"""``ghost-backup config validate|example``: the config file, offline.

Neither touches the network, the runtime directory or a credential: a CI job or a Butane
pipeline can lint a file anywhere, at any hour.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ghost_backup.config_example import render_example_toml
from ghost_backup.errors import ConfigError, ExitCode
from ghost_backup.settings import load_settings, resolve_config_path


@dataclass(frozen=True)
class Validation:
    """The verdict on one config file: ``problems`` is empty when it is valid."""

    path: Path
    problems: tuple[str, ...]

    @property
    def exit_code(self) -> ExitCode:
        """0 when valid, 78 (``CONFIG``) otherwise."""
        return ExitCode.CONFIG if self.problems else ExitCode.OK


def run_config_validate(cli_path: Path | None, env: Mapping[str, str]) -> Validation:
    """Read and validate the config file (with its environment overrides) and return every
    problem found; an unreadable or non-TOML file is one problem."""
    path = resolve_config_path(cli_path, env)
    try:
        load_settings(path, env)
    except ConfigError as err:
        return Validation(path, err.problems or (err.message,))
    return Validation(path, ())


def format_validation(result: Validation, *, as_json: bool) -> str:
    """Return the verdict as one line (plus one per problem), or as a JSON object."""
    if as_json:
        payload = {"valid": not result.problems, "config": str(result.path),
                   "problems": list(result.problems)}
        return json.dumps(payload, indent=2) + "\n"
    if not result.problems:
        return f"{result.path}: valid\n"
    lines = [f"{result.path}: invalid ({len(result.problems)} problem(s))"]
    lines += [f"  {problem}" for problem in result.problems]
    return "\n".join(lines) + "\n"


def run_config_example() -> str:
    """Return the full annotated example config."""
    return render_example_toml()
