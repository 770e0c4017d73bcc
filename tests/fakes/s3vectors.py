"""S3 Vectors where moto 5.2.5 falls short: ``QueryVectors``, ``ListVectors`` paging, index modes and the
service's stricter checks, for a real botocore client whose requests moto serves in process.

``FakeS3Vectors`` hooks a client's events (``before-parameter-build.s3vectors`` to record every call,
``before-call.s3vectors.<Operation>`` to answer or refuse one) and reads and writes moto's own index data,
so a vector put through moto is the vector the fake searches. What it repeats is our reading of AWS, from
two sources:

- botocore's service model, ``botocore/data/s3vectors/2025-07-15/service-2.json.gz`` in the venv (botocore
  1.44): the operations, their parameters and limits (``TopK`` min 1, ``ListVectorsMaxResults`` 1 to 1,000,
  500 by default, ``IndexMode`` CLASSIC or ENHANCED, ``UpdateIndexMode`` may set ENHANCED on any index,
  ``queryMode`` ENHANCED filters before the search), and the error shapes (``ValidationException`` 400,
  ``NotFoundException`` 404).
- the S3 User Guide's pages that service-2.json links to: "Metadata filtering"
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-metadata-filtering.html: the filter
  operators, implicit ``$eq``, ``$eq`` against a stored list holds when any element is equal, ``$startsWith``
  on ENHANCED indexes only) and "Limitations and restrictions" (bucket and index name patterns, topK at most
  100, metadata at most 40 KB and 50 keys per vector of which at most 2 KB filterable, no zero or NaN vector
  in a cosine index).

Where those say nothing, the fake chooses, and says so: ``$ne`` and ``$nin`` hold where the key is missing
(the MongoDB reading of the same operators), a ``ListVectors`` page token is the last key listed (the
service's order is not published), answers are exact where the service is approximate, and ``page_size``
pages ``QueryVectors`` answers to prove a caller follows ``nextToken``. Indexes start CLASSIC, as in a
vector bucket made before 2026-09-30, until ``UpdateIndexMode``.

The filter evaluator, ``passes``, is written here from the documentation and shares nothing with the
store's own (``runtime/libraries/filter_eval.py``), so the stores tests compare two independent readings.
tests/fakes/s3vectors_filter_examples.py holds the documentation's own filter examples, which both must answer.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
from botocore.awsrequest import AWSResponse

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9-.]{1,61}[a-z0-9]$")


class FakeS3Vectors:
    """QueryVectors (and stricter PutVectors checks) for a botocore client served by moto."""

    def __init__(self, client, page_size: int | None = None):
        self.page_size = page_size
        self.calls: list[tuple[str, dict]] = []
        self.non_filterable: dict[str, set[str]] = {}
        self.modes: dict[str, str] = {}
        """Index -> mode: CLASSIC until UpdateIndexMode, as in a bucket made before 2026-09-30."""
        events = client.meta.events
        events.register("before-parameter-build.s3vectors", self._record)
        events.register("before-call.s3vectors.CreateIndex", self._create_index)
        events.register("before-call.s3vectors.PutVectors", self._put_vectors)
        events.register("before-call.s3vectors.QueryVectors", self._query_vectors)
        events.register("before-call.s3vectors.ListVectors", self._list_vectors)
        events.register("before-call.s3vectors.UpdateIndexMode", self._update_index_mode)

    def operations(self, name: str) -> list[dict]:
        return [params for operation, params in self.calls if operation == name]

    def _record(self, params, model, **_):
        self.calls.append((model.name, dict(params)))

    def _create_index(self, params, **_):
        body = json.loads(params["body"])
        keys = body.get("metadataConfiguration", {}).get("nonFilterableMetadataKeys", [])
        self.non_filterable[body["indexName"]] = set(keys)  # and moto creates the index

    def _put_vectors(self, params, **_):
        body = json.loads(params["body"])
        index = self._index(body)
        if isinstance(index, tuple):
            return index
        for vector in body["vectors"]:
            problem = vector_problem(vector["data"]["float32"], index.dimension) or self._metadata_problem(
                body["indexName"], vector.get("metadata", {})
            )
            if problem:
                return error(f"Invalid record for key '{vector['key']}': {problem}")
        return None  # moto stores them

    def _update_index_mode(self, params, **_):
        body = json.loads(params["body"])
        index = self._index(body)
        if isinstance(index, tuple):
            return index
        if body.get("indexMode") not in ("CLASSIC", "ENHANCED"):
            return error("indexMode must be CLASSIC or ENHANCED")
        self.modes[body["indexName"]] = body["indexMode"]
        return AWSResponse("https://fake", 200, {}, None), {}

    def _metadata_problem(self, index_name: str, metadata: dict) -> str | None:
        filterable = {k: v for k, v in metadata.items() if k not in self.non_filterable.get(index_name, set())}
        if len(metadata) > 50:
            return "more than 50 metadata keys"
        if len(json.dumps(metadata).encode()) > 40 * 1024:
            return "metadata larger than 40 KB"
        if len(json.dumps(filterable).encode()) > 2048:
            return "filterable metadata larger than 2 KB"
        return None

    def _query_vectors(self, params, **_):
        body = json.loads(params["body"])
        index = self._index(body)
        if isinstance(index, tuple):
            return index
        if not 1 <= body["topK"] <= 100:
            return error("topK must be between 1 and 100")
        query = body["queryVector"]["float32"]
        problem = vector_problem(query, index.dimension)
        if problem:
            return error(f"queryVector: {problem}")
        if "$startsWith" in json.dumps(body.get("filter")) and self.modes.get(body["indexName"]) != "ENHANCED":
            return error("$startsWith is supported only for indexes in ENHANCED mode")
        try:
            passes({}, body.get("filter"))  # checks the operators even when the index is empty
            candidates = [v for v in index.vectors.values() if passes(v.metadata or {}, body.get("filter"))]
        except ValueError as exc:
            return error(f"filter: {exc}")
        q = np.asarray(query, dtype=np.float64)
        scored = []
        for vector in candidates:
            data = np.asarray(vector.data["float32"], dtype=np.float64)
            distance = 1.0 - float(q @ data) / (np.linalg.norm(q) * np.linalg.norm(data))
            scored.append((distance, vector))
        scored.sort(key=lambda pair: pair[0])
        top = scored[: body["topK"]]
        start = int(body.get("nextToken") or 0)
        end = start + (self.page_size or len(top))
        answer = {"distanceMetric": "cosine", "vectors": []}
        for distance, vector in top[start:end]:
            found = {"key": vector.key}
            if body.get("returnDistance"):
                found["distance"] = distance
            if body.get("returnMetadata"):
                found["metadata"] = vector.metadata
            answer["vectors"].append(found)
        if end < len(top):
            answer["nextToken"] = str(end)
        return AWSResponse("https://fake", 200, {}, None), answer

    def _list_vectors(self, params, **_):
        """moto lists every vector in one answer; the service pages (maxResults up to 1,000, nextToken).
        This fake pages in key order with the last key as its token: a model of a service position, not
        a copy of the service's unpublished order."""
        body = json.loads(params["body"])
        index = self._index(body)
        if isinstance(index, tuple):
            return index
        limit = body.get("maxResults", 500)
        if not 1 <= limit <= 1000:
            return error("maxResults must be between 1 and 1000")
        keys = sorted(key for key in index.vectors if key > body.get("nextToken", ""))
        page = keys[:limit]
        answer = {"vectors": []}
        for key in page:
            found = {"key": key}
            if body.get("returnMetadata"):
                found["metadata"] = index.vectors[key].metadata
            if body.get("returnData"):
                found["data"] = index.vectors[key].data
            answer["vectors"].append(found)
        if len(keys) > limit:
            answer["nextToken"] = page[-1]
        return AWSResponse("https://fake", 200, {}, None), answer

    def _index(self, body: dict):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3vectors.exceptions import IndexNotFound
        from moto.s3vectors.models import s3vectors_backends

        if not BUCKET_NAME.match(body.get("vectorBucketName", "")) or not INDEX_NAME.match(body.get("indexName", "")):
            return error("invalid vector bucket or index name")
        backend = s3vectors_backends[DEFAULT_ACCOUNT_ID]["aws"]  # keyed by partition
        try:
            return backend.get_index(body["vectorBucketName"], body["indexName"], None)
        except IndexNotFound:
            return error("The specified index could not be found", code="NotFoundException", status=404)


