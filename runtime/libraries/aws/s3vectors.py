"""The AWS store: Amazon S3 Vectors (one vector bucket, two indexes per library) plus a DynamoDB registry.

- Index names: S3 Vectors allows only ``[a-z0-9-.]``, so each library gets ``lib-<32 hex>`` (random,
  so a deleted library's name can be reused at once); the registry maps names to indexes.
- Vectors: float32, cosine distance; score = (1 + cosine) / 2 = 1 - distance / 2.
- Metadata: the whole record (user metadata, create time, content hash) is one JSON string under the
  non-filterable key ``__imsim__``; the filterable part of the user's metadata (``metadata.filterable_part``)
  is also stored as filterable keys, and ``filter`` goes to QueryVectors exactly as the caller wrote it.
- Exact duplicates: a second index, ``lib-<32 hex>-files``, keyed by the image file's SHA-256 (a
  one-dimension vector, the image id as metadata), so a file is found by GetVectors on its hash before
  any model work. A library created before it existed gets it on its next add.
- Writes: adds, updates and deletes of one library hold its registry lease (see registry.py), so a
  dedup check and the insert it allows are one step across all functions; PutVectors and DeleteVectors
  send at most 500 vectors per call. S3 Vectors queries are approximate nearest neighbour (the local
  store is exact) and see a write as soon as it returns.
- Listing: ListVectors pages; the page token is the service's own, wrapped (see ``_page``).
- Full reads (count and delete by filter, ``order_by``): every ListVectors page, with metadata, at most
  ``SCAN_LIMIT`` images unless ``max_scan_images`` says; the filter is then evaluated by the local
  store's evaluator (``filter_eval``), not the service, so both stores count and delete the same images.

- Index mode: every index the store creates or opens is ENHANCED (``INDEX_MODE``), and the registry
  item records it, so each library pays one UpdateIndexMode call in its life.

Calls: s3vectors CreateIndex, UpdateIndexMode, DeleteIndex, PutVectors, GetVectors, DeleteVectors,
QueryVectors, ListVectors, and the registry's DynamoDB calls. Failed calls are read by ``faults.py``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from runtime.errors import BadRequest
from runtime.libraries.aws.faults import NOT_FOUND, S3_VECTORS, error_code, upstream
from runtime.libraries.aws.registry import (
    REGISTRY_KEY,
    Lease,
    Registry,
    library_of,
    method_name,
)
from runtime.libraries.filter_eval import readable
from runtime.libraries.filters import Filter
from runtime.libraries.metadata import RESERVED_METADATA_KEY, filterable_part
from runtime.libraries.store import (
    EXACT_SCORE,
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
from runtime.libraries.values import compact_json
from runtime.settings import Settings
from runtime.vectors import scores_of

# The service's limits, as its botocore model states them (tests/runtime/libraries/test_aws_contracts.py).
MAX_PER_WRITE = 500  # vectors per PutVectors / keys per DeleteVectors call
MAX_PER_GET = 100  # keys per GetVectors call
MAX_TOP_K = 100  # QueryVectors topK (the service's documented maximum; the model states only the minimum)
MAX_PER_LIST = 1000  # vectors per ListVectors page (fewer when a page would pass 1 MB)
SCAN_LIMIT = 10_000
"""Images a full read (count, delete by filter, ``order_by``) takes at most unless ``max_scan_images``
says: at least 10 ListVectors calls (more when metadata is large: a page stops at 1 MB)."""
INDEX_MODE = "ENHANCED"
"""Filters first, then the nearest (and ``$startsWith``): a filtered search finds ``top_k`` matches
whenever the library holds them. Indexes of buckets made before 2026-09-30 are CLASSIC (filter during
the search, which can return fewer) until UpdateIndexMode makes them ENHANCED."""
FILES_SUFFIX = "-files"
"""The exact-duplicate index of a library: its index name plus this."""
FILE_VECTOR = [1.0]  # the files index stores keys and ids; its one-dimension vectors mean nothing


@dataclass
class Held:
    """A library's registry item, and the lease when it is held for writing."""

    item: dict[str, Any]
    lease: Lease | None = None

    @property
    def index(self) -> str:
        name: str = self.item["index_name"]
        return name

    @property
    def files(self) -> str | None:
        return self.item.get("files_index")


