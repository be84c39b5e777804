"""Regenerate every generated document: docs/configuration.md and packaging/config.example.toml
from the settings model, and the exit-code tables of README.md and docs/exit-codes.md from
``ExitCode`` (between their ``<!-- exit-codes ... -->`` markers).

Run with `make docs`; tests/unit/test_generated_docs.py fails when any of them is stale.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from ghost_backup.config_example import render_example_toml
from ghost_backup.errors import format_exit_code_reference, format_exit_code_table
from tools.configdoc import render_configuration_markdown

ROOT = Path(__file__).resolve().parent.parent
_SECTION = re.compile(r"(<!-- exit-codes: [^\n]*-->\n).*?(<!-- end exit-codes -->\n)", re.S)


def _with_table(render: Callable[[], str]) -> Callable[[str], str]:
    def update(old: str) -> str:
        if not _SECTION.search(old):
            raise ValueError("no <!-- exit-codes --> markers")
        return _SECTION.sub(lambda m: m.group(1) + render() + m.group(2), old, count=1)
    return update


# path -> function of the file's current text returning what it must be
OUTPUTS: dict[Path, Callable[[str], str]] = {
    ROOT / "docs" / "configuration.md": lambda _old: render_configuration_markdown(),
    ROOT / "packaging" / "config.example.toml": lambda _old: render_example_toml(),
    ROOT / "README.md": _with_table(format_exit_code_table),
    ROOT / "docs" / "exit-codes.md": _with_table(format_exit_code_reference),
}


def expected_text(path: Path) -> str:
    """Return what the generated file at ``path`` must contain."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    return OUTPUTS[path](old)


def main() -> int:
    """Write every generated file; print which ones changed."""
    for path in OUTPUTS:
        text = expected_text(path)
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
