"""A library as JSONL, and back: the export format, its writer and its reader, and restore.

An export is one JSON object per line (UTF-8, ``\\n``-terminated):

- the header, first: ``{"format": "imsim-library-export", "format_version": 1, "name", "model_version",
  "dimension", "create_time", "image_count", "thumbnails", ...}``, with every library-level setting the
  store keeps (a field ``Library`` has) by its name;
- one line an image: ``{"id", "metadata", "create_time", "content_hash", "model_version", "vector",
  "thumbnail"?, ...}``: ``vector`` is base64 of the stored float32 values, little-endian, exactly as the
  store keeps them; ``thumbnail`` base64 of the WebP, when the store kept one; whatever else the store
  keeps of an image (``StoredImage.extra``: ``perceptual_hash``, ...) by its name;
- the end, last: ``{"format_end": true, "images": N}``, so a cut-off export is known as one.

Times are seconds since the epoch, as stored. ``export_lines`` pages through the store
(``LibraryStore.stored_images``): one page in memory at a time.

``restore`` adds an export's images to a library through the store's one add path for batches
(``LibraryStore.add_batch``), without the model: the vectors are taken as they are, which is only
right for the model that made them, so the export's model version must be the target library's (and
the server's, when a server restores); otherwise 409 ``model_version_mismatch`` names both. Ids are
kept; an id the library holds is ``already present``; no duplicate screening (a restore copies). A
line that cannot be read is that line's failure, named by its number, and the others go on. The
library is created from the header when it does not exist.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.errors import DUPLICATE_ID, IMAGE_EXISTS, MODEL_VERSION_MISMATCH, ApiError, BadRequest, Conflict, NotFound
from runtime.libraries.hashing import is_content_hash
from runtime.libraries.perceptual import is_perceptual_hash
from runtime.libraries.store import Added, Library, LibraryStore, NewImage, Refused, StoredImage
from runtime.libraries.values import compact_json, writable_as_utf8

FORMAT = "imsim-library-export"
FORMAT_VERSION = 1
MEDIA_TYPE = "application/x-ndjson"
RESTORE_BATCH = 500
"""Images per ``add_batch`` call of a restore (S3 Vectors' PutVectors takes 500 a call)."""
INVALID_EXPORT = "invalid_export"
"""The header is not one of this format (or of a version this release reads), or a line is not an image of it."""
INVALID_VECTOR = "invalid_vector"
"""An image line's ``vector`` is not base64 of ``dimension`` finite float32 values."""
HEADER_FIELDS = ("format", "format_version", "name", "model_version", "dimension", "create_time", "thumbnails")
LINE_FIELDS = frozenset({"id", "metadata", "create_time", "content_hash", "model_version", "vector", "thumbnail"})
NEW_IMAGE_FIELDS = frozenset(one.name for one in dataclasses.fields(NewImage))
"""An image line's other fields are restored when the add path takes them by that name (``NewImage``)."""
LIBRARY_SETTINGS = tuple(
    one.name for one in dataclasses.fields(Library) if one.name not in ("name", "model_version", "create_time")
)


# --- writing -----------------------------------------------------------------------------------


def export_lines(store: LibraryStore[Any], name: str) -> Iterator[bytes]:
    """The library's export, a line at a time (header, images in the store's listing order, end)."""
    library = store.get_library(name)
    yield line_of(header_of(library, store.library_dimension(name)))
    count, token = 0, None
    while True:
        page = store.stored_images(name, next_token=token)
        for image in page.images:
            yield line_of(image_line(image, library.model_version))
        count += len(page.images)
        token = page.next_token
        if token is None:
            break
    yield line_of({"format_end": True, "images": count})


def header_of(library: Library, dimension: int) -> dict[str, Any]:
    settings = {name: getattr(library, name) for name in LIBRARY_SETTINGS}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": library.name,
        "model_version": library.model_version,
        "dimension": dimension,
        "create_time": library.create_time,
        **settings,
    }


def image_line(image: StoredImage, model_version: str) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": image.id,
        "metadata": image.metadata,
        "create_time": image.create_time,
        "content_hash": image.content_hash,
        "model_version": model_version,
        "vector": base64.b64encode(np.asarray(image.vector, dtype="<f4").tobytes()).decode("ascii"),
    }
    if image.thumbnail is not None:
        line["thumbnail"] = base64.b64encode(image.thumbnail).decode("ascii")
    return {**image.extra, **line}


def line_of(value: dict[str, Any]) -> bytes:
    return (compact_json(value) + "\n").encode("utf-8")


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportHeader:
    name: str
    model_version: str
    dimension: int
    thumbnails: bool
    threshold: float | None = None
    """The library's default ``similar`` threshold, where it had one."""


