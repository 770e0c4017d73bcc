"""One batch of an import through the one add path (``runtime/libraries/adding.py``): the local
runner and the AWS worker both run their batches here.

Per item, an import never stops: an item that cannot be read, decoded, named or described is a
failure in the batch's result, in the words a single add uses. What stops a job is a request-level
problem (``JobStopped``): the library is gone, full, or holds another model's vectors.

Idempotent by id: an item without an id is named by its content hash, and ids the library already
holds count as already present, so a batch done twice (a resumed job, a retried Lambda) adds nothing twice.
"""

from __future__ import annotations

from typing import Any

from runtime.embedder import Embedder, Input
from runtime.engines.priority import BATCH
from runtime.errors import DUPLICATE_ID, JOB_STOPPING_CODES, ApiError
from runtime.libraries.adding import AddItem, ExactSeen, Outcome, add_items
from runtime.libraries.imports.counts import count_of, zero_counts
from runtime.libraries.imports.sources import ImportItem, problem, problem_of
from runtime.libraries.store import Dedup, LibraryStore


class JobStopped(Exception):
    """A problem no later batch can avoid: the job ends ``failed`` with this error."""

    def __init__(self, error: ApiError):
        super().__init__(error.message)
        self.error = error


def given_before(item: ImportItem, earlier: list[ImportItem]) -> bool:
    """Whether an earlier item of the batch has the same id: the later one is that line's failure.
    (An id of an earlier batch is in the library by then: that one is ``already present``.)"""
    return item.id is not None and any(one.id == item.id for one in earlier)


def given_twice(item: ImportItem) -> dict[str, str]:
    return problem("id", DUPLICATE_ID, f"id: {item.id!r} is given twice in the manifest; the first one is imported")


class BatchImporter:
    def __init__(
        self,
        embedder: Embedder,
        store: LibraryStore[Any],
        *,
        local_files: bool = False,
        library_created: float | None = None,
    ):
        self.embedder = embedder
        self.store = store
        self.local_files = local_files
        """Locations may be file paths (the CLI's folder source); never for a request's items."""
        self.library_created = library_created
        """The library's ``create_time`` when the job started (see ``LibraryStore.add_batch``)."""

    def run(
        self, library: str, items: list[ImportItem], *, dedup: Dedup | None, seen: ExactSeen | None = None
    ) -> dict[str, Any]:
        """The batch's counts (``counts.COUNTS``) and its ``failures``."""
        counts = zero_counts()
        counts["processed"] = len(items)
        failures: list[dict[str, Any]] = []
        to_add: list[ImportItem] = []
        for item in items:
            if item.ignored is not None:
                counts[f"ignored_{item.ignored}"] += 1
            elif item.problem is not None or given_before(item, to_add):
                counts["failed"] += 1
                failures.append({"item": item.name, "position": item.position, **(item.problem or given_twice(item))})
            else:
                to_add.append(item)
        for item, outcome in zip(to_add, self.add(library, to_add, dedup, seen), strict=True):
            counts[count_of(outcome)] += 1
            if count_of(outcome) == "failed":
                assert isinstance(outcome, ApiError)
                failures.append({"item": item.name, "position": item.position, **problem_of(outcome, "url")})
        return {**counts, "failures": failures}

    def add(self, library: str, items: list[ImportItem], dedup: Dedup | None, seen: ExactSeen | None) -> list[Outcome]:
        adds = [AddItem(self.source_of(item), item.id, item.metadata, named_by_content=True) for item in items]
        try:
            return add_items(
                self.store,
                self.embedder,
                library,
                adds,
                dedup=dedup,
                priority=BATCH,
                seen=seen,
                library_created=self.library_created,
            )
        except ApiError as exc:
            if exc.code in JOB_STOPPING_CODES:
                raise JobStopped(exc) from exc
            raise

    def source_of(self, item: ImportItem) -> Input:
        """A local file reads as a single add of its bytes (``img``) would; anything else as a ``url``."""
        if self.local_files and "://" not in item.location:
            return Input("file", item.location, "img")
        return Input("url", item.location, "url")
