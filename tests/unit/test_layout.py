"""The layout keeps the promises docs/architecture.md makes: dependencies point one way, one
module starts processes, one holds the C library, and nothing dev-only ships."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ghost_backup.cli import build_parser

PACKAGE = Path(__file__).resolve().parents[2] / "ghost_backup"
LEAVES = ("credentials", "rclone", "host", "report", "audit", "databases", "settings", "errors",
          "logs")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_leaves_never_import_commands_or_the_cli(path: Path) -> None:
    top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if top not in LEAVES:
        return
    bad = {name for name in _imports(path)
           if name.startswith(("ghost_backup.commands", "ghost_backup.cli"))}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_ships_that_imports_test_or_tool_code(path: Path) -> None:
    assert not {n for n in _imports(path) if n.startswith(("tests", "tools"))}


def test_only_host_process_starts_processes_and_only_host_libc_loads_libc() -> None:
    for path in _modules():
        names = _imports(path)
        rel = path.relative_to(PACKAGE).as_posix()
        if rel != "host/process.py":
            assert "subprocess" not in names, rel
            assert "os.fork" not in names, rel
        if rel != "host/libc.py":
            assert not {n for n in names if n.startswith("ctypes")}, rel


def test_no_dev_only_module_in_the_package() -> None:
    names = {p.stem for p in _modules()}
    assert not names & {"devproxy", "devstack", "configdoc"}


def test_help_lists_no_dev_command() -> None:
    assert "dev-proxy" not in build_parser().format_help()


def test_run_reaches_its_source_listing_without_the_http_stack() -> None:
    # docs/performance.md, "Start-up": `run` imports requests, urllib3, tenacity and the
    # credential models while rclone lists the source, not before. What the CLI wires for
    # `run` and what the run builds before that listing must not pull them in.
    code = """if True:
        import os, sys
        from ghost_backup.cli import build_deps
        from ghost_backup.commands.run import run_backup
        from ghost_backup.credentials.sources import build_source
        from ghost_backup.report.alerts import HttpAlerts
        from ghost_backup.logs import Redactor
        from ghost_backup.settings import parse_settings
        settings = parse_settings(
            {"destination": {"bucket": "ghost-backups", "account_id": "a" * 32}}, {})
        build_deps(os.environ, alerts=HttpAlerts(settings.alerts, None, Redactor()))
        build_source(settings)
        http = ("requests", "urllib3", "tenacity", "charset_normalizer",
                "ghost_backup.credentials.http")
        print(sorted(m for m in (*http, "ghost_backup.credentials.model") if m in sys.modules))
        # The other HTTP sources use the credential models when parsing, not the HTTP stack.
        import ghost_backup.credentials.sources.aembit_edge
        import ghost_backup.credentials.sources.cloudflare_temp
        print(sorted(m for m in http if m in sys.modules))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["[]", "[]"]
