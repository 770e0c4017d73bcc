"""The embedded store's in-memory index: one float32 matrix per library, searched exactly.

A ``LibraryIndex`` holds one library as a ``Snapshot``: its vectors (the rows of a matrix), each row's
id, metadata (whole, and its filterable part), create time and file hash, and a map from file hash to
image for exact duplicates. A snapshot is never changed once published: a write builds the next one
and swaps it in, so reads take the current snapshot without a lock and run alongside each other and
alongside writes, and a write never waits for a read. Writers hold the index's ``lock`` against each
other. ``local.py`` fills the index from SQLite (``local_sqlite.py``) on open and changes it only after
the write it mirrors is committed.

A search scores the query against every row (one matrix-vector product) and walks the best rows first
through the filter (``filter_eval.py``), at most ``filters.filtered_candidates`` of them; a near-duplicate
check takes the ``copy_candidates`` best rows.

What a write costs: appends fill spare rows of the matrix past every published snapshot's rows (growth
by a quarter when full); the lists and maps of ids and metadata are copied (pointers, ~20 ms per 100,000
images); a delete copies the matrix, since the row it frees is one that older snapshots still read.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.libraries.filter_eval import Predicate, compile_filter, readable
from runtime.libraries.filters import Filter, filtered_candidates
from runtime.libraries.metadata import filterable_part
from runtime.libraries.store import EXACT_SCORE, Image, Library, Match, NewImage, SearchResult, Stored
from runtime.vectors import scores_of


@dataclass(frozen=True)
class Snapshot:
    """One library's images at one moment; read-only once published (``LibraryIndex.snapshot``)."""

    library: Library
    """Its ``image_count`` is the number of rows."""
    vectors: np.ndarray
    """Exactly ``image_count`` rows: a view of the index's matrix that no write changes."""
    ids: list[str]
    rows: dict[str, int]
    metadata: list[dict[str, Any]]
    filterable: list[dict[str, Any]]
    """Each image's filterable metadata as the filter reads it (``filter_eval.readable``)."""
    create_times: list[float]
    hashes: list[str | None]
    by_hash: dict[str, str]
    perceptual: list[str | None]
    """Each image's perceptual hash (None: added before they were kept)."""
    sizes: list[tuple[int, int] | None]

    @property
    def count(self) -> int:
        return self.library.image_count

    def image(self, image_id: str) -> Image | None:
        row = self.rows.get(image_id)
        return None if row is None else Image(image_id, self.metadata[row], self.create_times[row])

    def vector(self, image_id: str) -> np.ndarray | None:
        row = self.rows.get(image_id)
        return None if row is None else self.vectors[row].copy()

    def exact(self, content_hash: str) -> Match | None:
        image_id = self.by_hash.get(content_hash)
        return None if image_id is None else Match(image_id, EXACT_SCORE, self.metadata[self.rows[image_id]])

    def top(
        self, vector: np.ndarray, top_k: int, min_score: float | None, conditions: Filter, exclude: str | None
    ) -> SearchResult:
        """The ``top_k`` best rows that pass the filter, best first (exact: every row is scored). A
        filter checks at most ``filters.filtered_candidates`` rows: past them the answer is ``partial``."""
        if self.count == 0:
            return SearchResult([])
        scores = scores_of(self.vectors @ vector)
        passes = compile_filter(conditions) if conditions else None
        skip = self.rows.get(exclude) if exclude is not None else None
        # With a filter, rank a generous head first and widen it only if too few rows pass; each widening
        # walks only the rows not checked before.
        wanted = top_k + (skip is not None)
        reach = min(self.count, filtered_candidates(conditions)) if passes else self.count
        limit = min(reach, max(16 * top_k, 1024) if passes else wanted)
        matches: list[Match] = []
        checked: set[int] = set()
        while True:
            done = self._walk(scores, best_rows(scores, limit), top_k, min_score, passes, skip, matches, checked)
            if done or limit == reach:
                return SearchResult(matches, partial=not done and reach < self.count)
            limit = min(reach, 8 * limit)

    def _walk(
        self,
        scores: np.ndarray,
        rows: np.ndarray,
        top_k: int,
        min_score: float | None,
        passes: Predicate | None,
        skip: int | None,
        matches: list[Match],
        checked: set[int],
    ) -> bool:
        """Add the rows of ``rows`` (best first) that pass to ``matches``, leaving out those ``checked``
        before; whether the walk found all it needs."""
        for ranked in rows:
            row = int(ranked)
            if row in checked:
                continue
            checked.add(row)
            score = float(scores[row])
            if min_score is not None and score < min_score:
                return True
            if row == skip or (passes is not None and not passes(self.filterable[row])):
                continue
            matches.append(self._match(row, score))
            if len(matches) == top_k:
                return True
        return False

    def every_image(self) -> list[Stored]:
        return [
            Stored(Image(image_id, metadata, created), filterable, content_hash, perceptual, size)
            for image_id, metadata, created, filterable, content_hash, perceptual, size in zip(
                self.ids,
                self.metadata,
                self.create_times,
                self.filterable,
                self.hashes,
                self.perceptual,
                self.sizes,
                strict=True,
            )
        ]

    def _match(self, row: int, score: float) -> Match:
        return Match(self.ids[row], score, self.metadata[row], self.perceptual[row])


