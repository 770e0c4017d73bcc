"""Every benchmark runs end to end in its seconds-long smoke mode (figures are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = {
    "bench_engines.py": "Engines",
    "bench_request.py": "Request path",
    "bench_concurrency.py": "Concurrency",
    "bench_coldstart.py": "Cold start",
    "gpu_check.py": "GPU check",
    "bench_openvino.py": "OpenVINO vs ONNX Runtime",
    "bench_powertools.py": "explorer handler",
}


@pytest.mark.slow
@pytest.mark.parametrize("script,title", BENCHES.items())
def test_benchmark_smoke_run_prints_its_table(script, title):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert title in done.stdout
    assert re.search(r"\b\d+\.\d+x\b", done.stdout.split(title, 1)[1])  # a ratio column was printed
