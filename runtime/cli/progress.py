"""What the import command shows: the progress bar, and one line per import job."""

from __future__ import annotations

from typing import Any

from runtime.libraries.imports.counts import summary_line


def job_line(job: Any) -> str:
    source = next(iter(job.source.values()), "")
    return f"{job.import_id}  {job.status:<11}  {job.library!r} <- {source}: {summary_line(job.counts, job.total)}"


def job_line_of_answer(job: dict[str, Any]) -> str:
    """``job_line`` of an import as the API answers it."""
    from runtime.libraries.imports.counts import counts_of_summary

    source = next(iter(job["source"].values()), "")
    counts = summary_line(counts_of_summary(job["counts"]), job["counts"].get("total"))
    return f"{job['import_id']}  {job['status']:<11}  {job['library']!r} <- {source}: {counts}"


def progress_bar(total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", dynamic_ncols=True, smoothing=0.1)