class LibraryIndex:
    """One library in memory: the current ``snapshot``, replaced whole by each write (under ``lock``)."""

    def __init__(self, library: Library, dimension: int):
        self.name = library.name
        self.dimension = dimension
        self.lock = threading.Lock()
        """Held by writers (and the library's deletion) against each other; readers never take it."""
        self.deleted = False
        self._matrix = np.empty((0, dimension), dtype=np.float32)
        """Rows below the snapshot's count are never written again; appends fill the spare rows after them."""
        empty = dataclasses.replace(library, image_count=0)
        self.snapshot = Snapshot(empty, self._matrix[:0], [], {}, [], [], [], [], {}, [], [])

    def info(self) -> Library:
        return self.snapshot.library

    def append(self, images: list[NewImage], vectors: np.ndarray, create_times: list[float]) -> None:
        old = self.snapshot
        count = old.count + len(images)
        if count > len(self._matrix):
            # Grow by a quarter: amortised appends without doubling a large library's memory.
            grown = np.empty((max(count, len(self._matrix) * 5 // 4, 1024), self.dimension), dtype=np.float32)
            grown[: old.count] = old.vectors
            self._matrix = grown
        self._matrix[old.count : count] = vectors
        ids = [image.id or "" for image in images]
        by_hash = dict(old.by_hash)
        for image in images:
            if image.content_hash:
                by_hash.setdefault(image.content_hash, image.id or "")
        self._publish(
            old,
            count,
            ids=old.ids + ids,
            rows={**old.rows, **{image_id: old.count + offset for offset, image_id in enumerate(ids)}},
            metadata=old.metadata + [image.metadata for image in images],
            filterable=old.filterable + [readable(filterable_part(image.metadata)) for image in images],
            create_times=old.create_times + list(create_times),
            hashes=old.hashes + [image.content_hash for image in images],
            by_hash=by_hash,
            perceptual=old.perceptual + [image.perceptual_hash for image in images],
            sizes=old.sizes + [image.size for image in images],
        )

    def remove(self, image_id: str) -> None:
        """Move the last row into the freed one (order is not meaningful), in a copy of the matrix."""
        old = self.snapshot
        row, last = old.rows[image_id], old.count - 1
        matrix = np.empty_like(self._matrix)
        matrix[:last] = old.vectors[:last]
        columns: dict[str, list[Any]] = {
            "ids": list(old.ids),
            "metadata": list(old.metadata),
            "filterable": list(old.filterable),
            "create_times": list(old.create_times),
            "hashes": list(old.hashes),
            "perceptual": list(old.perceptual),
            "sizes": list(old.sizes),
        }
        if row != last:
            matrix[row] = old.vectors[last]
            for column in columns.values():
                column[row] = column[last]
        for column in columns.values():
            del column[last]
        rows = dict(old.rows)
        del rows[image_id]
        if row != last:
            rows[old.ids[last]] = row
        by_hash = dict(old.by_hash)
        content_hash = old.hashes[row]
        if content_hash and by_hash.get(content_hash) == image_id:
            del by_hash[content_hash]
        self._matrix = matrix
        self._publish(old, last, rows=rows, by_hash=by_hash, **columns)

    def remove_many(self, image_ids: set[str]) -> None:
        """Drop these rows at once, in a copy of the matrix (older snapshots still read the old one):
        one copy however many go, where ``remove`` copies once per image."""
        old = self.snapshot
        kept = [row for row, image_id in enumerate(old.ids) if image_id not in image_ids]
        matrix = np.empty((max(len(kept), 1024), self.dimension), dtype=np.float32)
        matrix[: len(kept)] = old.vectors[kept]
        # Every list of the snapshot is a column of one value per row.
        columns = {
            column.name: [getattr(old, column.name)[row] for row in kept]
            for column in dataclasses.fields(Snapshot)
            if isinstance(getattr(old, column.name), list)
        }
        rows = {image_id: row for row, image_id in enumerate(columns["ids"])}
        by_hash = {content_hash: owner for content_hash, owner in old.by_hash.items() if owner not in image_ids}
        self._matrix = matrix
        self._publish(old, len(kept), rows=rows, by_hash=by_hash, **columns)

    def set_metadata(self, image_id: str, metadata: dict[str, Any]) -> Image:
        old = self.snapshot
        row = old.rows[image_id]
        whole, filterable = list(old.metadata), list(old.filterable)
        whole[row], filterable[row] = metadata, readable(filterable_part(metadata))
        self._publish(old, old.count, metadata=whole, filterable=filterable)
        return Image(image_id, metadata, old.create_times[row])

    def _publish(self, old: Snapshot, count: int, **changes: Any) -> None:
        library = dataclasses.replace(old.library, image_count=count)
        self.snapshot = dataclasses.replace(old, library=library, vectors=self._matrix[:count], **changes)


def best_rows(scores: np.ndarray, count: int) -> np.ndarray:
    """Indexes of the ``count`` highest scores, highest first."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    head = np.argpartition(-scores, count - 1)[:count]
    return head[np.argsort(-scores[head], kind="stable")]