def read_header(raw: bytes) -> ExportHeader:
    """The first line, or 400 ``invalid_export`` saying what is wrong with it."""
    value = parsed(raw, 1)
    if value.get("format") != FORMAT:
        raise invalid(f"line 1: not the header of an export (its format is not {FORMAT!r})")
    if value.get("format_version") != FORMAT_VERSION:
        raise invalid(
            f"line 1: format_version {value.get('format_version')!r}; this release reads version {FORMAT_VERSION}"
        )
    missing = [name for name in HEADER_FIELDS if name not in value]
    if missing:
        raise invalid(f"line 1: {missing[0]}: missing from the header")
    name, version, dimension = value["name"], value["model_version"], value["dimension"]
    if not isinstance(name, str) or not isinstance(version, str) or not version:
        raise invalid("line 1: name and model_version: must be strings")
    if not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 1:
        raise invalid("line 1: dimension: must be a positive integer")
    threshold = value.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise invalid("line 1: threshold: must be a number or null")
    return ExportHeader(name, version, dimension, bool(value["thumbnails"]), threshold)


def read_image(raw: bytes, number: int, header: ExportHeader) -> NewImage:
    """An image line as the image to add, or a 400 naming the line and the field."""
    line = f"line {number}"
    value = parsed(raw, number)
    unknown = sorted(set(value) - LINE_FIELDS - NEW_IMAGE_FIELDS)
    if unknown:
        raise BadRequest(
            f"{line}: {unknown[0]}: unknown field (this release keeps no such field)", code="unknown_field"
        )
    if value.get("model_version") != header.model_version:
        raise invalid(
            f"{line}: model_version {value.get('model_version')!r}, not the header's {header.model_version!r}"
        )
    if not isinstance(value.get("id"), str):
        raise BadRequest(f"{line}: id: must be a string", code="invalid_image_id")
    content_hash = value.get("content_hash")
    if content_hash is not None and not is_content_hash(content_hash):
        raise invalid(f"{line}: content_hash: not a SHA-256 hex digest")
    extra = {name: value[name] for name in (NEW_IMAGE_FIELDS - LINE_FIELDS) & set(value)}
    if "perceptual_hash" in extra and not is_perceptual_hash(extra["perceptual_hash"]):
        raise invalid(f"{line}: perceptual_hash: not a hex digest (perceptual.perceptual_hash)")
    if "size" in extra:
        extra["size"] = size_of(extra["size"], line)
    return NewImage(
        vector=vector_of(value.get("vector"), header.dimension, line),
        id=value["id"],
        metadata=value.get("metadata", {}),
        content_hash=content_hash,
        thumbnail=thumbnail_of(value.get("thumbnail"), line),
        **extra,
    )


def parsed(raw: bytes, number: int) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"line {number}: not valid JSON ({exc})", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"line {number}: must be a JSON object", code="invalid_json")
    if not writable_as_utf8(value):
        raise BadRequest(f"line {number}: holds a lone surrogate, which is not text", code="invalid_value")
    return value


def vector_of(encoded: Any, dimension: int, line: str) -> np.ndarray:
    """The stored float32 values: ``dimension`` of them, finite, not all zero."""
    try:
        data = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
    except (binascii.Error, ValueError):
        data = None
    if data is None or len(data) != 4 * dimension:
        raise BadRequest(
            f"{line}: vector: must be base64 of {dimension} little-endian float32 values", code=INVALID_VECTOR
        )
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)) or not vector.any():
        raise BadRequest(f"{line}: vector: must be finite and not zero", code=INVALID_VECTOR)
    return vector


def thumbnail_of(encoded: Any, line: str) -> bytes | None:
    if encoded is None:
        return None
    try:
        if isinstance(encoded, str) and encoded:
            return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise BadRequest(f"{line}: thumbnail: not valid base64", code="invalid_base64")


def size_of(value: Any, line: str) -> tuple[int, int]:
    """``[width, height]`` of the original picture, two positive integers."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in value)
    ):
        raise invalid(f"{line}: size: must be [width, height], two positive integers")
    return (value[0], value[1])


def invalid(message: str) -> BadRequest:
    return BadRequest(message, code=INVALID_EXPORT)


# --- restoring ---------------------------------------------------------------------------------


@dataclass
class Restored:
    library: str
    created: bool
    """The library was made from the export's header."""
    counts: dict[str, int] = field(
        default_factory=lambda: {"processed": 0, "added": 0, "already_present": 0, "failed": 0}
    )
    failures: list[dict[str, Any]] = field(default_factory=list)
    """``{"line", "id", "field", "code", "message"}`` of each image line not restored, in order."""
    complete: bool = False
    """The export's end line was read: nothing of it was cut off."""

    def body(self) -> dict[str, Any]:
        return {
            "library": self.library,
            "created": self.created,
            "complete": self.complete,
            "counts": self.counts,
            "failures": self.failures,
        }


