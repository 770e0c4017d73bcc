"""The library benchmark's smoke run (seconds): it runs end to end and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_library_benchmark_smoke():
    result = subprocess.run(
        [sys.executable, "bench/bench_libraries.py", "--smoke"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[1].split()[:3] == ["case", "p50", "ms"]
    cases = lines[3:]
    assert any(line.startswith("search top-10, 3,000 images") for line in cases)
    assert any(line.startswith("add with dedup, 3,000 images") and line.rstrip().endswith("/s") for line in cases)
    assert any(line.startswith("open data dir, 3,0") for line in cases)
    for operator in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$and", "$or"):
        assert any(line.startswith(f"{operator} (") and "3,000 images" in line for line in cases), operator
