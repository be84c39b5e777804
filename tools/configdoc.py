"""Render the settings model as operator documentation and as an example config.

The model in :mod:`ghost_backup.settings` is the single source of truth: every field's type,
default, bounds and description land in ``docs/configuration.md`` and
``packaging/config.example.toml``, both written by ``tools/gen_docs.py`` (``make docs``).
A unit test fails when either file is stale. Pure functions only.
"""

from __future__ import annotations

import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ghost_backup.settings import Settings

GENERATED_NOTE = "generated from the settings model by tools/gen_docs.py; do not edit"
# Values the example needs for the fields without a default (it must validate as is).
EXAMPLE_REQUIRED = {("destination", "bucket"): "ghost-backups",
                    ("destination", "account_id"): "0123456789abcdef0123456789abcdef"}


def _sections() -> list[tuple[str, type[BaseModel]]]:
    return [(name, model) for name, info in Settings.model_fields.items()
            if (model := model_of(info.annotation)) is not None]


def model_of(annotation: Any) -> type[BaseModel] | None:
    """Return the settings model a field holds (also inside ``X | None``), else None."""
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


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


def _default(info: FieldInfo) -> tuple[bool, Any]:
    if info.is_required():
        return False, None
    return True, info.get_default(call_default_factory=True)


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
        "A commented file with every key is `packaging/config.example.toml` in the repository;",
        "the sysext image ships a short Flatcar starter as",
        "`/usr/share/ghost-backup/config.example.toml`. Check a file with",
        "`ghost-backup --config FILE check`.",
        "",
        "No setting holds a key, by design: keys come from the credential proxy at run time.",
        "",
    ]
    for name, model in _sections():
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
        has_default, value = _default(info)
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


def _comment(text: str, prefix: str = "# ") -> list[str]:
    return textwrap.wrap(text, width=96, initial_indent=prefix, subsequent_indent=prefix)


def render_example_toml() -> str:
    """Return ``packaging/config.example.toml``: every key with its default, commented out,
    except the required ones (filled with placeholders so the file validates as is)."""
    out = [
        "# ghost-backup configuration: /etc/ghost-backup/config.toml",
        f"# ({GENERATED_NOTE}.)",
        "# Every key is listed with its default, commented out. Reference: docs/configuration.md",
        "# No key or secret belongs in this file: credentials come from the proxy at run time.",
        "",
    ]
    for name, model in _sections():
        out += _example_section(name, model, enabled=True)
    return "\n".join(out)


def _example_section(name: str, model: type[BaseModel], *, enabled: bool) -> list[str]:
    """Return one TOML table; a disabled (optional, unset) table is commented out whole."""
    lead = "" if enabled else "# "
    out = [*_comment((model.__doc__ or "").strip()), f"{lead}[{name}]"]
    nested = []
    for key, info in model.model_fields.items():
        sub = model_of(info.annotation)
        if sub is not None:
            has_default, value = _default(info)
            nested.append((f"{name}.{key}", sub, enabled and has_default and value is not None))
            continue
        out += _comment(info.description or "")
        required = EXAMPLE_REQUIRED.get((name, key)) if enabled else None
        has_default, value = _default(info)
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
