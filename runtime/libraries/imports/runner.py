"""Local imports: jobs run inside the server (or the CLI), durable in the data directory.

The engine is kept busy: ``import_batches_in_flight`` batches are worked on at once, so while one
batch is in its forward pass (through the engine's micro-batcher, shared with the API's requests)
the next ones are being fetched and decoded (the server's reader and decoder threads, under its
decode memory budget: the batches take the API's add path). A job killed with its
process is resumed by the next ``LocalImports`` on the same data directory (see jobs.py).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from runtime.embedder import Embedder
from runtime.errors import TOO_MANY_IMPORTS, ApiError, BadRequest, Conflict, StorageFull
from runtime.libraries.adding import ExactSeen, dedup_of
from runtime.libraries.imports.batches import BatchImporter, JobStopped
from runtime.libraries.imports.jobs import RESULTS_FILE, FileJobs, ImportJob, new_import_id
from runtime.libraries.imports.sources import (
    ImportItem,
    check_bucket,
    folder_items,
    manifest_file_items,
    manifest_items,
    manifest_refused,
    read_manifest,
    s3_prefix_items,
    split_s3,
)
from runtime.libraries.store import LibraryStore, decode_token, encode_token
from runtime.libraries.values import LONE_SURROGATE, writable_as_utf8
from runtime.settings import Settings

log = logging.getLogger("runtime.imports")
CLAIMS_KEPT_PER_BATCH_IN_FLIGHT = 8
"""The content hashes an import remembers: those of the last 8 rounds of batches in flight (older
batches are committed: the store's own check finds their copies)."""
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
        raise manifest_refused()


@contextmanager
def listed_items(source: dict[str, str], settings: Settings, scratch: Path) -> Iterator[Iterator[ImportItem]]:
    """The source's items, one at a time: a remote manifest is first fetched to a file in ``scratch``
    (the job's folder), and every manifest is read from its file a line at a time."""
    kind, location = next(iter(source.items()))
    if kind == "folder":
        yield folder_items(location)
    elif kind == "source":
        yield s3_prefix_items(location, settings)
    elif "://" not in location:  # the CLI's local manifest file
        yield manifest_file_items(location, source.get("allow_files"))
    else:
        with tempfile.TemporaryFile(dir=scratch) as manifest:
            read_manifest(location, settings, manifest)
            manifest.seek(0)
            yield manifest_items(manifest)


def batches_of(items: Iterator[ImportItem], size: int) -> Iterator[list[ImportItem]]:
    while batch := list(islice(items, size)):
        yield batch


def pending_batches(jobs: FileJobs, job: ImportJob, finished: set[int]) -> Iterator[tuple[int, list[ImportItem]]]:
    """The job's batches not yet finished, by number, read from its items file as they are asked for."""
    items = (ImportItem.from_json(item) for item in jobs.items(job.import_id))
    for n, batch in enumerate(batches_of(items, job.batch_size)):
        if n not in finished:
            yield n, batch


def page_start(next_token: str | None) -> int:
    """Where a page of failures starts: 0, or the offset a ``next_token`` carries (a count on AWS)."""
    if next_token is None:
        return 0
    after = decode_token(next_token).get("after")
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise invalid_token()
    return after


def invalid_token() -> BadRequest:
    return BadRequest("next_token: not a token this API gave", code="invalid_next_token")


def reads_local_files(source: dict[str, str]) -> bool:
    """A folder's, or a local manifest's with ``--allow-files`` (its paths were checked when listed)."""
    return "folder" in source or "allow_files" in source


def resumed_at_start(job: ImportJob) -> bool:
    """Whether a server's start resumes this job: one left ``running`` (its process was killed), or
    one of a request (an ``s3://`` prefix, a remote manifest) left ``interrupted`` by a shutdown."""
    kind, location = next(iter(job.source.items()))
    from_a_request = kind == "source" or (kind == "manifest" and "://" in location)
    return job.status == "running" or (job.status == "interrupted" and from_a_request)


class ImportRunner:
    """Runs one job to its end, batch by batch; resumable (see jobs.py)."""

    def __init__(self, embedder: Embedder, store: LibraryStore[Any], jobs: FileJobs):
        self.settings = embedder.settings
        self.embedder = embedder
        self.store = store
        self.jobs = jobs
        self._job_lock = threading.Lock()
        self._abandoned = False

    def abandon(self) -> None:
        """At shutdown, past the grace period: the jobs still running write no more records (their
        batches still append results: a resumed job counts from those)."""
        with self._job_lock:
            self._abandoned = True

    def _save(self, job: ImportJob) -> ImportJob:
        """The job's record, unless the job was abandoned at shutdown or its library deleted (its
        folder is gone: nothing makes it again)."""
        with self._job_lock:
            if self._abandoned or not self.jobs.exists(job.import_id):
                return job
            try:
                return self.jobs.update(job)
            except StorageFull:  # the job goes on as it is; how it ends is shown (LocalImports._shown)
                log.warning("import %s: its record could not be written (the disk is full)", job.import_id)
                return job

    def run(
        self,
        job: ImportJob,
        *,
        cancelled: threading.Event | None = None,
        stopping: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> ImportJob:
        """Run to the end, or until ``cancelled`` (the job ends ``cancelled`` once the batches in
        flight are done) or ``stopping`` (the server shuts down: the job ends ``interrupted``, and the
        next start resumes it)."""
        cancelled = cancelled or threading.Event()
        stopping = stopping or threading.Event()
        try:
            job = self._save(replace(job, total=self._list(job)))
            counts, finished = self.jobs.restore(job.import_id)
            job = self._run_batches(replace(job, counts=counts), finished, cancelled, stopping, progress)
            if cancelled.is_set():
                return self._save(replace(job, status="cancelled", end_time=time.time()))
            if stopping.is_set():
                return self._save(replace(job, status="interrupted"))
            return self._save(replace(job, status="succeeded", end_time=time.time()))
        except JobStopped as stop:
            return self._fail(job, stop.error.message, cancelled)
        except StorageFull as full:  # nothing of the batch was written: once space is freed it goes on
            latest = self.jobs.find(job.import_id) or job
            return self._save(replace(latest, status="interrupted", error=f"interrupted: {full.message}"))
        except ApiError as exc:
            return self._fail(job, exc.message, cancelled)
        except Exception as exc:
            if not self.jobs.exists(job.import_id) or self._abandoned:
                return job  # its library was deleted, or the server stopped under it: nothing to record
            log.exception("import %s failed", job.import_id)
            return self._fail(job, f"internal error ({exc.__class__.__name__})", cancelled)

    def _fail(self, job: ImportJob, message: str, cancelled: threading.Event) -> ImportJob:
        latest = self.jobs.find(job.import_id) or job
        if cancelled.is_set():  # cancelled while its last batch failed (its library deleted): cancelled
            return self._save(replace(latest, status="cancelled", end_time=time.time()))
        return self._save(replace(latest, status="failed", error=message, end_time=time.time()))

    def _list(self, job: ImportJob) -> int:
        """Lists the source once into the job's items file (a resumed job reads that again); how many."""
        if self.jobs.has_items(job.import_id):
            return job.total if job.total is not None else self.jobs.count_items(job.import_id)
        with listed_items(job.source, self.settings, self.jobs.folder_of(job.import_id)) as items:
            return self.jobs.write_items(job.import_id, (json.dumps(item.to_json()) for item in items))

    def _run_batches(
        self,
        job: ImportJob,
        finished: set[int],
        cancelled: threading.Event,
        stopping: threading.Event,
        progress: Progress | None,
    ) -> ImportJob:
        """The batches not yet finished, ``import_batches_in_flight`` at a time: only those are in memory."""
        dedup = dedup_of(job.dedup, job.threshold)
        in_flight = max(1, self.settings.import_batches_in_flight)
        seen = ExactSeen(keep=CLAIMS_KEPT_PER_BATCH_IN_FLIGHT * in_flight * job.batch_size)
        todo = pending_batches(self.jobs, job, finished)
        created = job.library_created or self.store.get_library(job.library).create_time
        with ThreadPoolExecutor(in_flight, thread_name_prefix="import-batch") as batches:
            importer = BatchImporter(
                self.embedder, self.store, local_files=reads_local_files(job.source), library_created=created
            )

            def one(n: int, batch: list[ImportItem]) -> dict[str, Any]:
                return {"batch": n, **importer.run(job.library, batch, dedup=dedup, seen=seen)}

            pending: set[Future[Any]] = set()
            while True:
                while len(pending) < in_flight and not (cancelled.is_set() or stopping.is_set()):
                    following = next(todo, None)
                    if following is None:
                        break
                    pending.add(batches.submit(one, *following))
                if not pending:
                    return job
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()  # JobStopped ends the job; the batches in flight finish first
                    self.jobs.append_result(job.import_id, result)
                    job = self._save(job.with_counts(result))
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
        self._libraries: dict[str, str] = {}
        """Each import this process started or resumed: its library."""
        self._ended: dict[str, ImportJob] = {}
        """How each job this process ran ended, as its thread saw it (its record may not say it)."""
        self._starting = threading.Lock()
        self._stopping = threading.Event()

    def start(self, library: str, source: dict[str, str], *, dedup: bool, threshold: float | None) -> ImportJob:
        check_source(source, self.settings)
        dedup_of(dedup, threshold)  # a bad threshold is a 400 now, not a failed job later
        created = self.store.get_library(library).create_time  # an unknown library is a 404 now, not later
        import_id = new_import_id()
        job = ImportJob(
            import_id,
            library,
            source,
            dedup=dedup,
            threshold=threshold,
            batch_size=self.settings.import_batch,
            results=str(self.jobs.folder_of(import_id) / RESULTS_FILE),
            library_created=created,
        )
        with self._starting:  # the count and the launch together: two starts never both take the last slot
            self._check_room(library)
            self._forget_oldest(library)
            self.jobs.save(job)
            self._launch(job)
        return job

    def _check_room(self, library: str) -> None:
        running = [job_library for job_id, job_library in self._libraries.items() if self._is_running(job_id)]
        if len(running) >= self.settings.import_max_running:
            raise Conflict(
                f"imports: {len(running)} imports are running, as many as this server runs at once; start this "
                "one when one of them ends (setting IMSIM_IMPORT_MAX_RUNNING)",
                code=TOO_MANY_IMPORTS,
            )
        if running.count(library) >= self.settings.import_max_running_per_library:
            raise Conflict(
                f"imports: {running.count(library)} imports into library {library!r} are running, as many as one "
                "library takes at once; start this one when one of them ends "
                "(setting IMSIM_IMPORT_MAX_RUNNING_PER_LIBRARY)",
                code=TOO_MANY_IMPORTS,
            )

    def _forget_oldest(self, library: str) -> None:
        """Room for one more record: the oldest ended imports past ``import_kept_per_library`` go."""
        ended = [job for job in self.jobs.list_jobs(library) if job.finished]
        for job in ended[: max(0, len(ended) - self.settings.import_kept_per_library + 1)]:
            self.jobs.remove(job.import_id)

    def _is_running(self, import_id: str) -> bool:
        thread = self._threads.get(import_id)
        return thread is not None and thread.is_alive()

    def resume(self) -> list[str]:
        """Start again every job a killed process left ``running``, and every job of a request a
        stopped server left ``interrupted`` (the CLI's, stopped with Ctrl-C, wait for ``import
        --resume``); one whose cancel was asked ends ``cancelled``. Their ids. (Every job's files are
        upgraded first: one recorded by an earlier version lists its failures like the others.)"""
        jobs = self.jobs.all()
        for job in jobs:
            self.jobs.upgrade(job.import_id)
        resumed = []
        for job in jobs:
            if job.import_id in self._threads or not resumed_at_start(job):
                continue
            if self.jobs.cancel_requested(job.import_id):
                self.jobs.save(replace(job, status="cancelled", end_time=time.time()))
                continue
            log.info("resuming import %s into %r", job.import_id, job.library)
            self._launch(replace(job, status="running", error=None))
            resumed.append(job.import_id)
        return resumed

    def stop(self, grace_s: float | None = None) -> None:
        """At shutdown, before the store closes: no new batch starts; the batches in flight have
        ``import_stop_grace_s`` in all to finish, and every job ends ``interrupted`` (the next start
        resumes it). A job still in a batch then (a slow fetch) is left to the process's end: what
        it finished is in its results, and the batch is redone."""
        self._stopping.set()
        deadline = time.monotonic() + (self.settings.import_stop_grace_s if grace_s is None else grace_s)
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        self.runner.abandon()
        for import_id, thread in list(self._threads.items()):
            latest = self.jobs.find(import_id)
            if thread.is_alive() and latest is not None and not latest.finished:
                self.jobs.save(replace(latest, status="interrupted"))

    def get(self, library: str, import_id: str) -> ImportJob:
        return self._shown(self.jobs.get(library, import_id))

    def list_jobs(self, library: str) -> list[ImportJob]:
        return [self._shown(job) for job in self.jobs.list_jobs(library)]

    def _shown(self, job: ImportJob) -> ImportJob:
        """A job recorded ``running`` whose thread here has ended could not write its end (a full
        disk): it is shown as it ended, and the next start resumes it."""
        thread = self._threads.get(job.import_id)
        if job.status != "running" or thread is None or thread.is_alive():
            return job
        ended = self._ended.get(job.import_id)
        if ended is not None and ended.finished:
            return ended
        error = ended.error if ended is not None and ended.error else "interrupted: its record could not be written"
        return replace(job, status="interrupted", error=error)

    def failures(self, job: ImportJob, limit: int) -> list[dict[str, Any]]:
        return self.jobs.failures(job.import_id, limit)

    def failures_page(
        self, job: ImportJob, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Pages by byte offset in the failures file: a page reads its own lines, wherever it starts."""
        after = page_start(next_token)
        if not self.jobs.is_line_start(job.import_id, after):
            raise invalid_token()
        found, end = self.jobs.failures_page(job.import_id, limit, after)
        more = len(found) == limit or not job.finished
        return found, encode_token({"after": end}) if more else None

    def cancel(self, library: str, import_id: str) -> ImportJob:
        """Asks the job to stop and answers at once: a running job ends ``cancelled`` once its
        batches in flight are done (no new one starts); one not running here ends now."""
        job = self.jobs.get(library, import_id)
        if job.finished:
            raise Conflict(f"import {import_id!r} has already {job.status}", code="import_finished")
        self.jobs.request_cancel(import_id)  # a restart before it stops does not resume it
        self._cancel.setdefault(import_id, threading.Event()).set()
        if not self._is_running(import_id):
            return self.jobs.save(replace(job, status="cancelled", end_time=time.time()))
        return job

    def forget_library(self, library: str) -> None:
        """The library was deleted: its jobs are asked to stop, and their records and files go after
        at most ``import_stop_grace_s``. A job still in a batch then (a slow fetch) adds nothing when
        it ends: the library it started on is gone, even if one of the same name is made meanwhile."""
        forgotten = self.jobs.list_jobs(library)
        for job in forgotten:
            self._cancel.setdefault(job.import_id, threading.Event()).set()
        deadline = time.monotonic() + self.settings.import_stop_grace_s
        for job in forgotten:
            thread = self._threads.get(job.import_id)
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        for job in forgotten:  # a thread still running counts against the server's imports until it ends
            self.jobs.remove(job.import_id)

    def _launch(self, job: ImportJob) -> None:
        cancelled = self._cancel.setdefault(job.import_id, threading.Event())

        def run() -> None:
            self._ended[job.import_id] = self.runner.run(job, cancelled=cancelled, stopping=self._stopping)

        thread = threading.Thread(target=run, name=f"import-{job.import_id[:8]}")
        thread.daemon = True
        self._threads[job.import_id] = thread
        self._libraries[job.import_id] = job.library
        thread.start()

    def wait(self, import_id: str, timeout: float | None = None) -> None:
        thread = self._threads.get(import_id)
        if thread is not None:
            thread.join(timeout)
