"""The embedded store's in-memory index: one float32 matrix per library, searched exactly.

A ``LibraryIndex`` holds one library's vectors as the rows of a matrix, with each row's id, metadata
(whole, and its filterable part), create time and file hash, and a map from file hash to image for
exact duplicates. A search scores the query against every row (one matrix-vector product) and walks
the best rows first through the filter (``filter_eval.py``); a near-duplicate check takes the single
best row. It knows nothing of disk: ``local.py`` fills it from SQLite (``local_sqlite.py``) on open and
changes it only after the write it mirrors is committed, holding its ``lock``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from runtime.libraries.filter_eval import Predicate, compile_filter
from runtime.libraries.filters import Filter
from runtime.libraries.metadata import filterable_part
from runtime.libraries.store import EXACT_SCORE, Image, Library, Match, NewImage
from runtime.vectors import scores_of


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


def best_rows(scores: np.ndarray, count: int) -> np.ndarray:
    """Indexes of the ``count`` highest scores, highest first."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    head = np.argpartition(-scores, count - 1)[:count]
    return head[np.argsort(-scores[head], kind="stable")]
