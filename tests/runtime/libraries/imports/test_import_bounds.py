"""An import's memory does not grow with its source: a manifest is read a line at a time, listed
to the job's items file, and its batches are read back from there as they are asked for."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pytest

from runtime.libraries.imports.sources import bounded_lines, manifest_items

MEASURE = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    from runtime.libraries.imports.jobs import FileJobs, ImportJob
    from runtime.libraries.imports.runner import ImportRunner, pending_batches
    from runtime.settings import Settings

    lines = int(sys.argv[1])
    data = Path(tempfile.mkdtemp())
    manifest = data / "manifest.jsonl"
    with open(manifest, "w") as out:
        for n in range(lines):
            line = {"url": f"https://example.com/{n}.png", "id": f"sku-{n}", "metadata": {"n": n}}
            out.write(json.dumps(line) + "\\n")
    jobs = FileJobs(data)
    job = jobs.save(ImportJob("0" * 32, "products", {"manifest": str(manifest)}))
    runner = ImportRunner.__new__(ImportRunner)  # only its listing: no engine, no store
    runner.settings, runner.jobs = Settings(data_dir=str(data)), jobs
    total = runner._list(job)
    batches = sum(1 for _ in pending_batches(jobs, job, set()))
    peak = [int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM")]
    print(json.dumps({"total": total, "batches": batches, "peak_kb": peak[0]}))
    """
)


def listed_in_a_process(lines: int) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(lines)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_listing_and_batching_a_manifest_takes_the_same_memory_at_ten_times_its_length():
    small, large = listed_in_a_process(20_000), listed_in_a_process(200_000)
    assert (small["total"], large["total"]) == (20_000, 200_000)
    assert large["batches"] == 200_000 // 32
    # Before, every item was held at once: 180,000 more items were ~200 MB more at the peak.
    assert large["peak_kb"] - small["peak_kb"] < 16 * 1024, (small, large)


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.read_so_far = 0

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.read_so_far += len(line)
        return line


def test_an_over_long_line_is_counted_as_it_is_read_and_never_held():
    long = b'{"url": "https://example.com/' + b"a" * (10 * 1024 * 1024) + b'"}'
    good = json.dumps({"url": "https://example.com/b.png", "id": "b"}).encode()
    reader = CountingReader(long + b"\n" + good + b"\n")
    lines = bounded_lines(reader)
    assert next(lines) == len(long)
    assert next(lines) == good
    items = list(manifest_items(io.BytesIO(long + b"\n" + good)))
    assert items[0].problem is not None and items[0].problem["code"] == "json_too_large"
    assert items[0].problem["message"] == f"line 1: {len(long):,} bytes, over a manifest line's 65,536"
    assert items[1].id == "b"


def test_a_manifests_lines_are_read_one_at_a_time():
    data = b"".join(json.dumps({"url": f"https://example.com/{n}.png"}).encode() + b"\n" for n in range(1000))
    reader = CountingReader(data)
    first = next(manifest_items(reader))
    assert first.location == "https://example.com/0.png"
    assert reader.read_so_far == len(b'{"url": "https://example.com/0.png"}\n')  # its first line only


def test_a_job_recorded_before_failures_had_their_file_keeps_them(tmp_path):
    """Before, each results line held its batch's failures: they move to failures.jsonl, in order."""
    from runtime.libraries.imports.counts import zero_counts
    from runtime.libraries.imports.jobs import FileJobs, ImportJob

    jobs = FileJobs(tmp_path)
    job = jobs.save(ImportJob("a" * 32, "products", {"manifest": "https://example.com/m.jsonl"}))
    old_lines = []
    for batch in range(3):
        failures = [
            {
                "item": f"sku-{batch}-{n}",
                "position": batch * 2 + n,
                "field": "url",
                "code": "url_unreachable",
                "message": "url: the server answered HTTP 404",
            }
            for n in range(2)
        ]
        counts = {**zero_counts(), "processed": 2, "failed": 2}
        old_lines.append(json.dumps({"batch": batch, **counts, "failures": failures}))
    (jobs.folder_of(job.import_id) / "results.jsonl").write_text("\n".join(old_lines) + "\n")
    counts, finished = jobs.restore(job.import_id)
    assert finished == {0, 1, 2} and counts["failed"] == 6
    assert [one["position"] for one in jobs.failures(job.import_id)] == list(range(6))
    assert all("failures" not in result for result in jobs.results(job.import_id))
    jobs.upgrade(job.import_id)  # once only
    assert len(jobs.failures(job.import_id)) == 6
