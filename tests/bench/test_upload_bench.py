"""bench/bench_upload.py runs end to end in its smoke mode (figures are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_upload_benchmark_smoke_run_prints_its_table():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_upload.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.split("Upload ways", 1)[1]
    for way in ("base64 JSON", "binary (image/jpeg)", "multipart/form-data"):
        figures = r"\s+\d+\.\d+" * 4 + r"\s+\d+\.\d+x"
        row = rf"{re.escape(way)}{figures}\s+(1\.15?x met|1\.15?x missed|no target)"
        assert re.search(row, table), table
