"""The shipped systemd units: `systemd-analyze verify` is clean and the service's
`systemd-analyze security --offline=true` exposure stays at or below 2.0 (docs/security.md).

`verify` runs against a throwaway root (the host's own unit directory copied in, the units
under etc/systemd/system, a stub /usr/bin/ghost-backup), so it checks the units as an
operator installs them without touching the host. Skipped, with the reason printed, only
when systemd-analyze is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
UNITS = ("ghost-backup.service", "ghost-backup.timer", "ghost-backup-alert@.service",
         "ghost-backup-resume.service")
HOST_UNITS = Path("/usr/lib/systemd/system")
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def _analyze(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=cwd)


def exposure(unit: Path) -> float:
    """Return the overall exposure `systemd-analyze security --offline=true` gives ``unit``."""
    done = _analyze("security", "--offline=true", "--no-pager", unit.name, cwd=unit.parent)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


@pytest.fixture
def installed_root(tmp_path: Path) -> Path:
    """A filesystem root holding the host's units, ours, and a stub /usr/bin/ghost-backup."""
    shutil.copytree(HOST_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    etc = tmp_path / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(UNITS_DIR / name, etc / name)
    for name in ("usr/bin/ghost-backup", "usr/bin/systemctl", "usr/bin/systemd-tmpfiles",
                 "bin/sh"):  # what the units' Exec*= lines run
        stub = tmp_path / name
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return tmp_path


def test_units_pass_systemd_analyze_verify_without_a_warning(installed_root: Path) -> None:
    etc = installed_root / "etc/systemd/system"
    done = _analyze("verify", f"--root={installed_root}", "--man=no", *UNITS,
                    "ghost-backup-alert@ghost-backup.service", cwd=etc)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_drop_in_examples_pass_verify(installed_root: Path) -> None:
    etc = installed_root / "etc/systemd/system"
    for example in UNITS_DIR.glob("*.d/*.conf.example"):
        target = etc / example.parent.name / example.name.removesuffix(".example")
        target.parent.mkdir(exist_ok=True)
        shutil.copy(example, target)
    done = _analyze("verify", f"--root={installed_root}", "--man=no", "ghost-backup.service",
                    "ghost-backup.timer", cwd=etc)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_verify_would_catch_a_broken_unit(installed_root: Path) -> None:
    etc = installed_root / "etc/systemd/system"
    with (etc / "ghost-backup.service").open("a") as unit:
        unit.write("ProtectEverything=yes\n")
    done = _analyze("verify", f"--root={installed_root}", "--man=no", "ghost-backup.service",
                    cwd=etc)
    assert "Unknown key" in done.stderr


def test_service_exposure_is_at_most_two(capsys: pytest.CaptureFixture[str]) -> None:
    score = exposure(UNITS_DIR / "ghost-backup.service")
    with capsys.disabled():
        print(f"\nghost-backup.service exposure: {score}")
    assert score <= MAX_EXPOSURE


def test_alert_unit_exposure_is_at_most_two() -> None:
    assert exposure(UNITS_DIR / "ghost-backup-alert@.service") <= MAX_EXPOSURE
