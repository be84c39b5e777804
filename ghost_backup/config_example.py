"""The annotated example config, rendered from the settings model (``config example``).

The model in :mod:`ghost_backup.settings` is the single source of truth: every key, its
default and its description. ``ghost-backup config example`` prints this text, the sysext
image ships it as ``/usr/share/ghost-backup/config.example.toml`` and ``make docs`` writes it
to ``packaging/config.example.toml`` (``tools/configdoc.py`` renders the Markdown reference
from the same helpers). Pure functions only.
"""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ghost_backup.settings import Settings

GENERATED_NOTE = "generated from the settings model: `ghost-backup config example`"
# Values the example needs for the fields without a default (it must validate as is).
EXAMPLE_REQUIRED = {("destination", "bucket"): "ghost-backups",
                    ("destination", "account_id"): "0123456789abcdef0123456789abcdef"}


def settings_sections() -> list[tuple[str, type[BaseModel]]]:
    """Return each top-level table of the settings and the model behind it; an array of
    tables (``[[database]]``) is named ``[database]``."""
    return [(f"[{info.alias or name}]" if is_array(info.annotation) else name, model)
            for name, info in Settings.model_fields.items()
            if (model := model_of(info.annotation)) is not None]


def is_array(annotation: Any) -> bool:
    """Return True for a field holding a list of tables (TOML ``[[name]]``)."""
    return typing.get_origin(annotation) is tuple


def model_of(annotation: Any) -> type[BaseModel] | None:
    """Return the settings model a field holds (also inside ``X | None``), else None."""
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def toml_literal(value: Any) -> str:
    """Return ``value`` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def field_default(info: FieldInfo) -> tuple[bool, Any]:
    """Return (has a default, the default) for a settings field."""
    if info.is_required():
        return False, None
    return True, info.get_default(call_default_factory=True)


def _comment(text: str, prefix: str = "# ") -> list[str]:
    return textwrap.wrap(text, width=96, initial_indent=prefix, subsequent_indent=prefix)


def render_example_toml() -> str:
    """Return the annotated example config: every key with its default, commented out,
    except the required ones (filled with placeholders so the file validates as is)."""
    out = [
        "# ghost-backup configuration: copy to /etc/ghost-backup/config.toml, set the bucket",
        "# and the account id, then check it with `ghost-backup config validate`.",
        f"# ({GENERATED_NOTE}.)",
        "# Every key is listed with its default, commented out. Reference: docs/configuration.md",
        "# No key or secret belongs in this file: credentials are fetched just in time, every run.",
        "",
    ]
    for name, model in settings_sections():
        # An array of tables has no default entry: shown whole, commented out.
        out += _example_section(name, model, enabled=not name.startswith("["))
    return "\n".join(out)


def _example_section(name: str, model: type[BaseModel], *, enabled: bool) -> list[str]:
    """Return one TOML table; a disabled (optional, unset) table is commented out whole."""
    lead = "" if enabled else "# "
    out = [*_comment((model.__doc__ or "").strip()), f"{lead}[{name}]"]
    nested = []
    for key, info in model.model_fields.items():
        sub = model_of(info.annotation)
        if sub is not None:
            has_default, value = field_default(info)
            nested.append((f"{name}.{key}", sub, enabled and has_default and value is not None))
            continue
        out += _comment(info.description or "")
        required = EXAMPLE_REQUIRED.get((name, key)) if enabled else None
        has_default, value = field_default(info)
        if required is not None:
            out.append(f"{key} = {toml_literal(required)}")
        elif has_default and value is None:
            out.append(f"# {key} =   (unset)")
        elif has_default:
            out.append(f"# {key} = {toml_literal(value)}")
        else:
            out.append(f"# {key} = (required)")
    out.append("")
    for sub_name, sub, sub_enabled in nested:
        out += _example_section(sub_name, sub, enabled=sub_enabled)
    return out
