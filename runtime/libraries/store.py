"""The storage interface of image libraries, and the rules every store applies the same way.

A store keeps libraries of unit vectors with an id and a metadata object each. The public methods
of ``LibraryStore`` validate their arguments here, once, then call the store's own ``_``-methods,
which own atomicity (a dedup check and its insert happen as one step), quotas and durability.
"""

from __future__ import annotations

import json
import math
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.errors import BadRequest, Conflict, NotFound, QuotaExceeded
from runtime.observability import record_library_adds, span
from runtime.settings import Settings
from runtime.vectors import scores_of

MAX_NAME_CHARS = 64
MAX_ID_CHARS = 128
NAME_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})
"""Letters of any script and decimal digits (of any script). Marks, symbols, punctuation are out."""
ID_EXTRA_CHARS = frozenset("_-.:@")

# Metadata is stored whole, and its top-level string / number / boolean values are also indexed
# for ``filter``. On S3 Vectors the indexed part is "filterable metadata": at most 2 KB and 50 keys
# per vector. Every store applies the same, slightly lower, limits so a library behaves the same
# locally and on AWS.
MAX_FILTERABLE_KEYS = 40
MAX_FILTERABLE_BYTES = 1536
MAX_METADATA_KEY_CHARS = 63
RESERVED_METADATA_KEY = "__imsim__"
"""The S3 Vectors store keeps its own record under this key; user metadata may not use it."""

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Library:
    name: str
    model_version: str
    create_time: float
    image_count: int


@dataclass(frozen=True)
class Image:
    id: str
    metadata: dict[str, Any]
    create_time: float


@dataclass(frozen=True)
class Match:
    id: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True)
class NewImage:
    vector: np.ndarray
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Added:
    id: str
    score: float | None
    """Score of the closest image the library held before (None: dedup off, or it was empty)."""


@dataclass(frozen=True)
class Duplicate:
    match: Match


AddResult = Added | Duplicate


class LibraryStore(ABC):
    """Libraries of vectors. Arguments are checked here; subclasses implement the ``_`` methods."""

    def __init__(self, settings: Settings, dimension: int):
        self.settings = settings
        self.dimension = dimension

    # --- libraries ---------------------------------------------------------------------
    def create_library(self, name: str, model_version: str) -> Library:
        return self._create_library(check_library_name(name), model_version)

    def list_libraries(self) -> list[Library]:
        return sorted(self._list_libraries(), key=lambda library: (library.create_time, library.name))

    def get_library(self, name: str) -> Library:
        return self._get_library(check_library_name(name))

    def delete_library(self, name: str) -> None:
        self._delete_library(check_library_name(name))

    # --- images ------------------------------------------------------------------------
    def add_images(
        self, name: str, images: list[NewImage], *, model_version: str, dedup_threshold: float | None
    ) -> list[AddResult]:
        """Add in order; with a threshold, an image scoring at or above it against the library (or
        an earlier image of the same call) is not added and its best match is answered instead."""
        check_score(dedup_threshold, "threshold")
        checked = []
        seen: set[str] = set()
        for position, image in enumerate(images):
            where = f"images[{position}]" if len(images) > 1 else ""
            image_id = check_image_id(image.id, where) if image.id is not None else new_image_id()
            if image_id in seen:
                raise Conflict(f"{_at(where, 'id')}: {image_id!r} is given twice", code="image_exists")
            seen.add(image_id)
            metadata = check_metadata(image.metadata, self.settings.max_metadata_bytes, where)
            checked.append(NewImage(check_vector(image.vector, self.dimension), image_id, metadata))
        if not checked:
            return []
        with span("store"):
            return record_library_adds(
                self._add_images(check_library_name(name), checked, model_version, dedup_threshold)
            )

    def add_image(
        self,
        name: str,
        vector: np.ndarray,
        *,
        model_version: str,
        image_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        dedup_threshold: float | None = None,
    ) -> AddResult:
        image = NewImage(vector, image_id, metadata if metadata is not None else {})
        return self.add_images(name, [image], model_version=model_version, dedup_threshold=dedup_threshold)[0]

    def get_image(self, name: str, image_id: str) -> Image:
        return self._get_image(check_library_name(name), check_image_id(image_id))

    def delete_image(self, name: str, image_id: str) -> None:
        self._delete_image(check_library_name(name), check_image_id(image_id))

    def search(
        self,
        name: str,
        vector: np.ndarray,
        *,
        model_version: str,
        top_k: int = 10,
        min_score: float | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Match]:
        """The ``top_k`` best matches, best first, scored (1 + cosine) / 2."""
        with span("store"):
            return self._search(
                check_library_name(name),
                check_vector(vector, self.dimension),
                model_version,
                self.check_top_k(top_k),
                check_score(min_score, "min_score"),
                check_filter(filter or {}),
            )

    def check_top_k(self, top_k: int) -> int:
        """1 to the ``max_top_k`` setting (the API checks it before embedding the query too)."""
        if not 1 <= top_k <= self.settings.max_top_k:
            raise BadRequest(f"top_k: must be between 1 and {self.settings.max_top_k}", code="invalid_value")
        return top_k

    def close(self) -> None:  # noqa: B027 (optional: a store with nothing to release keeps it)
        """Release files and connections; the store is not used afterwards."""

    # --- what each store implements ------------------------------------------------------
    @abstractmethod
    def _create_library(self, name: str, model_version: str) -> Library: ...

    @abstractmethod
    def _list_libraries(self) -> list[Library]: ...

    @abstractmethod
    def _get_library(self, name: str) -> Library: ...

    @abstractmethod
    def _delete_library(self, name: str) -> None: ...

    @abstractmethod
    def _add_images(
        self, name: str, images: list[NewImage], model_version: str, dedup_threshold: float | None
    ) -> list[AddResult]: ...

    @abstractmethod
    def _get_image(self, name: str, image_id: str) -> Image: ...

    @abstractmethod
    def _delete_image(self, name: str, image_id: str) -> None: ...

    @abstractmethod
    def _search(
        self,
        name: str,
        vector: np.ndarray,
        model_version: str,
        top_k: int,
        min_score: float | None,
        filter: dict[str, Scalar],
    ) -> list[Match]: ...


