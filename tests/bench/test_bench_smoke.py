"""Every benchmark runs end to end in its seconds-long smoke mode (figures are not asserted)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCHES = {
    "bench_engines.py": "Engines",
    "bench_request.py": "Request path",
    "bench_concurrency.py": "Concurrency",
    "bench_coldstart.py": "Cold start",
    "gpu_check.py": "GPU check",
    "bench_openvino.py": "OpenVINO vs ONNX Runtime",
    "bench_powertools.py": "explorer handler",
    "bench_priority.py": "Text search under batch adds",
    "bench_models.py": "Models: images/s",
    "bench_duplicates.py": "Copy tier",
    "bench_export.py": "Export and restore",
}


def smoke_run(script: str, timeout: float = 600) -> str:
    """What ``bench/<script> --smoke`` prints, run as a user runs it; it must exit 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("script,title", BENCHES.items())
def test_benchmark_smoke_run_prints_its_table(script, title):
    printed = smoke_run(script)
    assert title in printed
    assert re.search(r"\b\d+\.\d+x\b", printed.split(title, 1)[1])  # a ratio column was printed


def test_upload_benchmark_prints_each_way_against_its_target():
    table = smoke_run("bench_upload.py").split("Upload ways", 1)[1]
    for way in ("base64 JSON", "binary (image/jpeg)", "multipart/form-data"):
        figures = r"\s+\d+\.\d+" * 4 + r"\s+\d+\.\d+x"
        row = rf"{re.escape(way)}{figures}\s+(1\.15?x met|1\.15?x missed|no target)"
        assert re.search(row, table), table


def test_import_benchmark_prints_its_ratio():
    printed = smoke_run("bench_import.py")
    table = printed.split("Bulk import", 1)[1]
    assert re.search(r"local import from a folder\s+\d+(\.\d+)?\s+\d+\.\d+x", table)
    assert "added 64 of 64" in printed


def test_library_benchmark_prints_every_case():
    lines = [line for line in smoke_run("bench_libraries.py", timeout=120).splitlines() if line.strip()]
    assert lines[1].split()[:3] == ["case", "p50", "ms"]
    cases = lines[3:]
    assert any(line.startswith("search top-10, 3,000 images") for line in cases)
    assert any(line.startswith("add with dedup, 3,000 images") and line.rstrip().endswith("/s") for line in cases)
    assert any(line.startswith("open data dir, 3,0") for line in cases)
    for operator in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$and", "$or"):
        assert any(line.startswith(f"{operator} (") and "3,000 images" in line for line in cases), operator


def test_cold_start_benchmark_splits_the_served_cold_start_into_steps():
    table = smoke_run("bench_coldstart.py").split("Where the cold start goes", 1)[1]
    for step in ("interpreter start", "imports: runtime.cli.serve", "ONNX engine", "app:", "first request"):
        assert re.search(rf"{re.escape(step)}.*\s\d+\.\d+\s+\d+\.\d+%", table), step
    assert re.search(r"first 200 / plain open_clip's cold start: \d+\.\d+x", table)
    assert "The ten biggest imports" in table


@pytest.mark.skipif(
    shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists(),
    reason="py-spy is not installed (.venv/bin/pip install py-spy)",
)
def test_upload_profile_shares_the_request_among_its_steps():
    table = smoke_run("profile_upload.py").split("Where a base64 request's time goes", 1)[1]
    steps, total = table.split("all the work above", 1)
    shares = [float(share) for share in re.findall(r"\s(\d+\.\d)%\s", steps)]
    assert shares and abs(sum(shares) - 100) < 1, table
    assert re.match(r"\s+100\.0%\s+\d+\.\d+", total), table
    assert "image decode" in table or "image open" in table, table
