"""The embedded store: SQLite on disk for durability, one float32 matrix per library for exact search.

``LocalStore`` composes two parts: the in-memory index of each library (``local_index.py``: the matrix,
search, near-duplicate checks) and the SQLite persistence (``local_sqlite.py``: schema, reads, writes,
the data directory's lock).

- Durable: SQLite in WAL mode with ``synchronous=FULL``; a write is committed (and synced) before the
  call returns, so an acknowledged add survives a crash of the process or the machine.
- Exact: a search scores the query against every vector of the library (one matrix-vector product).
- Safe under concurrency: reads take the library's current snapshot (``local_index.py``) without a
  lock, so a slow search holds up neither other searches nor writes; writers take the library's lock,
  so a dedup check and the insert it allows run as one step. One server process per data directory
  (an exclusive file lock enforces it), since the in-memory matrices are that process's view of the data.
- Opened by ``open()`` (the server calls it at start-up) or on first use. Opening verifies the
  database (``local_sqlite.py``); a damaged, emptied or read-only one is refused with a 503 naming the
  file, on every call until it is mended, never served as an empty set of libraries.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from runtime.errors import BadRequest, StoreUnavailable
from runtime.libraries.filters import Filter
from runtime.libraries.local_index import LibraryIndex
from runtime.libraries.local_sqlite import LibraryDatabase, lock_folder
from runtime.libraries.store import (
    Image,
    ImagePage,
    Library,
    LibraryStore,
    Match,
    NewImage,
    SearchResult,
    Stored,
    StoredImage,
    StoredPage,
    check_library_quota,
    encode_token,
    library_exists,
    library_not_found,
)
from runtime.settings import Settings


class LocalStore(LibraryStore[LibraryIndex]):
    thumbnails_by_default = True  # a few KB an image, on the user's own disk

    def __init__(self, settings: Settings, dimension: int):
        super().__init__(settings, dimension)
        self.folder = Path(settings.data_dir)
        self._open_lock = threading.Lock()
        self._registry_lock = threading.Lock()  # creating and deleting libraries
        self._db: LibraryDatabase | None = None
        self._folder_lock: IO[str] | None = None
        self._indexes: dict[str, LibraryIndex] = {}

    # --- libraries ---------------------------------------------------------------------
    def _create_library(self, name: str, model_version: str, thumbnails: bool, threshold: float | None) -> Library:
        indexes = self._opened()
        with self._registry_lock:
            if name in indexes:
                raise library_exists(name)
            check_library_quota(len(indexes), self.settings)
            library = Library(name, model_version, time.time(), 0, thumbnails, threshold)
            self._database().create_library(library, self.dimension)
            indexes[name] = LibraryIndex(library, self.dimension)
        return library

    def _list_libraries(self) -> list[Library]:
        return [index.info() for index in list(self._opened().values())]

    def _delete_library(self, name: str) -> None:
        indexes = self._opened()
        with self._registry_lock:
            index = self._index(name)
            with index.lock:
                self._database().delete_library(name)
                index.deleted = True
                del indexes[name]

    # --- primitives: readers take the current snapshot, writers the library's lock -----------
    # A read primitive reads one snapshot; two in one call (search_like's vector, then its query) may
    # read two, a write apart, which is the order the calls would have had one after the other.
    @contextmanager
    def _reading(self, name: str) -> Iterator[tuple[Library, LibraryIndex]]:
        index = self._index(name)
        if index.deleted:
            raise library_not_found(name)
        yield index.info(), index

    @contextmanager
    def _writing(self, name: str) -> Iterator[tuple[Library, LibraryIndex]]:
        index = self._index(name)
        with self._live(index):
            yield index.info(), index

    def _existing_ids(self, held: LibraryIndex, ids: list[str]) -> list[str]:
        rows = held.snapshot.rows
        return [image_id for image_id in ids if image_id in rows]

    def _find_hashes(self, held: LibraryIndex, hashes: list[str]) -> dict[str, Match]:
        snapshot = held.snapshot
        found = {content_hash: snapshot.exact(content_hash) for content_hash in hashes}
        return {content_hash: match for content_hash, match in found.items() if match is not None}

    def _insert(self, held: LibraryIndex, images: list[NewImage]) -> None:
        now = time.time()
        vectors = np.stack([image.vector for image in images]).astype("<f4")
        keep = held.info().thumbnails
        self._database().insert_images(held.name, images, vectors, now, thumbnails=keep)
        held.append(images, vectors, [now] * len(images))

    def _image(self, held: LibraryIndex, image_id: str) -> Image | None:
        return held.snapshot.image(image_id)

    def _thumbnail(self, held: LibraryIndex, image_id: str) -> bytes | None:
        return self._database().thumbnail(held.name, image_id)

    def _vector(self, held: LibraryIndex, image_id: str) -> np.ndarray | None:
        return held.snapshot.vector(image_id)

    def _remove(self, held: LibraryIndex, image_id: str) -> None:
        self._database().delete_image(held.name, image_id)
        held.remove(image_id)

    def _replace_metadata(self, held: LibraryIndex, image_id: str, metadata: dict[str, Any]) -> Image:
        self._database().replace_metadata(held.name, image_id, metadata)
        return held.set_metadata(image_id, metadata)

    def _query(
        self,
        held: LibraryIndex,
        vector: np.ndarray,
        top_k: int,
        min_score: float | None,
        conditions: Filter,
        exclude: str | None,
    ) -> SearchResult:
        return held.snapshot.top(vector, top_k, min_score, conditions, exclude)

    def _every_image(self, held: LibraryIndex) -> list[Stored]:
        return held.snapshot.every_image()

    def _remove_many(self, held: LibraryIndex, images: list[Stored]) -> None:
        ids = [stored.image.id for stored in images]
        self._database().delete_images(held.name, ids)
        held.remove_many(set(ids))

    def _page(self, held: LibraryIndex, limit: int, token: dict[str, Any] | None) -> ImagePage:
        """Keyset pages in id order: the token is the last id served, so an insert or delete between
        pages neither repeats nor skips another image."""
        images, following = keyset_page(self._database().images_after, held.name, limit, token)
        return ImagePage(images, following)

    def _stored_page(self, held: LibraryIndex, limit: int, token: dict[str, Any] | None) -> StoredPage:
        """Keyset pages in id order, as ``_page``, each image with its vector."""
        images, following = keyset_page(self._database().stored_after, held.name, limit, token)
        return StoredPage(images, following)

    def library_dimension(self, name: str) -> int:
        """A data directory may hold libraries of several models: each has its own dimension."""
        return self._index(name).dimension

    def open(self) -> None:
        self._opened()

    def close(self) -> None:
        with self._open_lock, self._registry_lock:
            self._shut()

    def _shut(self) -> None:
        """Close the database and release the folder lock."""
        if self._db is not None:
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

    def _database(self) -> LibraryDatabase:
        """The open database (every caller has opened the store first)."""
        assert self._db is not None
        return self._db

    def _index(self, name: str) -> LibraryIndex:
        index = self._opened().get(name)
        if index is None:
            raise library_not_found(name)
        return index

    @contextmanager
    def _live(self, index: LibraryIndex) -> Iterator[None]:
        """Hold the library's lock (writers); a library deleted while we waited for it is not found."""
        with index.lock:
            if index.deleted:
                raise library_not_found(index.name)
            yield

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._folder_lock = lock_folder(self.folder)
        except OSError as error:
            if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise StoreUnavailable(
                f"data_dir {self.folder}: cannot be written ({error.strerror})", code="store_read_only"
            ) from error
        try:
            self._db = db = LibraryDatabase.open(self.folder)
            self._indexes = {library.name: load(db, library, dimension) for library, dimension in db.libraries()}
        except BaseException:
            # Left half open, the folder would stay locked and later requests would read "in use by another process".
            self._shut()
            raise


def load(db: LibraryDatabase, library: Library, dimension: int) -> LibraryIndex:
    """A library's index, filled with every image the database holds for it."""
    index = LibraryIndex(library, dimension)
    images, vectors, create_times = db.images(library.name, dimension)
    if images:
        index.append(images, vectors, create_times)
    return index


PageT = TypeVar("PageT", Image, StoredImage)


def keyset_page(
    rows_after: Callable[[str, str, int], list[PageT]], library: str, limit: int, token: dict[str, Any] | None
) -> tuple[list[PageT], str | None]:
    """``limit`` rows after the token's last id (one more is read to know whether a page follows), and
    the next page's token."""
    after = token.get("after") if token else None
    if token is not None and not isinstance(after, str):
        raise BadRequest("next_token: not a token this API gave", code="invalid_next_token")
    found = rows_after(library, after or "", limit + 1)
    images = found[:limit]
    return images, encode_token({"after": images[-1].id}) if len(found) > limit else None
