"""Local imports: jobs run inside the server (or the CLI), durable in the data directory.

The engine is kept busy: ``import_batches_in_flight`` batches are worked on at once, so while one
batch is in its forward pass (through the engine's micro-batcher, shared with the API's requests)
the next ones are being fetched and decoded (the server's reader and decoder threads, under its
decode memory budget: the batches take the API's add path). A job killed with its
process is resumed by the next ``LocalImports`` on the same data directory (see jobs.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from runtime.embedder import Embedder
from runtime.errors import ApiError, BadRequest, Conflict
from runtime.libraries.adding import ExactSeen, dedup_threshold
from runtime.libraries.imports.batches import BatchImporter, JobStopped
from runtime.libraries.imports.jobs import RESULTS_FILE, FileJobs, ImportJob, new_import_id
from runtime.libraries.imports.sources import (
    ImportItem,
    check_bucket,
    folder_items,
    manifest_items,
    read_manifest,
    s3_prefix_items,
    split_s3,
)
from runtime.libraries.store import LibraryStore
from runtime.libraries.values import LONE_SURROGATE, writable_as_utf8
from runtime.settings import Settings

log = logging.getLogger("runtime.imports")
Progress = Callable[[ImportJob, dict[str, Any]], None]


def check_source(source: dict[str, str], settings: Settings) -> None:
    """The request-level checks, before a job is made: one known source, a bucket on the allow list."""
    if len(source) != 1 or next(iter(source)) not in ("source", "manifest", "folder"):
        raise BadRequest("request body: give source (an s3:// prefix) or manifest (a JSONL URL)", code="missing_input")
    kind, location = next(iter(source.items()))
    if not writable_as_utf8(location):  # the job record keeps it, and every answer about the job shows it
        raise BadRequest(f"{kind}: {LONE_SURROGATE}", code="invalid_value")
    if kind == "source":
        check_bucket(split_s3(location, "source")[0], settings, "source")
    elif kind == "manifest" and location.lower().startswith("s3://"):
        check_bucket(split_s3(location, "manifest")[0], settings, "manifest")
    elif kind == "manifest" and not location.lower().startswith(("https://", "http://")):
        raise BadRequest("manifest: give an s3:// or https:// URL of a JSONL file", code="invalid_source")


def list_items(source: dict[str, str], settings: Settings) -> Iterator[ImportItem]:
    kind, location = next(iter(source.items()))
    if kind == "folder":
        return folder_items(location)
    if kind == "source":
        return s3_prefix_items(location, settings)
    if "://" not in location:  # the CLI's local manifest file
        with open(location, "rb") as manifest:
            return manifest_items(manifest.read())
    return manifest_items(read_manifest(location, settings))


class ImportRunner:
    """Runs one job to its end, batch by batch; resumable (see jobs.py)."""

    def __init__(self, embedder: Embedder, store: LibraryStore[Any], jobs: FileJobs):
        self.settings = embedder.settings
        self.embedder = embedder
        self.store = store
        self.jobs = jobs
        self._job_lock = threading.Lock()

    def run(
        self,
        job: ImportJob,
        *,
        cancelled: threading.Event | None = None,
        stopping: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> ImportJob:
        """Run to the end, or until ``cancelled`` (the job ends ``cancelled``) or ``stopping`` (the
        server shuts down: the job stays ``running`` and the next start resumes it)."""
        cancelled = cancelled or threading.Event()
        stopping = stopping or threading.Event()
        try:
            items = self._items(job)
            job = self.jobs.save(replace(job, total=len(items)))
            done = self.jobs.read_results(job.import_id)
            finished = {result["batch"] for result in done}
            job = replace(job, counts=dict.fromkeys(job.counts, 0))
            for result in done:
                job = job.with_counts(result)
            job = self._run_batches(job, items, finished, cancelled, stopping, progress)
            if stopping.is_set() and not cancelled.is_set():
                return job
            status = "cancelled" if cancelled.is_set() else "succeeded"
            return self.jobs.save(replace(job, status=status, end_time=time.time()))
        except JobStopped as stop:
            return self._fail(job, stop.error.message)
        except ApiError as exc:
            return self._fail(job, exc.message)
        except Exception as exc:
            log.exception("import %s failed", job.import_id)
            return self._fail(job, f"internal error ({exc.__class__.__name__})")

    def _fail(self, job: ImportJob, message: str) -> ImportJob:
        latest = self.jobs.get(job.library, job.import_id)
        return self.jobs.save(replace(latest, status="failed", error=message, end_time=time.time()))

    def _items(self, job: ImportJob) -> list[ImportItem]:
        listed = self.jobs.read_items(job.import_id)
        if listed is None:
            import json

            items = list(list_items(job.source, self.settings))
            self.jobs.write_items(job.import_id, (json.dumps(item.to_json()) for item in items))
            return items
        return [ImportItem.from_json(item) for item in listed]

    def _run_batches(
        self,
        job: ImportJob,
        items: list[ImportItem],
        finished: set[int],
        cancelled: threading.Event,
        stopping: threading.Event,
        progress: Progress | None,
    ) -> ImportJob:
        threshold = dedup_threshold(job.dedup, job.threshold, self.settings)
        seen = ExactSeen()
        size = job.batch_size
        todo = [n for n in range(0, (len(items) + size - 1) // size) if n not in finished]
        in_flight = max(1, self.settings.import_batches_in_flight)
        with ThreadPoolExecutor(in_flight, thread_name_prefix="import-batch") as batches:
            importer = BatchImporter(self.embedder, self.store, local_files=job.source.keys() == {"folder"})

            def one(n: int) -> dict[str, Any]:
                result = importer.run(job.library, items[n * size : (n + 1) * size], threshold=threshold, seen=seen)
                return {"batch": n, **result}

            pending: set[Future[Any]] = set()
            queue = iter(todo)
            while True:
                while len(pending) < in_flight and not (cancelled.is_set() or stopping.is_set()):
                    n = next(queue, None)
                    if n is None:
                        break
                    pending.add(batches.submit(one, n))
                if not pending:
                    return job
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()  # JobStopped ends the job; the batches in flight finish first
                    self.jobs.append_result(job.import_id, result)
                    with self._job_lock:
                        job = self.jobs.save(job.with_counts(result))
                    if progress is not None:
                        progress(job, result)


class LocalImports:
    """The API's imports on this machine: each job runs in a thread of the server process."""

    def __init__(self, embedder: Embedder, store: LibraryStore[Any]):
        self.settings = embedder.settings
        self.store = store
        self.jobs = FileJobs(self.settings.data_dir)
        self.runner = ImportRunner(embedder, store, self.jobs)
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = threading.Event()

    def start(self, library: str, source: dict[str, str], *, dedup: bool, threshold: float | None) -> ImportJob:
        check_source(source, self.settings)
        dedup_threshold(dedup, threshold, self.settings)  # a bad threshold is a 400 now, not a failed job later
        self.store.get_library(library)  # an unknown library is a 404 now, not a failed job later
        import_id = new_import_id()
        job = ImportJob(
            import_id,
            library,
            source,
            dedup=dedup,
            threshold=threshold,
            batch_size=self.settings.import_batch,
            results=str(self.jobs.folder_of(import_id) / RESULTS_FILE),
        )
        self.jobs.save(job)
        self._launch(job)
        return job

    def resume(self) -> list[str]:
        """Start again every job a killed process left running; their ids."""
        running = [job for job in self.jobs.all() if job.status == "running" and job.import_id not in self._threads]
        for job in running:
            log.info("resuming import %s into %r", job.import_id, job.library)
            self._launch(job)
        return [job.import_id for job in running]

    def stop(self, timeout: float = 120) -> None:
        """At shutdown, before the store closes: the batches in flight finish, the jobs stay running."""
        self._stopping.set()
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def get(self, library: str, import_id: str) -> ImportJob:
        return self.jobs.get(library, import_id)

    def list_jobs(self, library: str) -> list[ImportJob]:
        return self.jobs.list_jobs(library)

    def failures(self, job: ImportJob, limit: int) -> list[dict[str, Any]]:
        return self.jobs.failures(job.import_id, limit)

    def cancel(self, library: str, import_id: str) -> ImportJob:
        job = self.jobs.get(library, import_id)
        if job.finished:
            raise Conflict(f"import {import_id!r} has already {job.status}", code="import_finished")
        self._cancel.setdefault(import_id, threading.Event()).set()
        thread = self._threads.get(import_id)
        if thread is not None:
            thread.join()  # the batches in flight finish; no new one starts
        job = self.jobs.get(library, import_id)
        if not job.finished:  # not running in this process
            job = self.jobs.save(replace(job, status="cancelled", end_time=time.time()))
        return job

    def _launch(self, job: ImportJob) -> None:
        cancelled = self._cancel.setdefault(job.import_id, threading.Event())
        thread = threading.Thread(
            target=self.runner.run,
            args=(job,),
            kwargs={"cancelled": cancelled, "stopping": self._stopping},
            name=f"import-{job.import_id[:8]}",
        )
        thread.daemon = True
        self._threads[job.import_id] = thread
        thread.start()

    def wait(self, import_id: str, timeout: float | None = None) -> None:
        thread = self._threads.get(import_id)
        if thread is not None:
            thread.join(timeout)
