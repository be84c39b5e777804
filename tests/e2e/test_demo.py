"""`make demo` keeps working: the demo script runs the real path and reports zero canaries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_backs_up_the_sample_tree_without_leaking_keys() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "122 objects arrived" in result.stdout
    assert "compose secrets excluded: yes" in result.stdout
    assert "canary keys found in output: 0" in result.stdout
    assert "2 credential requests (one per run)" in result.stdout
    assert "2 database dumps (one per run), live ghost.db left out of the file sync: yes" in (
        result.stdout)
    assert "restored database: integrity_check ok, 2000 posts" in result.stdout
    assert "identical to the first night: yes" in result.stdout
