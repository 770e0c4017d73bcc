"""The import benchmark runs end to end in its smoke mode and prints its ratio (figures are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_import_benchmark_smoke_run_prints_its_ratio():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_import.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.split("Bulk import", 1)[1]
    assert re.search(r"local import from a folder\s+\d+(\.\d+)?\s+\d+\.\d+x", table)
    assert "added 64 of 64" in done.stdout
