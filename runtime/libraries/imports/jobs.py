"""Import job records: what was asked, where it stands, its counts; and the local, durable keeping of them.

Locally each job is a folder ``<data_dir>/imports/<import_id>/``:

- ``job.json``: the record, replaced atomically (written to a scratch file, synced, renamed);
- ``items.jsonl``: the source's items, listed once when the job starts (a resumed job reads them
  again from here, so it sees the same list);
- ``results.jsonl``: one line per finished batch (its counts and its failed items), appended and
  synced after the batch's images are committed to the store. A resumed job skips the batches listed
  here; a batch finished in the store but not yet listed is redone, and its images, present by id,
  count as already present, so no image is added twice.

A full disk is 507 ``storage_full`` (``disk_writes``), the record as it was before.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from runtime.errors import NotFound, storage_full
from runtime.libraries.imports.counts import COUNTS, zero_counts

STATUSES = ("running", "interrupted", "succeeded", "failed", "cancelled")
"""``interrupted``: the CLI was stopped (Ctrl-C); only ``import --resume`` goes on with it, not a server."""
ENDED = ("succeeded", "failed", "cancelled")
EARLIER_COUNT_NAMES = {"duplicates": "duplicates_similar", "skipped": "already_present"}
"""Counts of records written before duplicates had tiers (their tier is not known)."""
JOB_FILE, ITEMS_FILE, RESULTS_FILE = "job.json", "items.jsonl", "results.jsonl"
IMPORT_ID = re.compile(r"[0-9a-f]{32}")
"""What ``new_import_id`` makes (a UUID4's hex): 32 lowercase ASCII hex digits. ``str.isalnum`` is no
check: it takes letters and digits of every script, at any length (200 Arabic-Indic digits are 400
bytes, past the file system's 255 for a name)."""


@dataclass(frozen=True)
class ImportJob:
    import_id: str
    library: str
    source: dict[str, str]
    """``{"source": "s3://..."}``, ``{"manifest": "..."}`` or (the CLI) ``{"folder": "..."}``."""
    dedup: bool = True
    threshold: float | None = None
    batch_size: int = 32
    status: str = "running"
    total: int | None = None
    counts: dict[str, int] = field(default_factory=zero_counts)
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    results: str | None = None
    """Where the per-item results are (a file, or an ``s3://`` prefix on AWS)."""
    error: str | None = None
    """Why a failed job stopped (a request-level problem: the library went away, the source vanished)."""

    @property
    def finished(self) -> bool:
        return self.status in ENDED

    def with_counts(self, added: dict[str, int]) -> ImportJob:
        return replace(self, counts={name: self.counts.get(name, 0) + added.get(name, 0) for name in COUNTS})


def counts_of_record(stored: dict[str, Any]) -> dict[str, int]:
    """A record's counts under today's names, whenever it was written."""
    counts = zero_counts()
    for name, value in stored.items():
        name = EARLIER_COUNT_NAMES.get(name, name)
        if name in counts:
            counts[name] += int(value)
    return counts


def job_of_json(data: dict[str, Any]) -> ImportJob:
    return ImportJob(**{**data, "counts": counts_of_record(data.get("counts") or {})})


def new_import_id() -> str:
    return uuid.uuid4().hex


def is_import_id(text: str) -> bool:
    """Whether ``new_import_id`` could have made ``text``: the one check of an id given by a caller."""
    return isinstance(text, str) and IMPORT_ID.fullmatch(text) is not None


def check_import_id(library: str, import_id: str) -> str:
    """The id, or ``import_not_found`` (404) before a file path or a DynamoDB key is built from it."""
    if not is_import_id(import_id):
        raise not_found(library, import_id)
    return import_id


def not_found(library: str, import_id: str) -> NotFound:
    return NotFound(f"library {library!r} has no import with id {import_id!r}", code="import_not_found")


class FileJobs:
    """Job records in ``<data_dir>/imports``, durable across a crash of the process or the machine."""

    def __init__(self, data_dir: str | Path):
        self.folder = Path(data_dir) / "imports"
        self._lock = threading.Lock()

    def folder_of(self, import_id: str) -> Path:
        return self.folder / import_id

    def save(self, job: ImportJob) -> ImportJob:
        folder = self.folder_of(job.import_id)
        with disk_writes(folder):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / JOB_FILE, json.dumps(asdict(job)).encode())
        return job

    def get(self, library: str, import_id: str) -> ImportJob:
        path = self.folder_of(check_import_id(library, import_id)) / JOB_FILE
        if not path.exists():
            raise not_found(library, import_id)
        job = job_of_json(json.loads(path.read_bytes()))
        if job.library != library:
            raise not_found(library, import_id)
        return job

    def find(self, import_id: str) -> ImportJob | None:
        """The job of this id, whatever its library (the CLI's ``--resume``, ``status``), or None."""
        if not is_import_id(import_id):
            return None
        path = self.folder_of(import_id) / JOB_FILE
        if not path.exists():
            return None
        return job_of_json(json.loads(path.read_bytes()))

    def all(self) -> list[ImportJob]:
        if not self.folder.is_dir():
            return []
        paths = (folder / JOB_FILE for folder in self.folder.iterdir())
        jobs = [job_of_json(json.loads(path.read_bytes())) for path in paths if path.exists()]
        return sorted(jobs, key=lambda job: job.start_time)

    def list_jobs(self, library: str) -> list[ImportJob]:
        return [job for job in self.all() if job.library == library]

    # --- items and results -----------------------------------------------------------------
    def write_items(self, import_id: str, lines: Iterator[str]) -> int:
        """Write the listed items (one JSON per line) whole, or not at all; their number."""
        scratch = self.folder_of(import_id) / (ITEMS_FILE + ".partial")
        count = 0
        with disk_writes(scratch), open(scratch, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, self.folder_of(import_id) / ITEMS_FILE)
        return count

    def read_items(self, import_id: str) -> list[dict[str, Any]] | None:
        path = self.folder_of(import_id) / ITEMS_FILE
        if not path.exists():
            return None
        with open(path, encoding="utf-8") as lines:
            return [json.loads(line) for line in lines]

    def append_result(self, import_id: str, result: dict[str, Any]) -> None:
        path = self.folder_of(import_id) / RESULTS_FILE
        with self._lock, disk_writes(path), open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def read_results(self, import_id: str) -> list[dict[str, Any]]:
        """The finished batches; a last line cut short by a crash is left out (that batch is redone)."""
        path = self.folder_of(import_id) / RESULTS_FILE
        if not path.exists():
            return []
        results = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                results.append(json.loads(line))
            except ValueError:
                break
        return results

    def failures(self, import_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for result in self.read_results(import_id):
            found.extend(result.get("failures", []))
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found


@contextmanager
def disk_writes(path: Path) -> Iterator[None]:
    """Writes under ``data_dir``: a full disk is 507 ``storage_full``, not a 500."""
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise storage_full(path, error.strerror or "no space left") from error
        raise


def write_atomically(path: Path, data: bytes) -> None:
    scratch = path.with_name(path.name + ".partial")
    try:
        with open(scratch, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        scratch.unlink(missing_ok=True)  # a half-written scratch file would hold the space a retry needs
        raise
    os.replace(scratch, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
