"""What the import command shows: the progress bar, and one line per import job."""

from __future__ import annotations

from typing import Any

from runtime.libraries.imports.counts import counts_of_summary, summary_line


def job_line(job: Any) -> str:
    return _line(job.import_id, job.status, job.library, job.source, summary_line(job.counts, job.total))


def job_line_of_answer(job: dict[str, Any]) -> str:
    """``job_line`` of an import as the API answers it."""
    counts = summary_line(counts_of_summary(job["counts"]), job["counts"].get("total"))
    return _line(job["import_id"], job["status"], job["library"], job["source"], counts)


def _line(import_id: str, status: str, library: str, source: dict[str, str], counts: str) -> str:
    where = next(iter(source.values()), "")
    return f"{import_id}  {status:<11}  {library!r} <- {where}: {counts}"


def progress_bar(total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", dynamic_ncols=True, smoothing=0.1)
