"""Docs that are true: every config key, command, flag, exit code, unit directive and
documented default named in README.md and docs/ exists in the code or the units.

A claim is found where operators would copy it from: a backticked span, a code block, or a
unit file comment. Prose without code formatting is not checked.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import ghost_backup
from ghost_backup.cli import build_parser
from ghost_backup.config_example import field_default, model_of
from ghost_backup.errors import ExitCode
from ghost_backup.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGING = sorted(p for p in (ROOT / "packaging").rglob("*") if p.is_file())
SECTIONS = "|".join([*Settings.model_fields, "database"])
GLOBAL_FLAGS = {"--config", "-v", "--verbose", "-h", "--help"}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def code_snippets(text: str) -> list[str]:
    """Return the backticked spans and the lines of code blocks of a Markdown text."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            out.append(line.strip())
        else:
            out += re.findall(r"`([^`\n]+)`", line)
    return out


# --- config keys ------------------------------------------------------------------------------

def config_path_exists(dotted: str) -> bool:
    """Return whether ``section.key[.key...]`` is a field of the settings model."""
    model: type[BaseModel] | None = Settings
    for part in dotted.split("."):
        fields = {} if model is None else {
            name: info for key, info in model.model_fields.items()
            for name in (key, info.alias) if name}  # [[database]] is the alias of databases
        if part not in fields:
            return False
        model = model_of(fields[part].annotation)
    return True


def _code_reference_exists(dotted: str) -> bool:
    """``rclone.classify_exit``, ``credentials.md``: a module attribute or a file, not a key."""
    if (ROOT / "docs" / dotted).exists() or any(ROOT.glob(f"ghost_backup/**/{dotted}")):
        return True
    target: Any = ghost_backup
    for part in dotted.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            try:
                target = __import__(f"{target.__name__}.{part}", fromlist=[part])
            except (ImportError, AttributeError):
                return False
    return True


