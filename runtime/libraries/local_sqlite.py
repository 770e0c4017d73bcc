"""The embedded store's persistence: one SQLite file in ``data_dir``, and the lock on that folder.

``LibraryDatabase`` owns the schema (a ``libraries`` and an ``images`` table; columns newer than the
first release are added in place to an older file), the reads (every library and its images when the
store opens, pages of images in id order) and the writes, each one transaction committed and synced
(WAL mode, ``synchronous=FULL``) before the call returns, so an acknowledged add survives a crash of
the process or the machine. One connection serves every thread, one statement or transaction at a
time. ``lock_folder`` keeps a second server process off the same data directory, since the in-memory
index (``local_index.py``) is one process's view of the data.

Opening verifies the file (``LibraryDatabase.open``): an existing file is opened, never created
over (SQLite would take a 0-byte file for a new, empty database), must start with SQLite's header,
pass ``PRAGMA quick_check``, hold this schema (``user_version`` at most ``SCHEMA_VERSION``) and take
a write; a file that fails is refused with 503 ``store_damaged`` or ``store_read_only`` naming it.
A full disk is 507 ``storage_full`` (``sqlite_fault``): the write is rolled back, what was
committed stays.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import numpy as np

from runtime.errors import ApiError, StoreUnavailable, storage_full
from runtime.libraries.store import Image, Library, NewImage, StoredImage
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
COLUMNS_ADDED = {
    ("images", "content_hash"): "ALTER TABLE images ADD COLUMN content_hash TEXT",
    ("images", "thumbnail"): "ALTER TABLE images ADD COLUMN thumbnail BLOB",
    # Libraries of a data directory from before thumbnails keep them from now on, as new local ones do.
    ("libraries", "thumbnails"): "ALTER TABLE libraries ADD COLUMN thumbnails INTEGER NOT NULL DEFAULT 1",
    # Schema version 3: what the copy tier and the duplicates scan read (images added before have none).
    ("images", "perceptual_hash"): "ALTER TABLE images ADD COLUMN perceptual_hash TEXT",
    ("images", "width"): "ALTER TABLE images ADD COLUMN width INTEGER",
    ("images", "height"): "ALTER TABLE images ADD COLUMN height INTEGER",
    ("libraries", "threshold"): "ALTER TABLE libraries ADD COLUMN threshold REAL",
}
"""Columns newer than the first release: added in place to a data directory written before them."""
SCHEMA_VERSION = 3
"""``PRAGMA user_version`` of the files this release writes (0: a file written before it was kept)."""
SQLITE_HEADER = b"SQLite format 3\x00"
RESTORE_HINT = "stop the server and restore the file from a copy (docs/libraries.md, 'Backup and restore')"


class LibraryDatabase:
    """The libraries' SQLite file: one connection, one statement or transaction at a time."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self._db = connection
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, folder: Path) -> LibraryDatabase:
        """The database of ``folder`` in WAL mode, verified, its schema brought up to date; a new file
        only where none was."""
        path = folder / DB_FILE
        existed = path.exists()
        if existed:
            check_header(path)
        elif path.with_name(DB_FILE + "-wal").exists():
            raise damaged(path, "missing, but its write-ahead log is there (the file was deleted or moved)")
        mode = "rw" if existed else "rwc"  # never create over a file that was there
        db = sqlite3.connect(
            f"file:{quote(str(path))}?mode={mode}", uri=True, check_same_thread=False, isolation_level=None
        )
        database = cls(db, path)
        try:
            if existed:
                check_intact(db, path)  # before anything is written to it
            use_wal(db, path)
            with database._write():  # one transaction, which proves the file takes writes
                create_schema(db)
        except sqlite3.Error as error:
            db.close()
            raise sqlite_fault(error, path) or damaged(path, f"damaged ({error})") from error
        except BaseException:
            db.close()
            raise
        return database

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reads -------------------------------------------------------------------------
    def libraries(self) -> list[tuple[Library, int]]:
        """Every library (its image count left at 0) with its vectors' dimension."""
        with self._statements() as db:
            rows = db.execute(
                "SELECT name, model_version, create_time, dimension, thumbnails, threshold FROM libraries"
            ).fetchall()
        return [
            (Library(name, version, created, 0, bool(thumbnails), threshold), dimension)
            for name, version, created, dimension, thumbnails, threshold in rows
        ]

    def images(self, library: str, dimension: int) -> tuple[list[NewImage], np.ndarray, list[float]]:
        """Every image of a library: the images, their vectors as one matrix, their create times."""
        with self._statements() as db:
            rows = db.execute(
                "SELECT id, vector, metadata, create_time, content_hash, perceptual_hash, width, height FROM images "
                "WHERE library = ?",
                (library,),
            ).fetchall()
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), dimension)
        images = [
            NewImage(
                vectors[i],
                row[0],
                json.loads(row[2]),
                row[4],
                perceptual_hash=row[5],
                size=(row[6], row[7]) if row[6] is not None else None,
            )
            for i, row in enumerate(rows)
        ]
        return images, vectors, [row[3] for row in rows]

    def images_after(self, library: str, after: str, count: int) -> list[Image]:
        """Up to ``count`` images whose id sorts after ``after``, in id order (SQLite's byte order of
        UTF-8 is code point order)."""
        with self._statements() as db:
            rows = db.execute(
                "SELECT id, metadata, create_time FROM images WHERE library = ? AND id > ? ORDER BY id LIMIT ?",
                (library, after, count),
            ).fetchall()
        return [Image(image_id, json.loads(metadata), created) for image_id, metadata, created in rows]

    def stored_after(self, library: str, after: str, count: int) -> list[StoredImage]:
        """As ``images_after``, each image with every column the table has (a column added since, by name)."""
        with self._statements() as db:
            found = db.execute(
                "SELECT * FROM images WHERE library = ? AND id > ? ORDER BY id LIMIT ?", (library, after, count)
            )
            names = [column[0] for column in found.description]
            rows = [dict(zip(names, row, strict=True)) for row in found.fetchall()]
        return [stored_image(row) for row in rows]

    def thumbnail(self, library: str, image_id: str) -> bytes | None:
        with self._statements() as db:
            row = db.execute(
                "SELECT thumbnail FROM images WHERE library = ? AND id = ?", (library, image_id)
            ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    # --- writes: each one transaction, committed when the call returns --------------------
    def create_library(self, library: Library, dimension: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO libraries (name, model_version, dimension, create_time, thumbnails, threshold) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    library.name,
                    library.model_version,
                    dimension,
                    library.create_time,
                    int(library.thumbnails),
                    library.threshold,
                ),
            )

    def delete_library(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM images WHERE library = ?", (name,))
            db.execute("DELETE FROM libraries WHERE name = ?", (name,))

    def insert_images(
        self, library: str, images: list[NewImage], vectors: np.ndarray, create_time: float, *, thumbnails: bool
    ) -> None:
        """The images with their vectors (little-endian float32 rows), all created at ``create_time``, and
        their thumbnails if ``thumbnails``."""
        rows = [
            (
                library,
                image.id,
                vector.tobytes(),
                compact_json(image.metadata),
                create_time,
                image.content_hash,
                image.thumbnail if thumbnails else None,
                image.perceptual_hash,
                *(image.size or (None, None)),
            )
            for image, vector in zip(images, vectors, strict=True)
        ]
        with self._write() as db:
            db.executemany(
                "INSERT INTO images (library, id, vector, metadata, create_time, content_hash, thumbnail, "
                "perceptual_hash, width, height) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def delete_image(self, library: str, image_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM images WHERE library = ? AND id = ?", (library, image_id))

    def delete_images(self, library: str, image_ids: list[str]) -> None:
        """Every one of these images, in one transaction: all deleted or none."""
        with self._write() as db:
            db.executemany("DELETE FROM images WHERE library = ? AND id = ?", [(library, i) for i in image_ids])

    def replace_metadata(self, library: str, image_id: str, metadata: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE images SET metadata = ? WHERE library = ? AND id = ?",
                (compact_json(metadata), library, image_id),
            )

    @contextmanager
    def _statements(self) -> Iterator[sqlite3.Connection]:
        """The connection, held; SQLite's storage faults become the API's (full disk, damaged file)."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as error:
                fault = sqlite_fault(error, self.path)
                if fault is None:
                    raise
                raise fault from error

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed (and synced to disk) when the block ends, or rolled back."""
        with self._statements() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    db.execute("ROLLBACK")
                raise


STORED_COLUMNS = ("library", "id", "vector", "metadata", "create_time", "content_hash", "thumbnail", "width", "height")
"""The columns ``stored_image`` reads itself; any other is the image's ``extra``."""


def stored_image(row: dict[str, Any]) -> StoredImage:
    extra = {name: value for name, value in row.items() if name not in STORED_COLUMNS and value is not None}
    if row.get("width") is not None and row.get("height") is not None:
        extra["size"] = [row["width"], row["height"]]  # as the S3 Vectors record keeps it
    return StoredImage(
        row["id"],
        json.loads(row["metadata"]),
        row["create_time"],
        np.frombuffer(row["vector"], dtype="<f4").copy(),
        row["content_hash"],
        bytes(row["thumbnail"]) if row["thumbnail"] is not None else None,
        extra,
    )


def check_header(path: Path) -> None:
    """An existing file must be a SQLite database: not emptied, not overwritten."""
    with open(path, "rb") as file:
        start = file.read(len(SQLITE_HEADER))
    if not start:
        raise damaged(path, "0 bytes: the file was emptied (its libraries are not in it)")
    if start != SQLITE_HEADER:
        raise damaged(path, "not a SQLite database (its header is not SQLite's)")


def use_wal(db: sqlite3.Connection, path: Path) -> None:
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise StoreUnavailable(f"{path}: SQLite could not use WAL mode ({mode})", code="store_read_only")
    db.execute("PRAGMA synchronous=FULL")


def create_schema(db: sqlite3.Connection) -> None:
    """The tables and the columns this release has, and its schema version (inside a transaction)."""
    for statement in SCHEMA.split(";")[:-1]:  # not executescript, which would commit first
        db.execute(statement)
    add_new_columns(db)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def check_intact(db: sqlite3.Connection, path: Path) -> None:
    """Intact (``PRAGMA quick_check``), of a schema version this release knows, with its tables."""
    problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise damaged(path, "PRAGMA quick_check: " + "; ".join(problems[:3]))
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise damaged(path, f"schema version {version}, newer than this release's {SCHEMA_VERSION}")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"libraries", "images"} <= tables:
        raise damaged(path, "not a library database (no libraries and images tables)")


def damaged(path: Path, reason: str) -> StoreUnavailable:
    return StoreUnavailable(f"{path}: {reason}; {RESTORE_HINT}", code="store_damaged")


def sqlite_fault(error: sqlite3.Error, path: Path) -> ApiError | None:
    """The API's error for a storage fault SQLite reports, or None for any other error."""
    name = getattr(error, "sqlite_errorname", "")
    if name.startswith("SQLITE_FULL"):
        return storage_full(path, str(error))
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return damaged(path, f"damaged ({error})")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return StoreUnavailable(f"{path}: cannot be written ({error})", code="store_read_only")
    return None


def add_new_columns(db: sqlite3.Connection) -> None:
    for (table, column), statement in COLUMNS_ADDED.items():
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(statement)


def lock_folder(folder: Path) -> IO[str]:
    """An exclusive lock on the data directory, held while the store is open (released on exit or crash)."""
    handle = open(folder / LOCK_FILE, "a+")  # held open on purpose: the lock lives as long as the store
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise StoreUnavailable(
                f"data_dir {folder}: in use by another server process; run one server per data directory"
            ) from exc
    return handle
