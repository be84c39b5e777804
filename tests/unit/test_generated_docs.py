"""Every generated document matches its source (fix: `make docs`), and the example config is
a valid config equal to the defaults."""

from __future__ import annotations

import tomllib

import pytest

from ghost_backup.config_example import is_array, model_of
from ghost_backup.settings import Settings, parse_settings
from tools.configdoc import render_configuration_markdown, render_example_toml
from tools.gen_docs import OUTPUTS, ROOT, expected_text


@pytest.mark.parametrize("path", sorted(OUTPUTS), ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_file_is_up_to_date(path) -> None:  # type: ignore[no-untyped-def]
    assert path.read_text(encoding="utf-8") == expected_text(path), (
        f"{path.relative_to(ROOT)} is stale: run `make docs` and commit it")


def test_example_config_validates_and_equals_the_defaults() -> None:
    settings = parse_settings(tomllib.loads(render_example_toml()), {})
    assert settings.source == Settings.model_fields["source"].get_default(
        call_default_factory=True)


def test_every_setting_is_documented_with_a_description() -> None:
    text = render_configuration_markdown()
    for section, info in Settings.model_fields.items():
        model = model_of(info.annotation)
        table = f"[{info.alias}]" if is_array(info.annotation) else section
        assert f"## `[{table}]`" in text
        for key, field in model.model_fields.items():  # type: ignore[union-attr]
            assert field.description, f"{section}.{key} has no description"
            assert f"| `{key}` |" in text
