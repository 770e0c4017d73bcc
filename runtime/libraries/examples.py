"""More like these, not those: a search by positive and negative examples, as recommendation APIs do.

Each example is a stored image (its id), an image (URL or bytes) or a text. The query is one vector,
formed as Qdrant's ``average_vector`` strategy forms it::

    p = mean of the positive examples' unit vectors
    n = mean of the negative examples' unit vectors
    query = normalise(p + (p - n))        (= normalise(2p - n); normalise(p) with no negative)

so the query starts at the positives' average and moves as far again away from the negatives'. It is
then one ordinary search (the same ranking, filter, ``min_score``, ``group_by`` and scores as any other),
with every stored example left out of the matches. Texts and images may be mixed: a text's vector is
the model's text embedding, compared with images as a text search compares it.

The order of the work spares the expensive parts: the limits, then the stored examples' vectors in one
batched read (a missing id is a 404 before any model work), then every image and text example in one
``Embedder.embed`` call at INTERACTIVE priority (the images in one forward pass, the texts in another).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.embedder import Embedder, Input
from runtime.engines.priority import INTERACTIVE
from runtime.errors import BadRequest
from runtime.libraries.filters import Filter
from runtime.libraries.store import LibraryStore, SearchResult

MAX_EXAMPLES = 16
"""Positive and negative examples together, at most, in one search."""
CANCELLED_OUT = 1e-6
"""Below this length, ``2p - n`` has no direction left to search in."""


@dataclass(frozen=True)
class Example:
    """One example: a stored image's ``image_id``, or the ``source`` to embed; ``field`` names it in errors."""

    field: str
    image_id: str | None = None
    source: Input | None = None


def check_examples(positive: list[Example], negative: list[Example]) -> None:
    """At least one positive, at most MAX_EXAMPLES in all: a 400 naming the field (the first one past it)."""
    if not positive:
        raise BadRequest("positive: give at least one example (an id, url, img or text)", code="missing_input")
    if len(positive) + len(negative) > MAX_EXAMPLES:
        first_past = positive[MAX_EXAMPLES] if len(positive) > MAX_EXAMPLES else negative[MAX_EXAMPLES - len(positive)]
        raise BadRequest(
            f"{first_past.field}: past the limit of {MAX_EXAMPLES} examples (positive and negative together)",
            code="batch_too_large",
        )


def query_vector(positive: np.ndarray, negative: np.ndarray | None) -> np.ndarray:
    """``normalise(2p - n)``, or ``normalise(p)`` without negatives (rows: unit vectors); a 400 when
    the examples cancel out."""
    mean_positive = positive.astype(np.float64).mean(axis=0)
    query = mean_positive if negative is None else 2 * mean_positive - negative.astype(np.float64).mean(axis=0)
    length = float(np.linalg.norm(query))
    if not np.isfinite(length) or length < CANCELLED_OUT:
        raise BadRequest(
            "positive: the examples cancel out (the query 2 x mean(positive) - mean(negative) is zero); "
            "give other examples",
            code="invalid_value",
        )
    unit: np.ndarray = (query / length).astype(np.float32)
    return unit


def search_by_examples(
    store: LibraryStore[Any],
    embedder: Embedder,
    name: str,
    positive: list[Example],
    negative: list[Example],
    *,
    top_k: int,
    min_score: float | None = None,
    filter: Filter | None = None,
    group_by: str | None = None,
    per_group: int | None = None,
) -> SearchResult:
    """The search of ``query_vector`` over the examples' vectors, leaving the stored examples out."""
    check_examples(positive, negative)
    vectors = example_vectors(store, embedder, name, positive + negative)
    count = len(positive)
    query = query_vector(np.stack(vectors[:count]), np.stack(vectors[count:]) if negative else None)
    return store.search(
        name,
        query,
        model_version=embedder.model_version,
        top_k=top_k,
        min_score=min_score,
        filter=filter,
        exclude={example.image_id for example in positive + negative if example.image_id is not None},
        group_by=group_by,
        per_group=per_group,
    )


def example_vectors(
    store: LibraryStore[Any], embedder: Embedder, name: str, examples: list[Example]
) -> list[np.ndarray]:
    """Each example's unit vector, in order: the stored ones in one read, then the others in one embed call."""
    stored = [
        (position, example.image_id, example.field)
        for position, example in enumerate(examples)
        if example.image_id is not None
    ]
    given = [(position, example.source) for position, example in enumerate(examples) if example.source is not None]
    vectors: dict[int, np.ndarray] = {}
    if stored:
        read = store.stored_vectors(
            name,
            [image_id for _, image_id, _ in stored],
            [field for _, _, field in stored],
            model_version=embedder.model_version,
        )
        vectors.update(zip([position for position, _, _ in stored], read, strict=True))
    if given:
        embedded = embedder.embed([source for _, source in given], INTERACTIVE)
        vectors.update(zip([position for position, _ in given], embedded, strict=True))
    return [vectors[position] for position in range(len(examples))]
