"""The AWS store: Amazon S3 Vectors (one vector bucket, one index per library) plus a DynamoDB registry.

- Index names: S3 Vectors allows only ``[a-z0-9-.]``, so each library gets ``lib-<32 hex>`` (random,
  so a deleted library's name can be reused at once); the registry maps names to indexes.
- Vectors: float32, cosine distance; score = (1 + cosine) / 2 = 1 - distance / 2.
- Metadata: the whole record (user metadata and create time) is one JSON string under the
  non-filterable key ``__imsim__``; the top-level string / number / boolean values of the user's
  metadata are also stored as filterable keys, which ``filter`` matches with ``$eq``.
- Writes: adds and deletes of one library hold its registry lease (see registry.py), so a dedup
  check and the insert it allows are one step across all functions; PutVectors and DeleteVectors
  send at most 500 vectors per call. S3 Vectors queries are approximate nearest neighbour (the
  local store is exact) and see a write as soon as it returns.

Calls: s3vectors CreateIndex, DeleteIndex, PutVectors, GetVectors, DeleteVectors, QueryVectors, and
the registry's DynamoDB calls.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from runtime.libraries.aws.registry import (
    REGISTRY_KEY,
    Registry,
    library_of,
    method_name,
    upstream,
)
from runtime.libraries.store import (
    RESERVED_METADATA_KEY,
    AddResult,
    Image,
    Library,
    LibraryStore,
    Match,
    NewImage,
    Scalar,
    check_image_quota,
    check_library_quota,
    check_model_version,
    compact_json,
    filterable_part,
    image_exists,
    image_not_found,
    library_exists,
    library_not_found,
    screen_duplicates,
)
from runtime.settings import Settings
from runtime.vectors import scores_of

MAX_PER_WRITE = 500  # vectors per PutVectors / DeleteVectors call
MAX_PER_GET = 100  # keys per GetVectors call
MAX_TOP_K = 100  # QueryVectors topK


class S3VectorsStore(LibraryStore):
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
    def _create_library(self, name: str, model_version: str) -> Library:
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
            item = {
                "name": name,
                "index_name": index_name,
                "model_version": model_version,
                "create_time": time.time(),
                "image_count": 0,
            }
            if not self.registry.put_new(item):
                self._call("DeleteIndex", indexName=index_name)
                raise library_exists(name)
        return library_of(item)

    def _list_libraries(self) -> list[Library]:
        return [library_of(item) for item in self.registry.libraries()]

    def _get_library(self, name: str) -> Library:
        return library_of(self._item(name))

    def _delete_library(self, name: str) -> None:
        with self.registry.lease(name) as lease:
            # Index first: should DeleteIndex fail, the library stays listed and a retry finishes the job.
            self._call("DeleteIndex", indexName=lease.item["index_name"], missing_ok=True)
            self.registry.delete_held(lease)

    # --- images ------------------------------------------------------------------------
    def _add_images(
        self, name: str, images: list[NewImage], model_version: str, dedup_threshold: float | None
    ) -> list[AddResult]:
        with self.registry.lease(name) as lease:
            library, index = library_of(lease.item), lease.item["index_name"]
            check_model_version(library, model_version)
            existing = self._get(index, [image.id or "" for image in images], with_metadata=False)
            if existing:
                raise image_exists(name, existing[0]["key"])
            results, accepted = screen_duplicates(images, dedup_threshold, lambda vector: self._nearest(index, vector))
            if accepted:
                check_image_quota(name, library.image_count, len(accepted), self.settings)
                self._put(index, accepted)
                lease.count_delta = len(accepted)
        return results

    def _get_image(self, name: str, image_id: str) -> Image:
        found = self._get(self._item(name)["index_name"], [image_id], with_metadata=True)
        if not found:
            raise image_not_found(name, image_id)
        record = record_of(found[0])
        return Image(image_id, record["metadata"], record["create_time"])

    def _delete_image(self, name: str, image_id: str) -> None:
        with self.registry.lease(name) as lease:
            index = lease.item["index_name"]
            if not self._get(index, [image_id], with_metadata=False):
                raise image_not_found(name, image_id)
            self._call("DeleteVectors", indexName=index, keys=[image_id])
            lease.count_delta = -1

    def _search(
        self,
        name: str,
        vector: np.ndarray,
        model_version: str,
        top_k: int,
        min_score: float | None,
        filter: dict[str, Scalar],
    ) -> list[Match]:
        item = self._item(name)
        check_model_version(library_of(item), model_version)
        matches = self._query(item["index_name"], vector, top_k=top_k, conditions=filter)
        return [match for match in matches if min_score is None or match.score >= min_score]

    # --- S3 Vectors calls ----------------------------------------------------------------
    def _query(
        self, index: str, vector: np.ndarray, *, top_k: int, conditions: dict[str, Scalar] | None = None
    ) -> list[Match]:
        """The ``top_k`` nearest, best first; follows ``nextToken`` should the service page them."""
        arguments: dict[str, Any] = {
            "indexName": index,
            "topK": top_k,
            "queryVector": {"float32": vector.astype(np.float32).tolist()},
            "returnDistance": True,
            "returnMetadata": True,
        }
        if conditions:
            arguments["filter"] = metadata_filter(conditions)
        matches: list[Match] = []
        for page in self._pages("QueryVectors", arguments):
            for found in page.get("vectors", []):
                record = record_of(found)
                score = float(scores_of(1.0 - float(found["distance"])))  # cosine distance = 1 - cosine
                matches.append(Match(found["key"], score, record["metadata"]))
            if len(matches) >= top_k:
                break
        return sorted(matches, key=lambda match: -match.score)[:top_k]

    def _nearest(self, index: str, vector: np.ndarray) -> Match | None:
        found = self._query(index, vector, top_k=1)
        return found[0] if found else None

    def _put(self, index: str, images: list[NewImage]) -> None:
        now = time.time()
        vectors = [
            {
                "key": image.id,
                "data": {"float32": image.vector.astype(np.float32).tolist()},
                "metadata": {
                    **filterable_part(image.metadata),
                    RESERVED_METADATA_KEY: compact_json({"metadata": image.metadata, "create_time": now}),
                },
            }
            for image in images
        ]
        for batch in chunks(vectors, MAX_PER_WRITE):
            self._call("PutVectors", indexName=index, vectors=batch)

    def _get(self, index: str, keys: list[str], *, with_metadata: bool) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for batch in chunks(keys, MAX_PER_GET):
            answer = self._call("GetVectors", indexName=index, keys=batch, returnMetadata=with_metadata)
            found.extend(answer.get("vectors", []))
        return found

    def _item(self, name: str) -> dict[str, Any]:
        item = self.registry.get(name)
        if item is None:
            raise library_not_found(name)
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
            return method(vectorBucketName=self.bucket, **arguments)
        except ClientError as exc:
            if missing_ok and exc.response.get("Error", {}).get("Code") == "NotFoundException":
                return {}
            raise upstream("S3 Vectors", operation, exc) from exc
        except BotoCoreError as exc:
            raise upstream("S3 Vectors", operation, exc) from exc


def record_of(vector: dict[str, Any]) -> dict[str, Any]:
    """The record the store wrote under ``__imsim__``: ``{"metadata", "create_time"}``."""
    raw = (vector.get("metadata") or {}).get(RESERVED_METADATA_KEY)
    return json.loads(raw) if raw else {"metadata": {}, "create_time": 0.0}


def metadata_filter(conditions: dict[str, Scalar]) -> dict[str, Any]:
    clauses = [{key: {"$eq": value}} for key, value in conditions.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
