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

from runtime.errors import ApiError, BadRequest
from runtime.libraries.rules import Filter, Predicate, compact_json, compile_filter, filterable_part
from runtime.libraries.store import (
    EXACT_SCORE,
    Image,
    ImagePage,
    Library,
    LibraryStore,
    Match,
    NewImage,
    check_library_quota,
    encode_token,
    library_exists,
    library_not_found,
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
    content_hash TEXT,
    UNIQUE (library, id)
);
"""
COLUMNS_ADDED = {"content_hash": "ALTER TABLE images ADD COLUMN content_hash TEXT"}
"""Columns newer than the first release: added in place to a data directory written before them."""


class LibraryIndex:
    """One library in memory: vectors (rows of a matrix), ids, metadata, file hashes. Guarded by ``lock``."""

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
        self.filterable: list[dict[str, Any]] = []
        self.create_times: list[float] = []
        self.hashes: list[str | None] = []
        self.by_hash: dict[str, str] = {}

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
            self.filterable.append(filterable_part(image.metadata))
            self.create_times.append(create_time)
            self.hashes.append(image.content_hash)
            if image.content_hash:
                self.by_hash.setdefault(image.content_hash, image.id)
        self.count += len(images)

    def remove(self, image_id: str) -> None:
        """Move the last row into the freed one: O(1), order is not meaningful."""
        row, last = self.rows.pop(image_id), self.count - 1
        content_hash = self.hashes[row]
        if content_hash and self.by_hash.get(content_hash) == image_id:
            del self.by_hash[content_hash]
        columns: tuple[list[Any], ...] = (self.ids, self.metadata, self.filterable, self.create_times, self.hashes)
        if row != last:
            self.vectors[row] = self.vectors[last]
            for column in columns:
                column[row] = column[last]
            self.rows[self.ids[row]] = row
        for column in columns:
            del column[last]
        self.count -= 1

    def set_metadata(self, image_id: str, metadata: dict[str, Any]) -> Image:
        row = self.rows[image_id]
        self.metadata[row], self.filterable[row] = metadata, filterable_part(metadata)
        return Image(image_id, metadata, self.create_times[row])

    def image(self, image_id: str) -> Image | None:
        row = self.rows.get(image_id)
        return None if row is None else Image(image_id, self.metadata[row], self.create_times[row])

    def vector(self, image_id: str) -> np.ndarray | None:
        row = self.rows.get(image_id)
        return None if row is None else self.vectors[row].copy()

    def exact(self, content_hash: str) -> Match | None:
        image_id = self.by_hash.get(content_hash)
        return None if image_id is None else Match(image_id, EXACT_SCORE, self.metadata[self.rows[image_id]])

    def best(self, vector: np.ndarray) -> Match | None:
        if self.count == 0:
            return None
        scores = scores_of(self.vectors[: self.count] @ vector)
        row = int(np.argmax(scores))
        return self._match(row, float(scores[row]))

    def top(
        self, vector: np.ndarray, top_k: int, min_score: float | None, conditions: Filter, exclude: str | None
    ) -> list[Match]:
        """The ``top_k`` best rows that pass the filter, best first (exact: every row is scored)."""
        if self.count == 0:
            return []
        scores = scores_of(self.vectors[: self.count] @ vector)
        passes = compile_filter(conditions) if conditions else None
        skip = self.rows.get(exclude) if exclude is not None else None
        # With a filter, rank a generous head first and widen it only if too few rows pass.
        wanted = top_k + (skip is not None)
        limit = min(self.count, max(16 * top_k, 1024) if passes else wanted)
        while True:
            matches, done = self._walk(scores, best_rows(scores, limit), top_k, min_score, passes, skip)
            if done or limit == self.count:
                return matches
            limit = min(self.count, 8 * limit)

    def _walk(
        self,
        scores: np.ndarray,
        rows: np.ndarray,
        top_k: int,
        min_score: float | None,
        passes: Predicate | None,
        skip: int | None,
    ) -> tuple[list[Match], bool]:
        """Matches among ``rows`` (best first), and whether the walk found all it needs."""
        matches: list[Match] = []
        for row in rows:
            score = float(scores[row])
            if min_score is not None and score < min_score:
                return matches, True
            if row == skip or (passes is not None and not passes(self.filterable[row])):
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

    # --- primitives: the library's lock serves readers and writers alike ---------------------
    @contextmanager
    def _reading(self, name: str) -> Iterator[tuple[Library, LibraryIndex]]:
        index = self._index(name)
        with self._live(index):
            yield index.info(), index

    _writing = _reading

    def _existing_ids(self, held: LibraryIndex, ids: list[str]) -> list[str]:
        return [image_id for image_id in ids if image_id in held.rows]

    def _find_hashes(self, held: LibraryIndex, hashes: list[str]) -> dict[str, Match]:
        found = {content_hash: held.exact(content_hash) for content_hash in hashes}
        return {content_hash: match for content_hash, match in found.items() if match is not None}

    def _nearest(self, held: LibraryIndex, vector: np.ndarray) -> Match | None:
        return held.best(vector)

    def _insert(self, held: LibraryIndex, images: list[NewImage]) -> None:
        now = time.time()
        vectors = np.stack([image.vector for image in images]).astype("<f4")
        rows = [
            (held.library.name, image.id, vector.tobytes(), compact_json(image.metadata), now, image.content_hash)
            for image, vector in zip(images, vectors, strict=True)
        ]
        with self._write() as db:
            db.executemany(
                "INSERT INTO images (library, id, vector, metadata, create_time, content_hash) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        held.append(images, vectors, [now] * len(images))

    def _image(self, held: LibraryIndex, image_id: str) -> Image | None:
        return held.image(image_id)

    def _vector(self, held: LibraryIndex, image_id: str) -> np.ndarray | None:
        return held.vector(image_id)

    def _remove(self, held: LibraryIndex, image_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM images WHERE library = ? AND id = ?", (held.library.name, image_id))
        held.remove(image_id)

    def _replace_metadata(self, held: LibraryIndex, image_id: str, metadata: dict[str, Any]) -> Image:
        with self._write() as db:
            db.execute(
                "UPDATE images SET metadata = ? WHERE library = ? AND id = ?",
                (compact_json(metadata), held.library.name, image_id),
            )
        return held.set_metadata(image_id, metadata)

    def _query(
        self,
        held: LibraryIndex,
        vector: np.ndarray,
        top_k: int,
        min_score: float | None,
        conditions: Filter,
        exclude: str | None,
    ) -> list[Match]:
        return held.top(vector, top_k, min_score, conditions, exclude)

    def _page(self, held: LibraryIndex, limit: int, token: dict[str, Any] | None) -> ImagePage:
        """Keyset pages in id order (SQLite's byte order of UTF-8 is code point order): the token is the
        last id served, so an insert or delete between pages neither repeats nor skips another image."""
        after = token.get("after") if token else None
        if token is not None and not isinstance(after, str):
            raise BadRequest("next_token: not a token this API gave", code="invalid_next_token")
        assert self._db is not None
        with self._db_lock:
            rows = self._db.execute(
                "SELECT id, metadata, create_time FROM images WHERE library = ? AND id > ? ORDER BY id LIMIT ?",
                (held.library.name, after or "", limit + 1),
            ).fetchall()
        images = [Image(image_id, json.loads(metadata), created) for image_id, metadata, created in rows[:limit]]
        more = len(rows) > limit
        return ImagePage(images, encode_token({"after": images[-1].id}) if more else None)

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
            add_new_columns(db)
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
            "SELECT id, vector, metadata, create_time, content_hash FROM images WHERE library = ?", (library.name,)
        ).fetchall()
        index = LibraryIndex(library, dimension)
        if rows:
            vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), dimension)
            images = [NewImage(vectors[i], row[0], json.loads(row[2]), row[4]) for i, row in enumerate(rows)]
            index.append(images, vectors, [row[3] for row in rows])
        return index


def add_new_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(images)")}
    for column, statement in COLUMNS_ADDED.items():
        if column not in present:
            db.execute(statement)


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
