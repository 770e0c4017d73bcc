"""The embedded store: SQLite on disk for durability, one float32 matrix per library for exact search.

- Durable: SQLite in WAL mode with ``synchronous=FULL``; a write is committed (and synced) before the
  call returns, so an acknowledged add survives a crash of the process or the machine.
- Exact: a search scores the query against every vector of the library (one matrix-vector product).
- Safe under concurrency: each library has a lock; a dedup check and the insert it allows run under
  it as one step. One server process per data directory (an exclusive file lock enforces it), since
  the in-memory matrices are that process's view of the data.
- Opened on first use, so an app that never touches libraries never touches ``data_dir``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from runtime.errors import ApiError
from runtime.libraries.store import (
    AddResult,
    Image,
    Library,
    LibraryStore,
    Match,
    NewImage,
    Scalar,
    check_image_quota,
    check_library_quota,
    check_model_version,
    compact_json,
    image_exists,
    image_not_found,
    library_exists,
    library_not_found,
    matches_filter,
    screen_duplicates,
)
from runtime.settings import Settings
from runtime.vectors import scores_of

try:
    import fcntl
except ImportError:  # Windows: no cross-process guard
    fcntl = None  # type: ignore[assignment]

DB_FILE = "libraries.sqlite3"
LOCK_FILE = "libraries.lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS libraries (
    name TEXT PRIMARY KEY,
    model_version TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    create_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    library TEXT NOT NULL,
    id TEXT NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL,
    create_time REAL NOT NULL,
    UNIQUE (library, id)
);
"""


