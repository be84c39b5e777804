"""docs/configuration.md and packaging/config.example.toml are generated from the settings
model; these tests fail when either is stale (fix: `make docs`) or when the example stops
being a valid config."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ghost_backup.configdoc import render_configuration_markdown, render_example_toml
from ghost_backup.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_md_is_up_to_date_with_the_settings_model() -> None:
    path = ROOT / "docs" / "configuration.md"
    assert path.read_text(encoding="utf-8") == render_configuration_markdown(), (
        "docs/configuration.md is stale: run `make docs` and commit it")


def test_example_config_is_up_to_date_with_the_settings_model() -> None:
    path = ROOT / "packaging" / "config.example.toml"
    assert path.read_text(encoding="utf-8") == render_example_toml(), (
        "packaging/config.example.toml is stale: run `make docs` and commit it")


def test_example_config_validates_and_equals_the_defaults() -> None:
    settings = parse_settings(tomllib.loads(render_example_toml()), {})
    assert settings.source == Settings.model_fields["source"].get_default(
        call_default_factory=True)


def test_every_setting_is_documented_with_a_description() -> None:
    text = render_configuration_markdown()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert f"## `[{section}]`" in text
        for key, field in model.model_fields.items():  # type: ignore[union-attr]
            assert field.description, f"{section}.{key} has no description"
            assert f"| `{key}` |" in text
