"""Regenerate docs/configuration.md and packaging/config.example.toml from the settings model.

Run with `make docs`; tests/unit/test_config_docs.py fails when either file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ghost_backup.configdoc import render_configuration_markdown, render_example_toml

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = {
    ROOT / "docs" / "configuration.md": render_configuration_markdown,
    ROOT / "packaging" / "config.example.toml": render_example_toml,
}


def main() -> int:
    """Write every generated file; print which ones changed."""
    for path, render in OUTPUTS.items():
        text = render()
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