# --- names, ids, metadata, filters, vectors ---------------------------------------------


def check_score(value: float | None, field: str) -> float | None:
    """A score bound (``threshold``, ``min_score``): between 0 and 1 (NaN is not)."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise BadRequest(f"{field}: must be between 0 and 1", code="invalid_value")
    return value


def is_library_name(name: str) -> bool:
    """1 to 64 letters (any script), decimal digits or ``_``, once NFC-normalised."""
    return 1 <= len(name) <= MAX_NAME_CHARS and all(
        char == "_" or unicodedata.category(char) in NAME_CATEGORIES for char in name
    )


def check_library_name(name: str) -> str:
    """The name in NFC form (so two spellings of one name are one library), or a 400."""
    normal = unicodedata.normalize("NFC", name) if isinstance(name, str) else ""
    if not is_library_name(normal):
        raise BadRequest(
            f"name: {name!r} is not a library name; use 1 to {MAX_NAME_CHARS} letters (any script), "
            "digits or underscores",
            code="invalid_library_name",
        )
    return normal


def check_image_id(image_id: str, where: str = "") -> str:
    valid = (
        isinstance(image_id, str)
        and 1 <= len(image_id) <= MAX_ID_CHARS
        and image_id.strip(".") != ""
        and all(char in ID_EXTRA_CHARS or unicodedata.category(char) in NAME_CATEGORIES for char in image_id)
    )
    if not valid:
        raise BadRequest(
            f"{_at(where, 'id')}: {image_id!r} is not an image id; use 1 to {MAX_ID_CHARS} letters, digits "
            "or _ - . : @ (not only dots)",
            code="invalid_image_id",
        )
    return image_id


def new_image_id() -> str:
    return uuid.uuid4().hex


def check_metadata(metadata: Any, max_bytes: int, where: str = "") -> dict[str, Any]:
    """A JSON object within the size limits (see MAX_FILTERABLE_*), or a 400 naming the limit."""
    field_name = _at(where, "metadata")
    if not isinstance(metadata, dict):
        raise BadRequest(f"{field_name}: must be a JSON object", code="invalid_metadata")
    try:
        size = len(compact_json(metadata).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{field_name}: not valid JSON ({exc})", code="invalid_metadata") from exc
    if size > max_bytes:
        raise BadRequest(f"{field_name}: {size} bytes of JSON; at most {max_bytes}", code="metadata_too_large")
    for key in metadata:
        if key == RESERVED_METADATA_KEY or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise BadRequest(
                f"{field_name}: key {key!r}: top-level keys take 1 to {MAX_METADATA_KEY_CHARS} characters "
                f"and may not be {RESERVED_METADATA_KEY!r}",
                code="invalid_metadata",
            )
    indexed = filterable_part(metadata)
    indexed_size = len(compact_json(indexed).encode("utf-8"))
    if len(indexed) > MAX_FILTERABLE_KEYS or indexed_size > MAX_FILTERABLE_BYTES:
        raise BadRequest(
            f"{field_name}: its top-level string, number and boolean values (the ones filter matches) "
            f"take {len(indexed)} keys and {indexed_size} bytes; at most {MAX_FILTERABLE_KEYS} keys and "
            f"{MAX_FILTERABLE_BYTES} bytes. Put long or many values inside a nested object: stored, not filterable",
            code="metadata_too_large",
        )
    return metadata


def filterable_part(metadata: dict[str, Any]) -> dict[str, Scalar]:
    return {key: value for key, value in metadata.items() if is_scalar(value)}


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def check_filter(conditions: Any) -> dict[str, Scalar]:
    if not isinstance(conditions, dict):
        raise BadRequest("filter: must be a JSON object of metadata key: value", code="invalid_filter")
    if len(conditions) > MAX_FILTERABLE_KEYS:
        raise BadRequest(f"filter: at most {MAX_FILTERABLE_KEYS} keys", code="invalid_filter")
    for key, value in conditions.items():
        if not is_scalar(value) or key == RESERVED_METADATA_KEY or not key:
            raise BadRequest(
                f"filter.{key}: equality filters match top-level metadata values that are a string, number or boolean",
                code="invalid_filter",
            )
    return conditions


def matches_filter(metadata: dict[str, Any], conditions: dict[str, Scalar]) -> bool:
    """Equality on top-level values; ``true`` and ``1`` differ (as in JSON), ``1`` and ``1.0`` do not."""
    return all(_same_scalar(metadata.get(key), value) for key, value in conditions.items())


def _same_scalar(stored: Any, wanted: Scalar) -> bool:
    if not is_scalar(stored) or isinstance(stored, bool) != isinstance(wanted, bool):
        return False
    return isinstance(stored, str) == isinstance(wanted, str) and stored == wanted


def check_vector(vector: np.ndarray, dimension: int) -> np.ndarray:
    """The vector as float32 of unit length, so a dot product is the cosine.

    Embeddings arrive normalised; a wrong dimension or a zero vector is a bug, not bad input.
    """
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dimension:
        raise ValueError(f"vector has {vector.shape[0]} dimensions; the store holds {dimension}")
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and not zero")
    return vector / np.float32(norm)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def screen_duplicates(
    images: list[NewImage], dedup_threshold: float | None, nearest_stored: Callable[[np.ndarray], Match | None]
) -> tuple[list[AddResult], list[NewImage]]:
    """Each image's result, in order, and the images to store. With a threshold, an image whose best
    match (in the library, by ``nearest_stored``, or among the images accepted before it) scores at or
    above it is a ``Duplicate``; the caller holds the library's lock so nothing changes meanwhile."""
    results: list[AddResult] = []
    accepted: list[NewImage] = []
    for image in images:
        best = None
        if dedup_threshold is not None:
            best = better(nearest_stored(image.vector), best_in_batch(image.vector, accepted))
            if best is not None and best.score >= dedup_threshold:
                results.append(Duplicate(best))
                continue
        accepted.append(image)
        results.append(Added(image.id or "", best.score if best else None))
    return results, accepted


