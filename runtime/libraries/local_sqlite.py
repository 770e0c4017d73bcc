"""The embedded store's persistence: one SQLite file in ``data_dir``, and the lock on that folder.

``LibraryDatabase`` owns the schema (a ``libraries`` and an ``images`` table; columns newer than the
first release are added in place to an older file), the reads (every library and its images when the
store opens, pages of images in id order) and the writes, each one transaction committed and synced
(WAL mode, ``synchronous=FULL``) before the call returns, so an acknowledged add survives a crash of
the process or the machine. One connection serves every thread, one statement or transaction at a
time. ``lock_folder`` keeps a second server process off the same data directory, since the in-memory
index (``local_index.py``) is one process's view of the data.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from runtime.errors import ApiError
from runtime.libraries.store import Image, Library, NewImage
from runtime.libraries.values import compact_json

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


class LibraryDatabase:
    """The libraries' SQLite file: one connection, one statement or transaction at a time."""

    def __init__(self, connection: sqlite3.Connection):
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, folder: Path) -> LibraryDatabase:
        """The database of ``folder`` in WAL mode, its schema brought up to date."""
        path = folder / DB_FILE
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RuntimeError(f"{path}: SQLite could not use WAL mode ({mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            add_new_columns(db)
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reads -------------------------------------------------------------------------
    def libraries(self) -> list[tuple[Library, int]]:
        """Every library (its image count left at 0) with its vectors' dimension."""
        with self._lock:
            rows = self._db.execute("SELECT name, model_version, create_time, dimension FROM libraries").fetchall()
        return [(Library(name, version, created, 0), dimension) for name, version, created, dimension in rows]

    def images(self, library: str, dimension: int) -> tuple[list[NewImage], np.ndarray, list[float]]:
        """Every image of a library: the images, their vectors as one matrix, their create times."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, vector, metadata, create_time, content_hash FROM images WHERE library = ?", (library,)
            ).fetchall()
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), dimension)
        images = [NewImage(vectors[i], row[0], json.loads(row[2]), row[4]) for i, row in enumerate(rows)]
        return images, vectors, [row[3] for row in rows]

    def images_after(self, library: str, after: str, count: int) -> list[Image]:
        """Up to ``count`` images whose id sorts after ``after``, in id order (SQLite's byte order of
        UTF-8 is code point order)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, metadata, create_time FROM images WHERE library = ? AND id > ? ORDER BY id LIMIT ?",
                (library, after, count),
            ).fetchall()
        return [Image(image_id, json.loads(metadata), created) for image_id, metadata, created in rows]

    # --- writes: each one transaction, committed when the call returns --------------------
    def create_library(self, library: Library, dimension: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO libraries (name, model_version, dimension, create_time) VALUES (?, ?, ?, ?)",
                (library.name, library.model_version, dimension, library.create_time),
            )

    def delete_library(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM images WHERE library = ?", (name,))
            db.execute("DELETE FROM libraries WHERE name = ?", (name,))

    def insert_images(self, library: str, images: list[NewImage], vectors: np.ndarray, create_time: float) -> None:
        """The images with their vectors (little-endian float32 rows), all created at ``create_time``."""
        rows = [
            (library, image.id, vector.tobytes(), compact_json(image.metadata), create_time, image.content_hash)
            for image, vector in zip(images, vectors, strict=True)
        ]
        with self._write() as db:
            db.executemany(
                "INSERT INTO images (library, id, vector, metadata, create_time, content_hash) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def delete_image(self, library: str, image_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM images WHERE library = ? AND id = ?", (library, image_id))

    def replace_metadata(self, library: str, image_id: str, metadata: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE images SET metadata = ? WHERE library = ? AND id = ?",
                (compact_json(metadata), library, image_id),
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed (and synced to disk) when the block ends."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def add_new_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(images)")}
    for column, statement in COLUMNS_ADDED.items():
        if column not in present:
            db.execute(statement)


def lock_folder(folder: Path) -> IO[str]:
    """An exclusive lock on the data directory, held while the store is open (released on exit or crash)."""
    handle = open(folder / LOCK_FILE, "a+")  # held open on purpose: the lock lives as long as the store
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
