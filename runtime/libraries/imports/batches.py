"""One batch of an import: read and decode its images in parallel, embed them in one forward pass,
and add them to the library in one store call. Used by the local runner and by the AWS worker.

Per item, an import never stops: an item that cannot be read, decoded, named or described is a
failure in the batch's result, in the words a single add uses. What stops a job is a request-level
problem (``JobStopped``): the library is gone, full, or holds another model's vectors.

Idempotent by id: an item without an id gets its content hash as its id, and ids the library
already holds are skipped, so a batch done twice (a resumed job, a retried Lambda) adds nothing twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.engines import Engine
from runtime.errors import ApiError, InvalidInput
from runtime.inputs.fetch import UrlFetcher
from runtime.inputs.images import ImageLimits, decode_image, prepare_image
from runtime.libraries.imports.sources import ImportItem, problem, problem_of
from runtime.libraries.store import Added, LibraryStore, NewImage, check_image_id, check_metadata
from runtime.settings import Settings

try:
    from runtime.libraries.rules import content_hash  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # until the store's content-hash dedup lands (the same rule: sha256, hex)

    def content_hash(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


STORE_KNOWS_HASHES = "content_hash" in {f.name for f in dataclasses.fields(NewImage)}
HASH_ID_CHARS = 32
"""An item without an id is named by the first 32 hex digits of its content hash."""
JOB_STOPPING_CODES = frozenset(
    {"library_not_found", "image_quota_exceeded", "model_version_mismatch", "libraries_disabled"}
)


class JobStopped(Exception):
    """A problem no later batch can avoid: the job ends ``failed`` with this error."""

    def __init__(self, error: ApiError):
        super().__init__(error.message)
        self.error = error


@dataclass
class Ready:
    item: ImportItem
    id: str
    pixels: np.ndarray
    hash: str


class ExactSeen:
    """Content hashes already taken by this import (across its parallel batches): hash -> image id."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def claim(self, digest: str, image_id: str) -> str | None:
        """None if this image is the first with this content, else the id of the first."""
        with self._lock:
            first = self._ids.setdefault(digest, image_id)
        return None if first == image_id else first


class BatchImporter:
    def __init__(
        self, settings: Settings, engine: Engine, store: LibraryStore, readers: Executor, *, local_files: bool = False
    ):
        self.settings = settings
        self.engine = engine
        self.store = store
        self.readers = readers
        self.fetcher = UrlFetcher(settings)
        self.image_limits = ImageLimits.of(settings)
        self.local_files = local_files
        """Locations may be file paths (the CLI's folder source); never for a request's items."""

    def run(
        self, library: str, items: list[ImportItem], *, threshold: float | None, seen: ExactSeen | None = None
    ) -> dict[str, Any]:
        """The batch's counts (processed, added, duplicates, skipped, failed) and its ``failures``."""
        failures: list[dict[str, Any]] = []
        duplicates = 0
        ready: list[Ready] = []
        for item, outcome in zip(items, self.readers.map(self.read, items)):
            if isinstance(outcome, dict):
                failures.append({"item": item.name, "position": item.position, **outcome})
            elif seen is not None and seen.claim(outcome.hash, outcome.id) is not None:
                duplicates += 1  # the same bytes earlier in this import: an exact duplicate
            else:
                ready.append(outcome)
        added, near, skipped = self.add(library, ready, threshold)
        return {
            "processed": len(items),
            "added": added,
            "duplicates": duplicates + near,
            "skipped": skipped,
            "failed": len(failures),
            "failures": failures,
        }

    # --- reading -------------------------------------------------------------------------
    def read(self, item: ImportItem) -> Ready | dict[str, str]:
        """The item ready to embed, or its problem ``{"field", "code", "message"}``.

        A local file is reported as a single add of its bytes (``img``) would be; anything else as ``url``.
        """
        if item.problem is not None:
            return item.problem
        field_name = "img" if self.is_local(item.location) else "url"
        try:
            data = self.read_bytes(item.location)
            digest = content_hash(data)
            image_id = check_image_id(item.id) if item.id is not None else digest[:HASH_ID_CHARS]
            check_metadata(item.metadata, self.settings.max_metadata_bytes)
            return Ready(item, image_id, self.prepare(data, field_name), digest)
        except ApiError as exc:
            return problem_of(exc, field_name)
        except Exception as exc:  # noqa: BLE001 (one bad item never stops an import)
            message = f"{field_name}: the image cannot be read ({exc.__class__.__name__})"
            return problem(field_name, "invalid_image", message)

    def is_local(self, location: str) -> bool:
        return self.local_files and "://" not in location

    def read_bytes(self, location: str) -> bytes:
        if self.is_local(location):
            return read_file(location, self.settings.max_image_bytes)
        return self.fetcher.fetch(location, "url")

    def prepare(self, data: bytes, field_name: str) -> np.ndarray:
        size = self.engine.image_size
        try:
            image = decode_image(data, field_name, self.image_limits, draft_to=size * self.settings.draft_factor)
        except InvalidInput as exc:
            if exc.code == "not_an_image" and field_name == "url":  # a single add by URL says it this way
                raise InvalidInput("url: the URL's content is not an image", code="url_not_image") from exc
            raise
        return prepare_image(image, size)

    # --- embedding and adding ------------------------------------------------------------
    def add(self, library: str, ready: list[Ready], threshold: float | None) -> tuple[int, int, int]:
        """Embed in one forward pass and add: (added, near-duplicates, skipped as already present)."""
        if not ready:
            return 0, 0, 0
        vectors = self.engine.encode_images(np.stack([one.pixels for one in ready]))
        images = [new_image(one, vector) for one, vector in zip(ready, vectors)]
        version = self.engine.model_version
        try:
            results = self.store.add_images(library, images, model_version=version, dedup_threshold=threshold)
            skipped = 0
        except ApiError as exc:
            if exc.code in JOB_STOPPING_CODES:
                raise JobStopped(exc) from exc
            if exc.code != "image_exists":
                raise
            # Some ids are already there (a re-run, or a resumed batch): add the others.
            absent = [image for image in images if not self.present(library, image.id or "")]
            skipped = len(images) - len(absent)
            results = self.store.add_images(library, absent, model_version=version, dedup_threshold=threshold)
        added = sum(isinstance(result, Added) for result in results)
        return added, len(results) - added, skipped

    def present(self, library: str, image_id: str) -> bool:
        try:
            self.store.get_image(library, image_id)
        except ApiError as exc:
            if exc.code == "image_not_found":
                return False
            raise
        return True


def new_image(ready: Ready, vector: np.ndarray) -> NewImage:
    extra = {"content_hash": ready.hash} if STORE_KNOWS_HASHES else {}
    return NewImage(vector, ready.id, ready.item.metadata, **extra)


def read_file(path: str, max_bytes: int) -> bytes:
    try:
        with open(Path(path), "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidInput(f"img: {path} cannot be read ({exc.strerror})", code="file_unreadable") from exc
    if len(data) > max_bytes:
        raise InvalidInput(f"img: the image is larger than {max_bytes} bytes", code="image_too_large")
    return data