def restore(
    store: LibraryStore[Any],
    lines: Iterable[bytes],
    *,
    library: str | None = None,
    server_version: str | None = None,
    first_line: int = 1,
) -> Restored:
    """Adds the export's images to ``library`` (default: the header's name), created from the header if
    absent. ``server_version``: the model the server embeds with (None: no model is served here, as
    in the CLI's restore into a data directory). ``first_line``: the number of the header's line (a
    part of a longer export, sent by the CLI through the API, numbers its lines as the whole file)."""
    numbered = ((number, raw) for number, raw in enumerate(lines, first_line) if raw.strip())
    first = next(numbered, None)
    if first is None:
        raise invalid("request body: empty; give an export (its header line first)")
    header = read_header(first[1])
    if server_version is not None and server_version != header.model_version:
        raise mismatch(f"this server embeds with {server_version}", header)
    name = library or header.name
    created = ensure_library(store, name, header)
    restored = Restored(store.get_library(name).name, created)
    batch: list[tuple[int, NewImage]] = []
    for number, raw in numbered:
        if restored.complete:
            restored.failures.append(failure(number, None, invalid(f"line {number}: after the export's end line")))
            restored.counts["failed"] += 1
            continue
        if b'"format_end"' in raw and parsed(raw, number).get("format_end") is True:
            restored.complete = True
            continue
        restored.counts["processed"] += 1
        try:
            image = read_image(raw, number, header)
            if any(image.id == earlier.id for _, earlier in batch):
                raise BadRequest(f"line {number}: id: {image.id!r} is given twice in the export", code=DUPLICATE_ID)
            batch.append((number, image))
        except ApiError as error:
            restored.failures.append(failure(number, None, error))
            restored.counts["failed"] += 1
        if len(batch) == RESTORE_BATCH:
            add(store, restored, batch, header)
            batch = []
    if batch:
        add(store, restored, batch, header)
    restored.failures.sort(key=lambda one: one["line"])
    return restored


def ensure_library(store: LibraryStore[Any], name: str, header: ExportHeader) -> bool:
    """Whether the library was created now; an existing one must hold the export's model's vectors."""
    try:
        existing = store.get_library(name)
    except NotFound:
        check_dimension(store.dimension, header)
        store.create_library(name, header.model_version, thumbnails=header.thumbnails, threshold=header.threshold)
        return True
    if existing.model_version != header.model_version:
        raise mismatch(f"library {existing.name!r} holds vectors of model {existing.model_version}", header)
    check_dimension(store.library_dimension(name), header)
    return False


def check_dimension(dimension: int, header: ExportHeader) -> None:
    """The same model's vectors have one dimension: another in the header is a damaged export."""
    if dimension != header.dimension:
        raise invalid(
            f"line 1: dimension {header.dimension}, but model {header.model_version}'s vectors here have {dimension}"
        )


def add(store: LibraryStore[Any], restored: Restored, batch: list[tuple[int, NewImage]], header: ExportHeader) -> None:
    results = store.add_batch(
        restored.library,
        [image for _, image in batch],
        model_version=header.model_version,
        dedup=None,
        labels=[f"line {number}" for number, _ in batch],
    )
    for (number, image), result in zip(batch, results, strict=True):
        if isinstance(result, Added):
            restored.counts["added"] += 1
        elif isinstance(result, Refused) and result.error.code == IMAGE_EXISTS:
            restored.counts["already_present"] += 1
        else:
            error = result.error if isinstance(result, Refused) else invalid(f"line {number}: not added")
            restored.failures.append(failure(number, image.id, error))
            restored.counts["failed"] += 1


def failure(number: int, image_id: str | None, error: ApiError) -> dict[str, Any]:
    return {
        "line": number,
        "id": image_id,
        "field": field_of(error.message),
        "code": error.code,
        "message": error.message,
    }


def field_of(message: str) -> str:
    """The field a line's message names: ``line 4.id: ...`` (the add path's words) or ``line 4: vector: ...``."""
    segments = [segment.strip() for segment in message.split(":")]
    if "." in segments[0]:
        return segments[0].split(".", 1)[1]
    return segments[1] if len(segments) > 2 and segments[1].isidentifier() else ""


def mismatch(target: str, header: ExportHeader) -> Conflict:
    return Conflict(
        f"the export holds vectors of model {header.model_version}; {target}, and vectors of two models do not "
        f"compare. Restore it where {header.model_version} is served, or re-import the images themselves",
        code=MODEL_VERSION_MISMATCH,
    )
