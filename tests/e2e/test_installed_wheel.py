"""The package as a newcomer gets it: the built wheel installed into a fresh virtualenv outside
the repository, with the ``rclone`` extra, started as systemd would (``PATH=/usr/bin:/bin``,
so the virtualenv's bin directory is not on PATH)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Stack, find_canaries, make_tree, render_toml

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_PATH = "/usr/bin:/bin"


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv holding the built wheel, and what building it printed."""

    venv: Path
    build_log: str

    @property
    def ghost_backup(self) -> str:
        return str(self.venv / "bin" / "ghost-backup")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    top = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(top / "dist"),
         str(REPO)], capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheel = next((top / "dist").glob("ghost_backup-*.whl"))
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[rclone]"],
                   check=True, timeout=600, capture_output=True)
    yield Installed(venv, build.stdout + build.stderr)
    shutil.rmtree(top, ignore_errors=True)


def _run(installed: Installed, *args: str, cwd: Path,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": SYSTEMD_PATH, "HOME": str(cwd), "LANG": "C.UTF-8", **(env or {})}
    return subprocess.run([installed.ghost_backup, *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


def test_building_the_wheel_prints_no_deprecation_warning(installed: Installed) -> None:
    assert not re.search(r"deprecat|BuildBackendWarning", installed.build_log, re.I)


def test_installed_wheel_carries_the_license_and_spdx_metadata(installed: Installed) -> None:
    site = next((installed.venv / "lib").glob("python3*/site-packages"))
    info = next(site.glob("ghost_backup-*.dist-info"))
    metadata = (info / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    assert "Apache License" in (info / "licenses" / "LICENSE").read_text()


def test_installed_help_and_config_commands_work_outside_the_repository(
        installed: Installed, tmp_path: Path) -> None:
    helped = _run(installed, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "exit codes" in helped.stdout
    assert "config" in helped.stdout

    example = _run(installed, "config", "example", cwd=tmp_path)
    assert example.returncode == 0, example.stderr
    tomllib.loads(example.stdout)
    (tmp_path / "config.toml").write_text(example.stdout)
    valid = _run(installed, "config", "validate", "--config", "config.toml", cwd=tmp_path)
    assert (valid.returncode, valid.stdout) == (0, "config.toml: valid\n"), valid.stderr

    (tmp_path / "bad.toml").write_text('[destination]\nbucket = "Bad_Name"\n[nope]\n')
    bad = _run(installed, "config", "validate", "--json", "--config", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 78
    assert '"valid": false' in bad.stdout


def test_installed_run_finds_the_extras_rclone_beside_its_interpreter(
        installed: Installed, stack: Stack) -> None:
    make_tree(stack.source, 20)
    data = stack.config_data()
    del data["rclone"]["binary"]  # the default, "rclone": not on PATH=/usr/bin:/bin here
    config = stack.tmp / "installed.toml"
    config.write_text(render_toml(data))
    beside = installed.venv / "bin" / "rclone"
    assert beside.is_file()

    check = _run(installed, "--config", str(config), "check", cwd=stack.tmp)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"at {beside} " in check.stdout

    run = _run(installed, "run", "--config", str(config), cwd=stack.tmp)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in stack.bucket_dir.rglob("*") if p.is_file()) == sorted(
        p.name for p in stack.source.rglob("*") if p.is_file())
    assert find_canaries(stack.secrets, texts=[check.stdout, check.stderr, run.stderr],
                         dirs=[stack.tmp, stack.runtime_dir.parent]) == []