def vector_problem(values: list[float], dimension: int) -> str | None:
    if len(values) != dimension:
        return f"vector must have length {dimension}, but has length {len(values)}"
    if not all(isinstance(value, (int, float)) and math.isfinite(value) for value in values):  # NaN arrives as a string
        return "vector contains NaN or infinite values"
    if not any(values):
        return "a zero vector has no cosine distance"
    return None


def passes(metadata: dict, condition: dict | None) -> bool:
    """The S3 Vectors filter language as its documentation states it, written for this fake only (the
    store's evaluator lives in runtime/libraries/filter_eval.py and is not used here). Unknown operators and
    operands of the wrong type are a ValidationException, as the service answers."""
    if not condition:
        return True
    return all(_holds(metadata, key, value) for key, value in condition.items())


def _holds(metadata: dict, key: str, value) -> bool:
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"{key} takes a non-empty array of filters")
        results = [passes(metadata, clause) for clause in value]
        return all(results) if key == "$and" else any(results)
    if key.startswith("$"):
        raise ValueError(f"unsupported operator {key}")
    operators = value if isinstance(value, dict) else {"$eq": value}
    return all(_compare(metadata, key, op, operand) for op, operand in operators.items())


def _primitive(value) -> bool:
    return isinstance(value, (str, int, float, bool))


def _compare(metadata: dict, key: str, op: str, operand) -> bool:
    present = key in metadata
    stored = metadata.get(key)
    values = stored if isinstance(stored, list) else [stored]
    if op in ("$eq", "$ne"):
        if not _primitive(operand):
            raise ValueError(f"{op} takes a string, number or boolean")
        equal = present and any(_json_equal(item, operand) for item in values)
        return equal if op == "$eq" else not equal
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise ValueError(f"{op} takes a number")
        numbers = [item for item in values if isinstance(item, (int, float)) and not isinstance(item, bool)]
        check = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}[op]
        return present and any(check(float(item), float(operand)) for item in numbers)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand or not all(_primitive(item) for item in operand):
            raise ValueError(f"{op} takes a non-empty array of primitives")
        found = present and any(_json_equal(item, choice) for item in values for choice in operand)
        return found if op == "$in" else not found
    if op == "$exists":
        if not isinstance(operand, bool):
            raise ValueError("$exists takes a boolean")
        return present == operand
    if op == "$startsWith":
        if not isinstance(operand, str):
            raise ValueError("$startsWith takes a string")
        return present and any(isinstance(item, str) and item.startswith(operand) for item in values)
    raise ValueError(f"unsupported operator {op}")


def _json_equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


def error(message: str, code: str = "ValidationException", status: int = 400):
    parsed = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return AWSResponse("https://fake", status, {}, None), parsed
