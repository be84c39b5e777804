"""Render the settings model as operator documentation (``docs/configuration.md``).

The model in :mod:`ghost_backup.settings` is the single source of truth: every field's type,
default, bounds and description land in ``docs/configuration.md``, written by
``tools/gen_docs.py`` (``make docs``). The example config is rendered by the shipped
:mod:`ghost_backup.config_example` (``ghost-backup config example``), whose helpers this module
reuses. A unit test fails when a generated file is stale. Pure functions only.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ghost_backup.config_example import (
    EXAMPLE_REQUIRED,
    field_default,
    model_of,
    render_example_toml,
    settings_sections,
    toml_literal,
)

__all__ = ["render_configuration_markdown", "render_example_toml"]

GENERATED_NOTE = "generated from the settings model by tools/gen_docs.py; do not edit"


def describe_type(annotation: Any) -> str:
    """Return a short operator-facing name for a field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" (optional)" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is tuple:
        return f"list of {describe_type(args[0])}s" if args else "list"
    names = {str: "string", bool: "boolean", int: "integer", float: "number", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def describe_bounds(info: FieldInfo) -> str:
    """Return the numeric bounds of a field, e.g. ``> 0, ≤ 120`` (empty if none)."""
    parts = []
    for item in info.metadata:
        if isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, Le):
            parts.append(f"≤ {item.le}")
    return ", ".join(parts)


def render_configuration_markdown() -> str:
    """Return ``docs/configuration.md``."""
    out = [
        "# Configuration",
        "",
        f"<!-- {GENERATED_NOTE} -->",
        "",
        "ghost-backup reads one TOML file: `--config PATH`, else `$GHOST_BACKUP_CONFIG`, else",
        "`/etc/ghost-backup/config.toml`. Unknown keys are errors, and a bad file is reported",
        "once with every problem listed (exit 78). Three environment variables from the",
        "shell-script flow override the file: `BACKUP_BUCKET`, `CF_ACCOUNT_ID` and `PROXY_URL`",
        "(a base URL; `/credentials/<provider>` is appended).",
        "",
        "The smallest useful file:",
        "",
        "```toml",
        "[destination]",
        f"bucket = {toml_literal(EXAMPLE_REQUIRED[('destination', 'bucket')])}",
        f"account_id = {toml_literal(EXAMPLE_REQUIRED[('destination', 'account_id')])}",
        "```",
        "",
        "`ghost-backup config example` prints a commented file with every key and its default",
        "(the same file is `packaging/config.example.toml` in the repository and",
        "`/usr/share/ghost-backup/config.example.toml` in the sysext image). Check a file offline",
        "(no network, no credentials) with `ghost-backup config validate --config FILE`; `check`",
        "then tries the whole chain, credentials and bucket included.",
        "",
        "No setting holds a key, by design: keys come from the credential proxy at run time.",
        "",
    ]
    for name, model in settings_sections():
        out += _markdown_section(name, model, level=2)
    return "\n".join(out)


def _markdown_section(name: str, model: type[BaseModel], *, level: int) -> list[str]:
    out = [f"{'#' * level} `[{name}]`", "", (model.__doc__ or "").strip(), "",
           "| key | type | default | description |", "|---|---|---|---|"]
    nested = []
    for key, info in model.model_fields.items():
        text = (info.description or "").replace("|", "\\|").replace("\n", " ")
        sub = model_of(info.annotation)
        if sub is not None:
            nested.append((f"{name}.{key}", sub))
            out.append(f"| `{key}` | table | see `[{name}.{key}]` below | {text} |")
            continue
        has_default, value = field_default(info)
        default = f"`{toml_literal(value)}`" if has_default and value is not None else (
            "none" if has_default else "**required**")
        kind = describe_type(info.annotation)
        bounds = describe_bounds(info)
        if bounds:
            kind += f" ({bounds})"
        out.append(f"| `{key}` | {kind} | {default} | {text} |")
    out.append("")
    for sub_name, sub in nested:
        out += _markdown_section(sub_name, sub, level=level + 1)
    return out
