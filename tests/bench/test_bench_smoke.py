"""`make bench` keeps working: its smoke run (tiny sizes, one repetition) prints every table.

The figures of a smoke run mean nothing and are not checked; the full benchmark never runs in
`make test` (docs/performance.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_quick_run_prints_every_table(tmp_path: Path) -> None:
    raw = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(raw)],
                          capture_output=True, text=True, timeout=180, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    for heading in ("ghost/bare", "(a) small files", "(b) same tree", "(c) many files",
                    "(d) 2 large files", "supervisor peak RSS", "start-up, process start",
                    "JSON-line pipeline", "rclone tuning", "requests per night",
                    "goals on a no-change night", "R2 operations per no-change night",
                    "provider profile", "first credential request"):
        assert heading in done.stdout
    assert raw.read_text().startswith("{")
