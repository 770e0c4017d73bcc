"""What the imports routes ask of an import service, whichever runs the imports: ``LocalImports``
(runner.py: in this process, jobs in the data directory) or ``StepFunctionsImports`` (aws.py: a Step
Functions execution per import, jobs in DynamoDB)."""

from __future__ import annotations

from typing import Any, Protocol

from runtime.libraries.imports.jobs import ImportJob


class ImportService(Protocol):
    def start(self, library: str, source: dict[str, str], *, dedup: bool, threshold: float | None) -> ImportJob:
        """Checks the request, records the job and starts it; the job as it is now (``running``)."""
        ...

    def get(self, library: str, import_id: str) -> ImportJob:
        """The job, or ``import_not_found`` (404)."""
        ...

    def list_jobs(self, library: str) -> list[ImportJob]: ...

    def cancel(self, library: str, import_id: str) -> ImportJob:
        """Stops a running job (what it added stays); ``import_finished`` (409) for an ended one."""
        ...

    def failures(self, job: ImportJob, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` items the job could not add, each with its field, code and message."""
        ...

    def failures_page(
        self, job: ImportJob, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the failed items, from where ``next_token`` (of the page before) says, and the
        token of the next page (None once the job has ended and nothing follows)."""
        ...

    def forget_library(self, library: str) -> None:
        """After the library is deleted: its running imports stop and their records and files go."""
        ...