def best_in_batch(vector: np.ndarray, accepted: list[NewImage]) -> Match | None:
    """The closest of the images already accepted in the same add call (for dedup within a call)."""
    if not accepted:
        return None
    scores = scores_of(np.stack([image.vector for image in accepted]) @ vector)
    best = int(np.argmax(scores))
    return Match(accepted[best].id or "", float(scores[best]), accepted[best].metadata)


def better(first: Match | None, second: Match | None) -> Match | None:
    if first is None or (second is not None and second.score > first.score):
        return second
    return first


# --- the rules' errors, one wording for every store --------------------------------------


def check_model_version(library: Library, model_version: str) -> None:
    if library.model_version != model_version:
        raise Conflict(
            f"library {library.name!r} holds vectors of model {library.model_version}; this server embeds "
            f"with {model_version}, and vectors of two models do not compare. Serve {library.model_version} "
            "or create a new library",
            code="model_version_mismatch",
        )


def check_library_quota(count: int, settings: Settings) -> None:
    if count >= settings.max_libraries:
        raise QuotaExceeded(
            f"libraries: the quota of {settings.max_libraries} libraries is reached; delete one first "
            "(setting IMSIM_MAX_LIBRARIES)",
            code="library_quota_exceeded",
        )


def check_image_quota(name: str, count: int, adding: int, settings: Settings) -> None:
    if count + adding > settings.max_images_per_library:
        raise QuotaExceeded(
            f"images: library {name!r} holds {count} images; the quota is {settings.max_images_per_library} "
            "images per library (setting IMSIM_MAX_IMAGES_PER_LIBRARY)",
            code="image_quota_exceeded",
        )


def library_exists(name: str) -> Conflict:
    return Conflict(f"name: a library named {name!r} already exists", code="library_exists")


def library_not_found(name: str) -> NotFound:
    return NotFound(f"library {name!r} does not exist", code="library_not_found")


def image_exists(name: str, image_id: str) -> Conflict:
    return Conflict(
        f"id: library {name!r} already holds an image with id {image_id!r}; delete it first or use another id",
        code="image_exists",
    )


def image_not_found(name: str, image_id: str) -> NotFound:
    return NotFound(f"library {name!r} holds no image with id {image_id!r}", code="image_not_found")


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