class S3VectorsStore(LibraryStore[Held]):
    scan_limit_by_default = SCAN_LIMIT
    query_limit = MAX_TOP_K

    def __init__(self, settings: Settings, dimension: int, *, s3vectors: Any = None, dynamodb: Any = None):
        super().__init__(settings, dimension)
        if not settings.vector_bucket or not settings.registry_table:
            raise ValueError("the s3vectors store needs IMSIM_VECTOR_BUCKET and IMSIM_REGISTRY_TABLE")
        if settings.max_top_k > MAX_TOP_K:
            raise ValueError(f"the s3vectors store answers at most {MAX_TOP_K} matches: IMSIM_MAX_TOP_K is too high")
        if s3vectors is None or dynamodb is None:
            import boto3

            s3vectors = s3vectors or boto3.client("s3vectors")
            dynamodb = dynamodb or boto3.client("dynamodb")
        self.vectors = s3vectors
        self.bucket = settings.vector_bucket
        self.registry = Registry(
            dynamodb, settings.registry_table, lease_s=settings.library_lease_s, wait_s=settings.library_wait_s
        )

    # --- libraries ---------------------------------------------------------------------
    def _create_library(self, name: str, model_version: str, thumbnails: bool, threshold: float | None) -> Library:
        with self.registry.lease(REGISTRY_KEY):
            if self.registry.get(name) is not None:
                raise library_exists(name)
            check_library_quota(len(self.registry.libraries()), self.settings)
            index_name = f"lib-{uuid.uuid4().hex}"
            self._call(
                "CreateIndex",
                indexName=index_name,
                dataType="float32",
                dimension=self.dimension,
                distanceMetric="cosine",
                metadataConfiguration={"nonFilterableMetadataKeys": [RESERVED_METADATA_KEY]},
            )
            self._call("UpdateIndexMode", indexName=index_name, indexMode=INDEX_MODE)
            files_index = self._create_files_index(index_name)
            item = {
                "name": name,
                "index_name": index_name,
                "index_mode": INDEX_MODE,
                "files_index": files_index,
                "model_version": model_version,
                "create_time": time.time(),
                "image_count": 0,
                "thumbnails": int(thumbnails),
                **({"threshold": threshold} if threshold is not None else {}),
            }
            if not self.registry.put_new(item):
                self._call("DeleteIndex", indexName=index_name)
                self._call("DeleteIndex", indexName=files_index)
                raise library_exists(name)
        return library_of(item)

    def _list_libraries(self) -> list[Library]:
        return [library_of(item) for item in self.registry.libraries()]

    def _delete_library(self, name: str) -> None:
        with self.registry.lease(name) as lease:
            # Index first: should DeleteIndex fail, the library stays listed and a retry finishes the job.
            self._call("DeleteIndex", indexName=lease.item["index_name"], missing_ok=True)
            if lease.item.get("files_index"):
                self._call("DeleteIndex", indexName=lease.item["files_index"], missing_ok=True)
            self.registry.delete_held(lease)

    def _create_files_index(self, index_name: str) -> str:
        files_index = index_name + FILES_SUFFIX
        self._call("CreateIndex", indexName=files_index, dataType="float32", dimension=1, distanceMetric="cosine")
        return files_index

    # --- primitives ----------------------------------------------------------------------
    @contextmanager
    def _reading(self, name: str) -> Iterator[tuple[Library, Held]]:
        item = self._item(name)
        yield library_of(item), Held(item)

    @contextmanager
    def _writing(self, name: str) -> Iterator[tuple[Library, Held]]:
        with self.registry.lease(name) as lease:
            lease.item = self._opened(lease.item)
            yield library_of(lease.item), Held(lease.item, lease)

    def _existing_ids(self, held: Held, ids: list[str]) -> list[str]:
        return [found["key"] for found in self._get(held.index, ids, with_metadata=False)]

    def _find_hashes(self, held: Held, hashes: list[str]) -> dict[str, Match]:
        if not held.files:
            return {}
        owners = {found["key"]: found["metadata"]["id"] for found in self._get(held.files, hashes, with_metadata=True)}
        images = {
            found["key"]: record_of(found) for found in self._get(held.index, list(owners.values()), with_metadata=True)
        }
        return {
            content_hash: Match(image_id, EXACT_SCORE, images[image_id]["metadata"])
            for content_hash, image_id in owners.items()
            if image_id in images  # an add that stopped between its two writes left a stale file key
        }

    def _insert(self, held: Held, images: list[NewImage]) -> None:
        assert held.lease is not None
        now = time.time()
        keeps = library_of(held.item).thumbnails
        self._put(
            held.index,
            [
                image_vector(
                    image.id or "",
                    image.vector,
                    image.metadata,
                    now,
                    image.content_hash,
                    encoded(image.thumbnail) if keeps else None,
                    image.perceptual_hash,
                    image.size,
                )
                for image in images
            ],
        )
        held.lease.count_delta += len(images)
        files = [image for image in images if image.content_hash]
        if files:
            files_index = held.files or self._add_files_index(held)
            self._put(files_index, [file_vector(image) for image in files])

    def _add_files_index(self, held: Held) -> str:
        """A library created before exact-duplicate screening gets its files index now (lease held)."""
        assert held.lease is not None
        files_index = self._create_files_index(held.index)
        self.registry.set_held(held.lease, "files_index", files_index)
        return files_index

    def _image(self, held: Held, image_id: str) -> Image | None:
        found = self._get(held.index, [image_id], with_metadata=True)
        if not found:
            return None
        record = record_of(found[0])
        return Image(image_id, record["metadata"], record["create_time"])

    def _thumbnail(self, held: Held, image_id: str) -> bytes | None:
        found = self._get(held.index, [image_id], with_metadata=True)
        thumbnail = record_of(found[0]).get("thumbnail") if found else None
        return base64.b64decode(thumbnail) if thumbnail else None

    def _vector(self, held: Held, image_id: str) -> np.ndarray | None:
        found = self._get(held.index, [image_id], with_metadata=False, with_data=True)
        return np.asarray(found[0]["data"]["float32"], dtype=np.float32) if found else None

    def _vectors(self, held: Held, image_ids: list[str]) -> dict[str, np.ndarray]:
        found = self._get(held.index, image_ids, with_metadata=False, with_data=True)
        return {vector["key"]: np.asarray(vector["data"]["float32"], dtype=np.float32) for vector in found}

    def _remove(self, held: Held, image_id: str) -> None:
        assert held.lease is not None
        found = self._get(held.index, [image_id], with_metadata=True)
        content_hash = record_of(found[0]).get("content_hash") if found else None
        self._call("DeleteVectors", indexName=held.index, keys=[image_id])
        held.lease.count_delta -= 1
        if content_hash and held.files:
            self._call("DeleteVectors", indexName=held.files, keys=[content_hash])

    def _replace_metadata(self, held: Held, image_id: str, metadata: dict[str, Any]) -> Image:
        """PutVectors overwrites a key whole: the same vector, create time and hash, the new metadata."""
        found = self._get(held.index, [image_id], with_metadata=True, with_data=True)[0]
        record = record_of(found)
        vector = np.asarray(found["data"]["float32"], dtype=np.float32)
        self._put(
            held.index,
            [
                image_vector(
                    image_id,
                    vector,
                    metadata,
                    record["create_time"],
                    record.get("content_hash"),
                    record.get("thumbnail"),
                    record.get("perceptual_hash"),
                    record.get("size"),
                )
            ],
        )
        return Image(image_id, metadata, record["create_time"])

    def _query(
        self,
        held: Held,
        vector: np.ndarray,
        top_k: int,
        min_score: float | None,
        conditions: Filter,
        exclude: str | None,
    ) -> SearchResult:
        asked = min(top_k + (exclude is not None), MAX_TOP_K)
        matches = self._query_index(held.index, vector, top_k=asked, conditions=conditions)
        kept = [m for m in matches if m.id != exclude and (min_score is None or m.score >= min_score)]
        return SearchResult(kept[:top_k])

    def _page(self, held: Held, limit: int, token: dict[str, Any] | None) -> ImagePage:
        """One ListVectors call of ``limit`` vectors; the token carries the service's ``nextToken``.

        ListVectors is strongly consistent, and its token is the service's position in the index: how
        it treats writes between pages is the service's (S3 Vectors does not document its order)."""
        arguments: dict[str, Any] = {"indexName": held.index, "maxResults": limit, "returnMetadata": True}
        if token is not None:
            if not isinstance(token.get("aws"), str):
                raise BadRequest("next_token: not a token this API gave", code="invalid_next_token")
            arguments["nextToken"] = token["aws"]
        answer = self._call("ListVectors", **arguments)
        images = []
        for found in answer.get("vectors", []):
            record = record_of(found)
            images.append(Image(found["key"], record["metadata"], record["create_time"]))
        following = answer.get("nextToken")
        return ImagePage(images, encode_token({"aws": following}) if following else None)

    def _every_image(self, held: Held) -> list[Stored]:
        """ListVectors' pages, with metadata: a count and a delete by filter evaluate the filter on it with
        the local store's evaluator (QueryVectors needs a vector and answers at most 100), so both stores
        answer the same."""
        arguments: dict[str, Any] = {"indexName": held.index, "maxResults": MAX_PER_LIST, "returnMetadata": True}
        images: list[Stored] = []
        for page in self._pages("ListVectors", arguments):
            for found in page.get("vectors", []):
                record = record_of(found)
                image = Image(found["key"], record["metadata"], record["create_time"])
                size = record.get("size")
                images.append(
                    Stored(
                        image,
                        readable(filterable_part(image.metadata)),
                        record.get("content_hash"),
                        record.get("perceptual_hash"),
                        (int(size[0]), int(size[1])) if size else None,
                    )
                )
        return images

    def _remove_many(self, held: Held, images: list[Stored]) -> None:
        """DeleteVectors, 500 keys a call: the images first, then their file keys (a stale file key is
        harmless: ``_find_hashes`` checks its image is there)."""
        assert held.lease is not None
        for batch in chunks([stored.image.id for stored in images], MAX_PER_WRITE):
            self._call("DeleteVectors", indexName=held.index, keys=batch)
            held.lease.count_delta -= len(batch)
        hashes = [stored.content_hash for stored in images if stored.content_hash]
        if held.files:
            for batch in chunks(hashes, MAX_PER_WRITE):
                self._call("DeleteVectors", indexName=held.files, keys=batch)

    def _stored_page(self, held: Held, limit: int, token: dict[str, Any] | None) -> StoredPage:
        """One ListVectors call with the vectors' data (``returnData``), as ``_page``."""
        arguments: dict[str, Any] = {
            "indexName": held.index,
            "maxResults": limit,
            "returnMetadata": True,
            "returnData": True,
        }
        if token is not None:
            if not isinstance(token.get("aws"), str):
                raise BadRequest("next_token: not a token this API gave", code="invalid_next_token")
            arguments["nextToken"] = token["aws"]
        answer = self._call("ListVectors", **arguments)
        images = [stored_of(found) for found in answer.get("vectors", [])]
        following = answer.get("nextToken")
        return StoredPage(images, encode_token({"aws": following}) if following else None)

    # --- S3 Vectors calls ----------------------------------------------------------------
    def _query_index(
        self, index: str, vector: np.ndarray, *, top_k: int, conditions: Filter | None = None
    ) -> list[Match]:
        """The ``top_k`` nearest, best first; follows ``nextToken`` should the service page them.
        The filter goes to the service verbatim: its semantics are S3 Vectors' own."""
        arguments: dict[str, Any] = {
            "indexName": index,
            "topK": top_k,
            "queryVector": {"float32": vector.astype(np.float32).tolist()},
            "returnDistance": True,
            "returnMetadata": True,
        }
        if conditions:
            arguments["filter"] = conditions
        matches: list[Match] = []
        for page in self._pages("QueryVectors", arguments):
            for found in page.get("vectors", []):
                record = record_of(found)
                score = float(scores_of(1.0 - float(found["distance"])))  # cosine distance = 1 - cosine
                matches.append(Match(found["key"], score, record["metadata"], record.get("perceptual_hash")))
            if len(matches) >= top_k:
                break
        return sorted(matches, key=lambda match: -match.score)[:top_k]

    def _put(self, index: str, vectors: list[dict[str, Any]]) -> None:
        for batch in chunks(vectors, MAX_PER_WRITE):
            self._call("PutVectors", indexName=index, vectors=batch)

    def _get(
        self, index: str, keys: list[str], with_metadata: bool, *, with_data: bool = False
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for batch in chunks(keys, MAX_PER_GET):
            answer = self._call(
                "GetVectors", indexName=index, keys=batch, returnMetadata=with_metadata, returnData=with_data
            )
            found.extend(answer.get("vectors", []))
        return found

    def _item(self, name: str) -> dict[str, Any]:
        item = self.registry.get(name)
        if item is None:
            raise library_not_found(name)
        return self._opened(item)

    def _opened(self, item: dict[str, Any]) -> dict[str, Any]:
        """A library made before the store set its index's mode is made ENHANCED when first opened."""
        if item.get("index_mode") != INDEX_MODE:
            self._call("UpdateIndexMode", indexName=item["index_name"], indexMode=INDEX_MODE)
            self.registry.mark(item["name"], "index_mode", INDEX_MODE)
            item = {**item, "index_mode": INDEX_MODE}
        return item

    def _pages(self, operation: str, arguments: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            answer = self._call(operation, **arguments)
            yield answer
            token = answer.get("nextToken")
            if not token:
                return
            arguments = {**arguments, "nextToken": token}

    def _call(self, operation: str, *, missing_ok: bool = False, **arguments: Any) -> dict[str, Any]:
        """One S3 Vectors call; with ``missing_ok``, a NotFoundException answers ``{}`` (already gone)."""
        method = getattr(self.vectors, method_name(operation))
        try:
            answer: dict[str, Any] = method(vectorBucketName=self.bucket, **arguments)
            return answer
        except ClientError as exc:
            if missing_ok and error_code(exc) == NOT_FOUND:
                return {}
            raise upstream(S3_VECTORS, operation, exc) from exc
        except BotoCoreError as exc:
            raise upstream(S3_VECTORS, operation, exc) from exc


def record_of(vector: dict[str, Any]) -> dict[str, Any]:
    """The record the store wrote under ``__imsim__``: ``{"metadata", "create_time"}``."""
    raw = (vector.get("metadata") or {}).get(RESERVED_METADATA_KEY)
    return json.loads(raw) if raw else {"metadata": {}, "create_time": 0.0}


RECORD_FIELDS = ("metadata", "create_time", "content_hash", "thumbnail")
"""The record's keys ``stored_of`` reads itself; any other is the image's ``extra``."""


def stored_of(vector: dict[str, Any]) -> StoredImage:
    """A listed vector (with its data) as the stored image."""
    record = record_of(vector)
    thumbnail = record.get("thumbnail")
    extra = {name: value for name, value in record.items() if name not in RECORD_FIELDS and value is not None}
    return StoredImage(
        vector["key"],
        record["metadata"],
        record["create_time"],
        np.asarray(vector["data"]["float32"], dtype=np.float32),
        record.get("content_hash"),
        base64.b64decode(thumbnail) if thumbnail else None,
        extra,
    )


def image_vector(
    image_id: str,
    vector: np.ndarray,
    metadata: dict[str, Any],
    create_time: float,
    content_hash: str | None,
    thumbnail: str | None = None,
    perceptual_hash: str | None = None,
    size: Sequence[int] | None = None,
) -> dict[str, Any]:
    """``thumbnail``: base64 WebP, in the record (non-filterable metadata: S3 Vectors allows 40 KB in all);
    ``perceptual_hash`` and ``size`` (width, height) when the add knew them."""
    record: dict[str, Any] = {"metadata": metadata, "create_time": create_time, "content_hash": content_hash}
    if thumbnail:
        record["thumbnail"] = thumbnail
    if perceptual_hash:
        record["perceptual_hash"] = perceptual_hash
    if size:
        record["size"] = list(size)
    return {
        "key": image_id,
        "data": {"float32": vector.astype(np.float32).tolist()},
        "metadata": {**filterable_part(metadata), RESERVED_METADATA_KEY: compact_json(record)},
    }


def encoded(thumbnail: bytes | None) -> str | None:
    return base64.b64encode(thumbnail).decode("ascii") if thumbnail else None


def file_vector(image: NewImage) -> dict[str, Any]:
    return {"key": image.content_hash, "data": {"float32": FILE_VECTOR}, "metadata": {"id": image.id}}


T = TypeVar("T")


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
