"""The AWS import worker: one Distributed Map batch, ``{"Items": [...], "BatchInput": {...}}``, per call.

Items are what the state machine's ItemReader gives: S3 ListObjectsV2 entries (``{"Key", "Size",
...}``) for a prefix, or the parsed lines of a JSONL manifest (``{"url", "id", "metadata"}``).
``BatchInput`` carries the job: ``import_id``, ``library``, ``dedup``, ``threshold`` and, for a
prefix, ``bucket`` and ``prefix``. The batch is read in parallel, embedded in one forward pass and
written with PutVectors (500 vectors a call at most) through the s3vectors store; the answer is
the batch's counts and failures, which the state machine's ResultWriter keeps in S3.

Errors Step Functions sees (by their names, in the state machine's Retry): ``StoreBusy`` (S3
Vectors or DynamoDB throttled or unavailable after the client's own retries, a timeout, or the
library's write lease busy: ``runtime/libraries/aws/faults.py``) is retried with backoff;
``ImportStopped`` (the library is gone, full, or of another model) is not. Any other store fault
(AccessDenied, a ValidationException...) would fail every retry the same way: the batch's items fail
with its code and message, and the import goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from runtime.embedder import Embedder
from runtime.engines import Engine
from runtime.errors import Overloaded, UpstreamError
from runtime.libraries.adding import dedup_of
from runtime.libraries.imports.batches import BatchImporter, JobStopped
from runtime.libraries.imports.counts import zero_counts
from runtime.libraries.imports.sources import ImportItem, item_of_entry, listed_item
from runtime.libraries.store import LibraryStore
from runtime.observability import record_import_progress
from runtime.settings import Settings

log = logging.getLogger("runtime.imports")
CLIENT_RETRIES = {"mode": "adaptive", "max_attempts": 10}
"""S3 Vectors and DynamoDB calls back off and retry throttling themselves before a batch gives up."""


class StoreBusy(Exception):
    """The store stayed throttled or busy: the state machine retries the batch (ids make it idempotent)."""


class ImportStopped(Exception):
    """No batch of this import can succeed: the library is gone, full, or holds another model's vectors."""


def items_of_event(event: dict[str, Any]) -> list[ImportItem]:
    batch_input = event.get("BatchInput") or {}
    prefix = batch_input.get("prefix", "")
    bucket = batch_input.get("bucket")
    items = []
    for position, raw in enumerate(event.get("Items") or []):
        if isinstance(raw, dict) and "Key" in raw and bucket:  # an object listed by ListObjectsV2
            items.append(listed_item(position, f"s3://{bucket}/{raw['Key']}", raw["Key"][len(prefix) :]))
        elif isinstance(raw, dict):  # a line of the manifest
            items.append(item_of_entry(position, raw))
        else:
            items.append(item_of_entry(position, {"url": None}))
    return items


def failed_batch(items: list[ImportItem], error: UpstreamError) -> dict[str, Any]:
    """Every item of the batch to add failed with the store's fault (none of them is known to be written)."""
    counts = {**zero_counts(), "processed": len(items)}
    failures = []
    for item in items:
        if item.ignored is not None:
            counts[f"ignored_{item.ignored}"] += 1
        else:
            counts["failed"] += 1
            failures.append({"item": item.name, "code": error.code, "message": error.message})
    return {**counts, "failures": failures}


class Worker:
    def __init__(self, settings: Settings, engine: Engine, store: LibraryStore[Any], jobs: Any = None):
        self.settings = settings
        self.importer = BatchImporter(Embedder(settings, engine), store)
        self.jobs = jobs
        """The import job records (``runtime.libraries.imports.aws.JobTable``), whose counts each batch adds to."""

    @classmethod
    def from_env(cls) -> Worker:
        import boto3
        from botocore.config import Config

        from runtime.engines import load_engine
        from runtime.libraries.aws.s3vectors import S3VectorsStore
        from runtime.libraries.imports.aws import JobTable

        settings = Settings.from_env()
        engine = load_engine(settings.replace(micro_batching=False))  # one batch per call: nothing to share
        config = Config(retries=CLIENT_RETRIES)
        store = S3VectorsStore(
            settings,
            engine.dimension,
            s3vectors=boto3.client("s3vectors", config=config),
            dynamodb=boto3.client("dynamodb", config=config),
        )
        jobs = (
            JobTable(settings.import_table, boto3.client("dynamodb", config=config)) if settings.import_table else None
        )
        return cls(settings, engine, store, jobs)

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        batch_input = event.get("BatchInput") or {}
        library, import_id = batch_input["library"], batch_input.get("import_id", "")
        given = batch_input.get("threshold")
        dedup, threshold = batch_input.get("dedup", True), float(given) if given is not None else None
        items = items_of_event(event)
        try:
            result = self.importer.run(library, items, dedup=dedup_of(dedup, threshold))
        except JobStopped as stop:
            raise ImportStopped(stop.error.message) from stop
        except Overloaded as exc:
            raise StoreBusy(exc.message) from exc
        except UpstreamError as exc:
            log.error("import %s: batch of %d failed: %s", import_id, len(items), exc.message)
            result = failed_batch(items, exc)
        # positions are within the batch, which means nothing to the reader of the results
        result["failures"] = [{k: v for k, v in failure.items() if k != "position"} for failure in result["failures"]]
        duplicates = sum(value for name, value in result.items() if name.startswith("duplicates_"))
        record_import_progress(imported=result["added"], duplicates=duplicates, failed=result["failed"])
        if self.jobs is not None and import_id:
            self.jobs.add_counts(import_id, result)
        log.info(
            "import %s: batch of %d: %s", import_id, len(items), {k: v for k, v in result.items() if k != "failures"}
        )
        return {"import_id": import_id, **result}