# Dotted words in the docs that are neither a key nor a module attribute, and why.
NOT_CONFIG_KEYS = {
    "source.fetch": "the CredentialSource method, in the architecture's sequence diagram",
    "rclone.conf": "rclone's own config file name",
    "rclone.raw": "the rclone sysext image's link name",
    "metrics.prom": "the textfile the service stages in its state directory",
}


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_config_key_named_in_the_docs_exists(doc: Path) -> None:
    keys = set(re.findall(rf"`((?:{SECTIONS})(?:\.[a-z_]+)+)", doc.read_text()))
    wrong = sorted(k for k in keys if not config_path_exists(k)
                   and k not in NOT_CONFIG_KEYS and not _code_reference_exists(k))
    assert wrong == [], f"{doc.name} names config keys the settings model lacks"


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_toml_example_in_the_docs_uses_real_keys(doc: Path) -> None:
    def walk(data: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                out += walk(value, path)
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                out += [p for item in value for p in walk(item, path)]  # [[array.of.tables]]
            elif not config_path_exists(path):
                out.append(path)
        return out

    wrong = [p for block in _toml_blocks(doc.read_text()) for p in walk(tomllib.loads(block), "")]
    assert wrong == []


def _default_seconds(dotted: str) -> float | None:
    section, key = dotted.rsplit(".", 1)
    model: type[BaseModel] | None = Settings
    for part in section.split("."):
        model = model_of(model.model_fields[part].annotation) if model else None
    if model is None or key not in model.model_fields:
        return None
    has, value = field_default(model.model_fields[key])
    return float(value) if has and isinstance(value, int | float) else None


# Claims like: `credentials.max_total_seconds`, 45 s by default; rclone.term_timeout_seconds (20 s)
_DEFAULT_CLAIM = re.compile(
    rf"`?((?:{SECTIONS})\.[a-z_]+)`?(?:,\s*|\s+\()(\d+(?:\.\d+)?)\s*(s|min)\b(?:\)| by default)")


@pytest.mark.parametrize("path", DOCS + PACKAGING, ids=_ids(DOCS + PACKAGING))
def test_every_default_quoted_next_to_a_key_is_the_models(path: Path) -> None:
    text = " ".join(line.lstrip("# ") for line in path.read_text(errors="replace").splitlines())
    wrong = []
    for key, number, unit in _DEFAULT_CLAIM.findall(text):
        actual = _default_seconds(key)
        claimed = float(number) * (60 if unit == "min" else 1)
        if actual is not None and actual != claimed:
            wrong.append(f"{key}: says {number} {unit}, the default is {actual:g} s")
    assert wrong == []


# --- commands and flags -----------------------------------------------------------------------

_INVOCATION = re.compile(r"(?:^|[;&|(]\s*|\$\(?\s*|sudo\s+)ghost-backup((?:\s+[^\s|;&#`)]+)*)")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Return every parser by its command path: ``""``, ``run``, ``config validate``."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())

    walk(build_parser(), "")
    return found


def check_invocation(words: list[str]) -> str | None:
    """Return what is wrong with ``ghost-backup WORDS`` (None: the command and flags exist)."""
    parsers = _parsers()
    path, flags, i = "", [], 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            flags.append((path, word.split("=")[0]))
            if word in {"--config"}:
                i += 1
        elif word.startswith(("[", "<")) or word.isupper() or not re.fullmatch(r"[a-z-]+", word):
            pass  # a placeholder or an argument value
        elif f"{path} {word}".strip() in parsers:
            path = f"{path} {word}".strip()
        elif any(p.startswith(f"{path} ") or (path == "" and p) for p in parsers):
            return f"no command {f'{path} {word}'.strip()!r}"  # expected a (sub)command here
        i += 1
    for where, flag in flags:
        options = {o for p, parser in parsers.items() if path.startswith(p) or p == where
                   for a in parser._actions for o in a.option_strings if p in ("", where, path)}
        if flag.strip("[]") not in options | {"--version"}:
            return f"{path or 'ghost-backup'} has no flag {flag}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_command_line_in_the_docs_parses(doc: Path) -> None:
    wrong = []
    for snippet in code_snippets(doc.read_text()):
        for match in _INVOCATION.finditer(snippet):
            words = [w.strip("[]\"'") for w in match.group(1).split()]
            problem = check_invocation([w for w in words if w])
            if problem:
                wrong.append(f"`ghost-backup {match.group(1).strip()}`: {problem}")
    assert wrong == []


def test_the_invocation_checker_catches_what_it_should() -> None:
    assert check_invocation(["run", "--dry-run"]) is None
    assert check_invocation(["--config", "X", "config", "validate", "--json"]) is None
    assert check_invocation(["restore", "--to", "DIR", "--path", "SUB"]) is None
    assert check_invocation(["lint"]) == "no command 'lint'"
    assert check_invocation(["config", "lint"]) == "no command 'config lint'"
    assert check_invocation(["completion", "bash"]) is None
    assert check_invocation(["run", "--now"]) == "run has no flag --now"


# --- exit codes -------------------------------------------------------------------------------

# The claim and the paragraph before it: rclone's own codes (7, 9, 10), a helper's or a
# dump's are named in a paragraph about them.
_EXIT_CLAIM = re.compile(r"((?:[^\n]|\n(?!\s*\n)){0,300})\bexit(?:s|ed)?(?: code| status| with)?"
                         r"\s+(\d{1,3})\b")


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_exit_code_in_the_docs_is_in_the_table(doc: Path) -> None:
    known = {int(code) for code in ExitCode}
    wrong = [f"exit {code} after {before[-60:].strip()!r}" for before, code in _EXIT_CLAIM.findall(
        doc.read_text()) if int(code) not in known and not re.search(r"rclone|helper|dump", before)]
    assert wrong == []


def test_exit_code_doc_does_not_promise_alerts_a_bad_config_cannot_send() -> None:
    text = (ROOT / "docs" / "exit-codes.md").read_text()
    assert "Every non-zero exit also logs one line" in text
    assert "and reaches the configured alert channels." not in text.split("<!--")[0]


# --- unit directives --------------------------------------------------------------------------

def _packaging_directives() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for path in PACKAGING:
        for line in path.read_text(errors="replace").splitlines():
            match = re.match(r"^\s*([A-Z][A-Za-z]+)=(.*)$", line)
            if match:
                values.setdefault(match.group(1), []).append(match.group(2).strip())
    return values


@cache
def _systemd_directives() -> frozenset[str] | None:
    binary = shutil.which("systemd", path="/usr/lib/systemd:/lib/systemd")
    if binary is None:
        return None
    out = subprocess.run([binary, "--dump-configuration-items"], capture_output=True,
                         text=True, check=False, timeout=30).stdout
    return frozenset(re.findall(r"^([A-Za-z]+)=", out, re.M))


# Names written Name=VALUE in the docs that are not directives of a unit file.
NOT_UNIT_DIRECTIVES = {
    "Result": "a property `systemctl show` reports",
    "DefaultEnvironment": "systemd-system.conf(5), the manager's own settings",
}
# Directives whose values in the docs are the operator's own (a broker's socket, a path).
OPERATOR_VALUES = {"LoadCredential", "SetCredentialEncrypted", "Environment", "ReadWritePaths"}
# Directive=value pairs the docs quote on purpose with another value than the units'.
OTHER_VALUES = {
    ("WatchdogSec", "4s"): "the system test's drop-in",
    ("ProtectHome", "tmpfs"): "the system test's drop-in",
    ("ReadOnlyPaths", "-"): "the '-' prefix, explained",
    ("SystemCallFilter", "@system-service ~@privileged ~@resources"): "our two lines as one",
}


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_every_unit_directive_in_the_docs_is_set_as_the_units_set_it(doc: Path) -> None:
    ours = _packaging_directives()
    systemd = _systemd_directives()
    wrong = []
    for snippet in code_snippets(doc.read_text()):
        # CamelCase only: ALLCAPS names are sd_notify messages, os-release fields, variables.
        match = re.fullmatch(r"([A-Z][a-z]+[A-Za-z]*)=(\S[^`]*)?", snippet.strip())
        if not match or match.group(1) in NOT_UNIT_DIRECTIVES:
            continue
        name, value = match.group(1), (match.group(2) or "").strip()
        if name in ours:
            if value and name not in OPERATOR_VALUES and (name, value) not in OTHER_VALUES \
                    and not re.search(
                    r"[<%]|\.\.\.|NAME", value) and not any(
                    value == v or value in v.split() for v in ours[name]):
                wrong.append(f"{name}={value}: the units say {name}={'|'.join(ours[name])}")
        elif systemd is not None and name not in systemd:
            wrong.append(f"{name}= is neither in our units nor a systemd directive")
    assert wrong == []


def test_on_failure_passes_the_unit_name_without_its_suffix() -> None:
    # systemd.unit(5)'s own example is OnFailure=failure-handler@%N.service: %n would make the
    # handler's instance "ghost-backup.service", its name ...@ghost-backup.service.service.
    unit = (ROOT / "packaging" / "systemd" / "ghost-backup.service").read_text()
    assert "OnFailure=ghost-backup-alert@%N.service" in unit


def test_the_package_documentation_url_is_the_units() -> None:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    units = ROOT / "packaging" / "systemd"
    for unit in sorted([*units.glob("*.service"), *units.glob("*.timer")]):
        found = re.findall(r"^Documentation=(\S+)$", unit.read_text(), re.M)
        assert found == [urls["Documentation"]], unit.name
