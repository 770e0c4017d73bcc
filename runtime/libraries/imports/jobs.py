"""Import job records: what was asked, where it stands, its counts; and the local, durable keeping of them.

Locally each job is a folder ``<data_dir>/imports/<import_id>/``:

- ``job.json``: the record, replaced atomically (written to a scratch file, synced, renamed);
- ``items.jsonl``: the source's items, listed once when the job starts (a resumed job reads them
  again from here, so it sees the same list);
- ``failures.jsonl``: one line per failed item (``item``, ``position``, ``field``, ``code``,
  ``message``), appended batch by batch; the status reads its first lines, and the failures listing
  pages through it by byte offset;
- ``results.jsonl``: one line per finished batch (its counts, and where its failures end), appended and
  synced after the batch's images are committed to the store and its failures are written. A resumed
  job skips the batches listed here (and drops the failures written past the last one); a batch
  finished in the store but not yet listed is redone, and its images, present by id, count as
  already present, so no image is added twice.

A full disk is 507 ``storage_full`` (``disk_writes``), the record as it was before. Nothing here
is ever read whole: items, results and failures are read a line at a time.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
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
CANCEL_FILE = "cancel"
"""Made when a cancel is asked: the job stops at its next batch, and a restart does not resume it."""
FAILURES_FILE = "failures.jsonl"
MAX_FAILURE_TEXT = 512
"""The longest item name or message a kept failure holds (in characters): ids are far shorter, and
the messages of a single add name no URL; only an item named by its URL is ever cut."""
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
    library_created: float | None = None
    """The library's ``create_time`` when the job started: a library deleted and made again under the
    same name is another library, and the job adds nothing to it."""

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

    def update(self, job: ImportJob) -> ImportJob:
        """As ``save``, for a job whose folder exists: a job whose folder was removed (its library
        deleted) is not made again (``FileNotFoundError``)."""
        with disk_writes(self.folder_of(job.import_id)):
            write_atomically(self.folder_of(job.import_id) / JOB_FILE, json.dumps(asdict(job)).encode())
        return job

    def exists(self, import_id: str) -> bool:
        return (self.folder_of(import_id) / JOB_FILE).exists()

    def request_cancel(self, import_id: str) -> None:
        with disk_writes(self.folder_of(import_id)):
            (self.folder_of(import_id) / CANCEL_FILE).touch()  # concurrent cancels all make the same file

    def cancel_requested(self, import_id: str) -> bool:
        return (self.folder_of(import_id) / CANCEL_FILE).exists()

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

    def remove(self, import_id: str) -> None:
        """The job's folder and everything in it (its record first: a half-removed job is no job)."""
        folder = self.folder_of(import_id)
        (folder / JOB_FILE).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)

    # --- items and results -----------------------------------------------------------------
    def write_items(self, import_id: str, lines: Iterator[str]) -> int:
        """Write the listed items (one JSON per line) whole, or not at all, as they come; their number."""
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

    def has_items(self, import_id: str) -> bool:
        return (self.folder_of(import_id) / ITEMS_FILE).exists()

    def items(self, import_id: str) -> Iterator[dict[str, Any]]:
        """The listed items, one line at a time."""
        with open(self.folder_of(import_id) / ITEMS_FILE, encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)

    def count_items(self, import_id: str) -> int:
        with open(self.folder_of(import_id) / ITEMS_FILE, "rb") as lines:
            return sum(1 for _ in lines)

    def append_result(self, import_id: str, result: dict[str, Any]) -> None:
        """A finished batch: its failures to ``failures.jsonl``, then its counts to ``results.jsonl``
        with where its failures end, so a resumed job drops the failures of a batch it redoes."""
        folder = self.folder_of(import_id)
        counts = {name: value for name, value in result.items() if name != "failures"}
        with self._lock, disk_writes(folder / RESULTS_FILE):
            counts["failures_end"] = self._append_failures(folder / FAILURES_FILE, result.get("failures", []))
            with open(folder / RESULTS_FILE, "a", encoding="utf-8") as results:
                results.write(json.dumps(counts) + "\n")
                results.flush()
                os.fsync(results.fileno())

    @staticmethod
    def _append_failures(path: Path, failures: list[dict[str, Any]]) -> int:
        """Appends and syncs them; where the file ends (no file is made for none: the CLI tells by it)."""
        if not failures:
            return path.stat().st_size if path.exists() else 0
        with open(path, "ab") as out:
            for failure in failures:
                out.write(json.dumps(shown_failure(failure), ensure_ascii=False).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
            return out.tell()

    def results(self, import_id: str) -> Iterator[dict[str, Any]]:
        """The finished batches, one line at a time; a last line cut short by a crash is left out
        (that batch is redone)."""
        path = self.folder_of(import_id) / RESULTS_FILE
        if not path.exists():
            return
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except ValueError:
                    return

    def restore(self, import_id: str) -> tuple[dict[str, int], set[int]]:
        """What the finished batches counted and their numbers; the failures of a batch that was not
        recorded as finished (a crash between the two appends) are dropped: it is redone."""
        self.upgrade(import_id)
        counts, finished, failures_end = zero_counts(), set(), 0
        for result in self.results(import_id):
            finished.add(result["batch"])
            counts = {name: counts[name] + int(result.get(name, 0)) for name in COUNTS}
            failures_end = max(failures_end, int(result.get("failures_end", 0)))
        path = self.folder_of(import_id) / FAILURES_FILE
        if path.exists() and path.stat().st_size > failures_end:
            with open(path, "r+b") as out:
                out.truncate(failures_end)
        return counts, finished

    def upgrade(self, import_id: str) -> None:
        """A job recorded before ``failures.jsonl`` kept its failures in ``results.jsonl``'s lines:
        they move to ``failures.jsonl``, once. Both files are written aside; the results' rename is
        the commit, and a crash before the failures' rename is finished here the next time."""
        folder = self.folder_of(import_id)
        path, moved = folder / RESULTS_FILE, folder / (FAILURES_FILE + ".partial")
        if not path.exists():
            return
        with open(path, encoding="utf-8") as lines:
            old = '"failures"' in lines.readline()
        if old:
            moved.unlink(missing_ok=True)
            scratch = folder / (RESULTS_FILE + ".partial")
            with open(scratch, "w", encoding="utf-8") as results:
                for result in self.results(import_id):
                    result["failures_end"] = self._append_failures(moved, result.pop("failures", []))
                    results.write(json.dumps(result) + "\n")
                results.flush()
                os.fsync(results.fileno())
            os.replace(scratch, path)
        if moved.exists():
            os.replace(moved, folder / FAILURES_FILE)

    def failures(self, import_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The first ``limit`` failed items (all of them: the CLI's list of a direct import)."""
        return self.failures_page(import_id, limit)[0]

    def failures_page(self, import_id: str, limit: int | None, after: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` failed items from byte ``after`` (a line's start: ``is_line_start``), and the
        byte where the next page starts. Reads those lines only, however many failures there are."""
        path = self.folder_of(import_id) / FAILURES_FILE
        found: list[dict[str, Any]] = []
        if not path.exists():
            return found, after
        position = after
        with open(path, "rb") as lines:
            lines.seek(after)
            while limit is None or len(found) < limit:
                line = lines.readline()
                if not line.endswith(b"\n"):  # the end, or a line being written
                    break
                found.append(json.loads(line))
                position += len(line)
        return found, position

    def is_line_start(self, import_id: str, offset: int) -> bool:
        """Whether byte ``offset`` of the failures starts a line (a cursor this module gave)."""
        if offset == 0:
            return True
        path = self.folder_of(import_id) / FAILURES_FILE
        if not path.exists() or offset > path.stat().st_size:
            return False
        with open(path, "rb") as lines:
            lines.seek(offset - 1)
            return lines.read(1) == b"\n"


def shown_failure(failure: dict[str, Any]) -> dict[str, Any]:
    """A failure as it is kept and shown: its item and message cut to ``MAX_FAILURE_TEXT`` characters
    (an item named by a URL of 64 KiB is not repeated whole in every status)."""
    return {name: cut(value) if isinstance(value, str) else value for name, value in failure.items()}


def cut(text: str) -> str:
    if len(text) <= MAX_FAILURE_TEXT:
        return text
    return f"{text[: MAX_FAILURE_TEXT - 40]}... ({len(text):,} characters in all)"


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