class LibraryIndex:
    """One library in memory: vectors (rows of a matrix), ids, metadata. Guarded by ``lock``."""

    def __init__(self, library: Library, dimension: int):
        self.library = library
        self.dimension = dimension
        self.lock = threading.Lock()
        self.deleted = False
        self.vectors = np.empty((0, dimension), dtype=np.float32)
        self.count = 0
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.metadata: list[dict[str, Any]] = []
        self.create_times: list[float] = []

    def info(self) -> Library:
        return Library(self.library.name, self.library.model_version, self.library.create_time, self.count)

    def append(self, images: list[NewImage], vectors: np.ndarray, create_times: list[float]) -> None:
        self._reserve(len(images))
        self.vectors[self.count : self.count + len(images)] = vectors
        for image, create_time in zip(images, create_times, strict=True):
            assert image.id is not None
            self.rows[image.id] = len(self.ids)
            self.ids.append(image.id)
            self.metadata.append(image.metadata)
            self.create_times.append(create_time)
        self.count += len(images)

    def remove(self, image_id: str) -> None:
        """Move the last row into the freed one: O(1), order is not meaningful."""
        row, last = self.rows.pop(image_id), self.count - 1
        if row != last:
            self.vectors[row] = self.vectors[last]
            self.ids[row], self.metadata[row], self.create_times[row] = (
                self.ids[last],
                self.metadata[last],
                self.create_times[last],
            )
            self.rows[self.ids[row]] = row
        del self.ids[last], self.metadata[last], self.create_times[last]
        self.count -= 1

    def image(self, image_id: str) -> Image | None:
        row = self.rows.get(image_id)
        return None if row is None else Image(image_id, self.metadata[row], self.create_times[row])

    def best(self, vector: np.ndarray) -> Match | None:
        if self.count == 0:
            return None
        scores = scores_of(self.vectors[: self.count] @ vector)
        row = int(np.argmax(scores))
        return self._match(row, float(scores[row]))

    def top(
        self, vector: np.ndarray, top_k: int, min_score: float | None, conditions: dict[str, Scalar]
    ) -> list[Match]:
        """The ``top_k`` best rows that pass the filter, best first (exact: every row is scored)."""
        if self.count == 0:
            return []
        scores = scores_of(self.vectors[: self.count] @ vector)
        # With a filter, rank a generous head first and widen it only if too few rows pass.
        limit = min(self.count, max(16 * top_k, 1024) if conditions else top_k)
        while True:
            matches, done = self._walk(scores, best_rows(scores, limit), top_k, min_score, conditions)
            if done or limit == self.count:
                return matches
            limit = min(self.count, 8 * limit)

    def _walk(
        self, scores: np.ndarray, rows: np.ndarray, top_k: int, min_score: float | None, conditions: dict[str, Scalar]
    ) -> tuple[list[Match], bool]:
        """Matches among ``rows`` (best first), and whether the walk found all it needs."""
        matches: list[Match] = []
        for row in rows:
            score = float(scores[row])
            if min_score is not None and score < min_score:
                return matches, True
            if conditions and not matches_filter(self.metadata[row], conditions):
                continue
            matches.append(self._match(int(row), score))
            if len(matches) == top_k:
                return matches, True
        return matches, False

    def _match(self, row: int, score: float) -> Match:
        return Match(self.ids[row], score, self.metadata[row])

    def _reserve(self, extra: int) -> None:
        needed = self.count + extra
        if needed > len(self.vectors):
            # Grow by a quarter: amortised appends without doubling a large library's memory.
            grown = np.empty((max(needed, len(self.vectors) * 5 // 4, 1024), self.dimension), dtype=np.float32)
            grown[: self.count] = self.vectors[: self.count]
            self.vectors = grown


class LocalStore(LibraryStore):
    def __init__(self, settings: Settings, dimension: int):
        super().__init__(settings, dimension)
        self.folder = Path(settings.data_dir)
        self._open_lock = threading.Lock()
        self._registry_lock = threading.Lock()  # creating and deleting libraries
        self._db_lock = threading.Lock()  # one connection, one transaction at a time
        self._db: sqlite3.Connection | None = None
        self._folder_lock: IO[str] | None = None
        self._indexes: dict[str, LibraryIndex] = {}

    # --- libraries ---------------------------------------------------------------------
    def _create_library(self, name: str, model_version: str) -> Library:
        indexes = self._opened()
        with self._registry_lock:
            if name in indexes:
                raise library_exists(name)
            check_library_quota(len(indexes), self.settings)
            library = Library(name, model_version, time.time(), 0)
            with self._write() as db:
                db.execute(
                    "INSERT INTO libraries (name, model_version, dimension, create_time) VALUES (?, ?, ?, ?)",
                    (name, model_version, self.dimension, library.create_time),
                )
            indexes[name] = LibraryIndex(library, self.dimension)
        return library

    def _list_libraries(self) -> list[Library]:
        return [index.info() for index in list(self._opened().values())]

    def _get_library(self, name: str) -> Library:
        return self._index(name).info()

    def _delete_library(self, name: str) -> None:
        indexes = self._opened()
        with self._registry_lock:
            index = self._index(name)
            with index.lock:
                with self._write() as db:
                    db.execute("DELETE FROM images WHERE library = ?", (name,))
                    db.execute("DELETE FROM libraries WHERE name = ?", (name,))
                index.deleted = True
                del indexes[name]

    # --- images ------------------------------------------------------------------------
    def _add_images(
        self, name: str, images: list[NewImage], model_version: str, dedup_threshold: float | None
    ) -> list[AddResult]:
        index = self._index(name)
        with self._live(index):
            check_model_version(index.library, model_version)
            for image in images:
                if image.id in index.rows:
                    raise image_exists(name, image.id or "")
            results, accepted = screen_duplicates(images, dedup_threshold, index.best)
            if accepted:
                check_image_quota(name, index.count, len(accepted), self.settings)
                self._insert(index, accepted)
        return results

    def _insert(self, index: LibraryIndex, images: list[NewImage]) -> None:
        now = time.time()
        vectors = np.stack([image.vector for image in images]).astype("<f4")
        rows = [
            (index.library.name, image.id, vector.tobytes(), compact_json(image.metadata), now)
            for image, vector in zip(images, vectors, strict=True)
        ]
        with self._write() as db:
            db.executemany(
                "INSERT INTO images (library, id, vector, metadata, create_time) VALUES (?, ?, ?, ?, ?)", rows
            )
        index.append(images, vectors, [now] * len(images))

    def _get_image(self, name: str, image_id: str) -> Image:
        index = self._index(name)
        with self._live(index):
            image = index.image(image_id)
        if image is None:
            raise image_not_found(name, image_id)
        return image

    def _delete_image(self, name: str, image_id: str) -> None:
        index = self._index(name)
        with self._live(index):
            if image_id not in index.rows:
                raise image_not_found(name, image_id)
            with self._write() as db:
                db.execute("DELETE FROM images WHERE library = ? AND id = ?", (name, image_id))
            index.remove(image_id)

    def _search(
        self,
        name: str,
        vector: np.ndarray,
        model_version: str,
        top_k: int,
        min_score: float | None,
        filter: dict[str, Scalar],
    ) -> list[Match]:
        index = self._index(name)
        with self._live(index):
            check_model_version(index.library, model_version)
            return index.top(vector, top_k, min_score, filter)

    def close(self) -> None:
        with self._open_lock, self._registry_lock:
            self._shut()

    def _shut(self) -> None:
        """Close the database and release the folder lock."""
        if self._db is not None:
            with self._db_lock:
                self._db.close()
            self._db = None
        if self._folder_lock is not None:
            self._folder_lock.close()  # closing the file releases the lock
            self._folder_lock = None
        self._indexes = {}

    # --- internals ---------------------------------------------------------------------
    def _opened(self) -> dict[str, LibraryIndex]:
        with self._open_lock:
            if self._db is None:
                self._open()
            return self._indexes

    def _index(self, name: str) -> LibraryIndex:
        index = self._opened().get(name)
        if index is None:
            raise library_not_found(name)
        return index

    @contextmanager
    def _live(self, index: LibraryIndex) -> Iterator[None]:
        """Hold the library's lock; a library deleted while we waited for it is not found."""
        with index.lock:
            if index.deleted:
                raise library_not_found(index.library.name)
            yield

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed (and synced to disk) when the block ends."""
        assert self._db is not None
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._folder_lock = lock_folder(self.folder)
        try:
            self._db = db = sqlite3.connect(self.folder / DB_FILE, check_same_thread=False, isolation_level=None)
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RuntimeError(f"{self.folder / DB_FILE}: SQLite could not use WAL mode ({mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            self._indexes = {library.name: self._load(library, dimension) for library, dimension in self._libraries()}
        except BaseException:
            # Left half open, the folder would stay locked and later requests would read "in use by another process".
            self._shut()
            raise

    def _libraries(self) -> list[tuple[Library, int]]:
        assert self._db is not None
        rows = self._db.execute("SELECT name, model_version, create_time, dimension FROM libraries").fetchall()
        return [(Library(name, version, created, 0), dimension) for name, version, created, dimension in rows]

    def _load(self, library: Library, dimension: int) -> LibraryIndex:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, vector, metadata, create_time FROM images WHERE library = ?", (library.name,)
        ).fetchall()
        index = LibraryIndex(library, dimension)
        if rows:
            vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), dimension)
            images = [NewImage(vectors[i], row[0], json.loads(row[2])) for i, row in enumerate(rows)]
            index.append(images, vectors, [row[3] for row in rows])
        return index


def best_rows(scores: np.ndarray, count: int) -> np.ndarray:
    """Indexes of the ``count`` highest scores, highest first."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    head = np.argpartition(-scores, count - 1)[:count]
    return head[np.argsort(-scores[head], kind="stable")]


def lock_folder(folder: Path) -> IO[str]:
    """An exclusive lock on the data directory, held while the store is open (released on exit or crash)."""
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 (held open on purpose)
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise ApiError(
                f"data_dir {folder}: in use by another server process; run one server per data directory",
                code="store_unavailable",
                status_code=503,
            ) from exc
    return handle
