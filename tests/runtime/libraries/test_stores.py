"""One behaviour suite for both library stores: the embedded store, and the S3 Vectors store on moto.

The S3 Vectors store runs against moto (S3 Vectors and DynamoDB, in process, through real botocore
clients: every request passes botocore's parameter validation and serialisation). moto 5.2.5 does not
implement ``QueryVectors`` nor page ``ListVectors``, so ``FakeS3Vectors`` (tests/fakes/s3vectors.py)
answers those from moto's own index data (its filter evaluator, ``passes``, is written there from the S3
Vectors documentation and shares nothing with the store's own in runtime/libraries/filter_eval.py),
through botocore's ``before-call.s3vectors.QueryVectors`` hook, with the validation the real service
applies (bucket and index name patterns, vector dimension, no zero or NaN query vector, topK at most 100,
filter operators). It is exact where the real service is approximate, and it can page its answers to
prove the store follows ``nextToken``. It also adds the PutVectors checks moto skips (no zero or NaN
vectors in a cosine index, metadata at most 40 KB and 50 keys, filterable metadata at most 2 KB) and
records every call, so the tests can check batch sizes and paging.

moto's backends are not thread-safe while the real services apply each request atomically (a DynamoDB
conditional write is all or nothing), so the fixture serialises moto's request handling.

The vectors here are synthetic unit vectors: this suite tests storage and search, not the model.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import boto3
import numpy as np
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from runtime.errors import (
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    Overloaded,
    QuotaExceeded,
)
from runtime.libraries import open_store
from runtime.libraries.aws.s3vectors import S3VectorsStore
from runtime.libraries.hashing import content_hash
from runtime.libraries.local import LocalStore
from runtime.libraries.names import is_library_name
from runtime.libraries.store import Added, Dedup, Duplicate, NewImage, Refused
from runtime.settings import Settings
from tests.fakes.s3vectors import INDEX_NAME, FakeS3Vectors, error

DIM = 16
VERSION = "test-model/v1"
BUCKET = "imsim-test-vectors"
TABLE = "imsim-test-registry"
REGION = "us-east-1"


# --- vectors -----------------------------------------------------------------------------


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def at_cosine(vector: np.ndarray, cosine: float, seed: int = 99) -> np.ndarray:
    """A unit vector whose cosine with ``vector`` is ``cosine``."""
    other = unit(seed)
    other -= float(other @ vector) * vector
    other /= np.linalg.norm(other)
    return (cosine * vector + math.sqrt(1 - cosine**2) * other).astype(np.float32)


# --- fixtures ----------------------------------------------------------------------------


CLIENTS = boto3.session.Session()  # after moto's import: its botocore handlers are in every new session
"""Makes each test's clients. mock_aws() replaces boto3's default session on every start, so clients
made from it would load their service models again: 0.2 s a test. This session's loader keeps them."""


@pytest.fixture
def aws(monkeypatch):
    """moto's S3 Vectors and DynamoDB, a vector bucket, a registry table and real botocore clients."""

    one_at_a_time = threading.Lock()
    handle = BotocoreStubber.process_request

    def atomic(self, request):
        with one_at_a_time:
            return handle(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", atomic)
    with mock_aws():
        vectors = CLIENTS.client("s3vectors", region_name=REGION)
        dynamodb = CLIENTS.client("dynamodb", region_name=REGION)
        vectors.create_vector_bucket(vectorBucketName=BUCKET)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield vectors, dynamodb, FakeS3Vectors(vectors)


@pytest.fixture(params=["local", "s3vectors"])
def make_store(request, tmp_path):
    """Builds stores of one kind (the parameter) with setting overrides; closes them afterwards."""
    stores = []
    clients = request.getfixturevalue("aws") if request.param == "s3vectors" else None

    def make(**overrides):
        settings = Settings(
            store=request.param, data_dir=str(tmp_path / "data"), vector_bucket=BUCKET, registry_table=TABLE
        ).replace(**overrides)
        if clients:
            store = S3VectorsStore(settings, DIM, s3vectors=clients[0], dynamodb=clients[1])
        else:
            store = LocalStore(settings, DIM)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()


def add(store, name, vector, **kwargs):
    return store.add_image(name, vector, model_version=VERSION, **kwargs)


def search(store, name, vector, **kwargs):
    """The matches of a search (its answer is complete: these libraries are far below the candidate bound)."""
    found = store.search(name, vector, model_version=VERSION, **kwargs)
    assert not found.partial
    return found.matches


# --- the shared suite --------------------------------------------------------------------


def test_create_get_list_delete_library(store):
    created = store.create_library("商品_2024", VERSION)
    assert (created.name, created.model_version, created.image_count) == ("商品_2024", VERSION, 0)
    assert store.get_library("商品_2024") == created
    store.create_library("shoes", VERSION)
    assert [library.name for library in store.list_libraries()] == ["商品_2024", "shoes"]
    store.delete_library("商品_2024")
    with pytest.raises(NotFound) as missing:
        store.get_library("商品_2024")
    assert missing.value.code == "library_not_found"
    assert [library.name for library in store.list_libraries()] == ["shoes"]


def test_duplicate_and_unknown_libraries(store):
    store.create_library("cats", VERSION)
    with pytest.raises(Conflict) as taken:
        store.create_library("cats", VERSION)
    assert taken.value.code == "library_exists"
    for call in (store.get_library, store.delete_library):
        with pytest.raises(NotFound):
            call("dogs")
    with pytest.raises(NotFound):
        add(store, "dogs", unit(1))
    with pytest.raises(NotFound):
        search(store, "dogs", unit(1))


@pytest.mark.parametrize("name", ["", "a" * 65, "my-library", "cats!", "two words", "a/b", "☃", "x²", "e\u0301\u0301"])
def test_bad_library_names_are_refused(store, name):
    with pytest.raises(BadRequest) as refused:
        store.create_library(name, VERSION)
    assert refused.value.code == "invalid_library_name"
    assert "name:" in refused.value.message


def test_name_rule_is_letters_digits_underscore():
    good = ["a", "A" * 64, "商品图库", "Ünïcödé_9", "русский", "ελληνικά", "١٢٣", "_", "日本語_テスト"]
    bad = [
        "",
        "a" * 65,
        "a-b",
        "a.b",
        "a b",
        "a\tb",
        "x²",
        "Ⅻ",
        "½",
        "😀",
        "a\u0301",
        "क्षि",
        "$",
        "a\u200db",
    ]
    assert all(is_library_name(name) for name in good)
    assert not any(is_library_name(name) for name in bad)


def test_names_are_nfc_normalised(store):
    decomposed = unicodedata.normalize("NFD", "café")
    created = store.create_library(decomposed, VERSION)
    assert created.name == "café"
    assert store.get_library("café").name == "café"
    with pytest.raises(Conflict):
        store.create_library("café", VERSION)


def test_library_quota(make_store):
    store = make_store(max_libraries=2)
    store.create_library("one", VERSION)
    store.create_library("two", VERSION)
    with pytest.raises(QuotaExceeded) as full:
        store.create_library("three", VERSION)
    assert full.value.code == "library_quota_exceeded" and "2 libraries" in full.value.message
    store.delete_library("one")
    store.create_library("three", VERSION)


def test_image_quota(make_store):
    store = make_store(max_images_per_library=3)
    store.create_library("small", VERSION)
    for seed in range(3):
        assert isinstance(add(store, "small", unit(seed)), Added)
    with pytest.raises(QuotaExceeded) as full:
        add(store, "small", unit(10))
    assert full.value.code == "image_quota_exceeded" and "3 images" in full.value.message
    # a near-duplicate is still answered (nothing would be added)
    assert isinstance(add(store, "small", unit(0), dedup=Dedup(0.97)), Duplicate)
    assert store.get_library("small").image_count == 3


def test_add_get_delete_image(store):
    store.create_library("lib", VERSION)
    metadata = {"color": "红", "price": 59.5, "stock": 3, "new": True, "tags": ["a", "b"], "info": {"x": None}}
    before = time.time()
    added = add(store, "lib", unit(1), image_id="sku-1.jpg", metadata=metadata)
    assert added == Added("sku-1.jpg", None)
    image = store.get_image("lib", "sku-1.jpg")
    assert image.metadata == metadata and before - 1 <= image.create_time <= time.time() + 1
    generated = add(store, "lib", unit(2))
    assert re.fullmatch(r"[0-9a-f]{32}", generated.id)
    assert store.get_image("lib", generated.id).metadata == {}
    assert store.get_library("lib").image_count == 2
    store.delete_image("lib", "sku-1.jpg")
    with pytest.raises(NotFound) as gone:
        store.get_image("lib", "sku-1.jpg")
    assert gone.value.code == "image_not_found"
    with pytest.raises(NotFound):
        store.delete_image("lib", "sku-1.jpg")
    assert store.get_library("lib").image_count == 1
    assert [match.id for match in search(store, "lib", unit(1), top_k=5)] == [generated.id]


def test_an_existing_id_is_a_conflict_and_nothing_changes(store):
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), image_id="a", metadata={"v": 1})
    with pytest.raises(Conflict) as taken:
        add(store, "lib", unit(2), image_id="a", metadata={"v": 2})
    assert taken.value.code == "image_exists"
    assert store.get_image("lib", "a").metadata == {"v": 1}
    assert store.get_library("lib").image_count == 1


@pytest.mark.parametrize("image_id", ["", "..", "a/b", "a b", "x" * 129, "a?b"])
def test_bad_image_ids_are_refused(store, image_id):
    store.create_library("lib", VERSION)
    with pytest.raises(BadRequest) as refused:
        add(store, "lib", unit(1), image_id=image_id)
    assert refused.value.code == "invalid_image_id"


def test_dedup(store):
    store.create_library("lib", VERSION)
    original = unit(1)
    first = add(store, "lib", original, image_id="first", metadata={"k": "v"}, dedup=Dedup(0.97))
    assert first == Added("first", None)
    again = add(store, "lib", original, dedup=Dedup(0.97))
    assert isinstance(again, Duplicate)
    assert again.match.id == "first" and again.match.metadata == {"k": "v"}
    assert again.match.score == pytest.approx(1.0, abs=1e-5)
    near = at_cosine(original, 0.96)  # score 0.98
    assert isinstance(add(store, "lib", near, dedup=Dedup(0.97)), Duplicate)
    stricter = add(store, "lib", near, dedup=Dedup(0.99))
    assert isinstance(stricter, Added) and stricter.score == pytest.approx(0.98, abs=1e-4)
    far_vector = at_cosine(original, 0.5)
    far = add(store, "lib", far_vector, dedup=Dedup(0.97))
    closest = max(float(far_vector @ v) for v in (original, near))
    assert isinstance(far, Added) and far.score == pytest.approx((1 + closest) / 2, abs=1e-5)
    assert isinstance(add(store, "lib", original, dedup=None), Added)  # dedup off
    assert store.get_library("lib").image_count == 4


def test_dedup_within_one_call(store):
    store.create_library("lib", VERSION)
    images = [NewImage(unit(1), "a"), NewImage(unit(1), "b"), NewImage(unit(2), "c")]
    results = store.add_images("lib", images, model_version=VERSION, dedup=Dedup(0.97))
    assert [type(result) for result in results] == [Added, Duplicate, Added]
    assert results[1].match.id == "a"
    assert store.get_library("lib").image_count == 2


def test_search_is_exact_and_ordered(store):
    store.create_library("lib", VERSION)
    vectors = np.stack([unit(seed) for seed in range(150)])
    store.add_images(
        "lib",
        [NewImage(v, f"img{i}", {"i": i}) for i, v in enumerate(vectors)],
        model_version=VERSION,
        dedup=None,
    )
    for seed in (1000, 1001, 1002):
        query = unit(seed)
        expected = np.argsort(-(vectors @ query))[:10]
        matches = search(store, "lib", query, top_k=10)
        assert [match.id for match in matches] == [f"img{i}" for i in expected]
        scores = (1 + vectors[expected] @ query) / 2
        assert [match.score for match in matches] == pytest.approx(scores.tolist(), abs=1e-5)
        assert matches[0].metadata == {"i": int(expected[0])}
    same = search(store, "lib", vectors[7], top_k=1)[0]
    assert same.id == "img7" and same.score == pytest.approx(1.0, abs=1e-5)


def test_top_k_and_min_score(store):
    store.create_library("lib", VERSION)
    base = unit(1)
    for i, cosine in enumerate([1.0, 0.8, 0.4, 0.0, -0.6]):
        add(store, "lib", at_cosine(base, cosine, seed=i + 10) if cosine < 1 else base, image_id=f"c{i}")
    assert len(search(store, "lib", base, top_k=3)) == 3
    assert len(search(store, "lib", base, top_k=100)) == 5
    kept = search(store, "lib", base, top_k=10, min_score=0.69)  # scores 1.0, 0.9, 0.7, 0.5, 0.2
    assert [match.id for match in kept] == ["c0", "c1", "c2"]
    for top_k in (0, 101):
        with pytest.raises(BadRequest):
            search(store, "lib", base, top_k=top_k)
    with pytest.raises(BadRequest):
        search(store, "lib", base, min_score=1.5)


FILTER_ROWS = [
    {"color": "red", "size": 1, "sale": True, "tags": ["new", "summer"]},
    {"color": "red", "size": 2, "sale": False},
    {"color": "blue", "size": 1, "sale": True, "tags": ["old"]},
    {"color": "red", "size": 1.0, "sale": 1},
    {"color": ["red", "green"], "nested": {"color": "red"}, "size": "1"},
    {"price": 10.5, "tags": [1, 2]},
]

# (filter, the images it keeps), each expectation read from the S3 Vectors documentation (see filter_eval.py).
FILTER_CASES = [
    ({"color": "red"}, ["r0", "r1", "r3", "r4"]),  # a stored list matches by any element
    ({"color": {"$eq": "red"}, "size": 1}, ["r0", "r3"]),  # 1 is 1.0; "1" is not 1
    ({"sale": True}, ["r0", "r2"]),  # true is not 1
    ({"sale": 1}, ["r3"]),
    ({"color": "green"}, ["r4"]),
    ({"color": {"$ne": "red"}}, ["r2", "r5"]),  # a missing key is "not equal"
    ({"size": {"$gt": 1}}, ["r1"]),
    ({"size": {"$gte": 1}}, ["r0", "r1", "r2", "r3"]),  # the string "1" is not a number
    ({"size": {"$lt": 2}}, ["r0", "r2", "r3"]),
    ({"size": {"$lte": 2}, "price": {"$exists": False}}, ["r0", "r1", "r2", "r3"]),
    ({"price": {"$gt": 10, "$lt": 11}}, ["r5"]),
    ({"tags": {"$gte": 2}}, ["r5"]),  # numbers inside a list compare too
    ({"color": {"$in": ["blue", "green"]}}, ["r2", "r4"]),
    ({"tags": {"$in": ["summer", 1]}}, ["r0", "r5"]),
    ({"color": {"$nin": ["red"]}}, ["r2", "r5"]),
    ({"tags": {"$exists": True}}, ["r0", "r2", "r5"]),
    ({"nested": {"$exists": True}}, []),  # nested objects are stored, not filterable
    ({"$or": [{"color": "blue"}, {"price": {"$lte": 10.5}}]}, ["r2", "r5"]),
    ({"$and": [{"color": "red"}, {"sale": {"$ne": True}}]}, ["r1", "r3", "r4"]),
    ({"$or": [{"$and": [{"size": 1}, {"sale": True}]}, {"color": "green"}]}, ["r0", "r2", "r4"]),
    ({"color": {"$startsWith": "re"}}, ["r0", "r1", "r3", "r4"]),  # a list by any element, case-sensitive
    ({"color": {"$startsWith": "Re"}}, []),
    ({"size": {"$startsWith": "1"}}, ["r4"]),  # strings only: 1 is not "1"
    ({}, ["r0", "r1", "r2", "r3", "r4", "r5"]),
]


def test_every_filter_operator_with_the_documented_semantics(store):
    store.create_library("lib", VERSION)
    for i, metadata in enumerate(FILTER_ROWS):
        add(store, "lib", unit(i), image_id=f"r{i}", metadata=metadata)
    query = unit(50)
    operators = set()
    for conditions, expected in FILTER_CASES:
        found = sorted(match.id for match in search(store, "lib", query, top_k=10, filter=conditions))
        assert found == expected, conditions
        operators.update(re.findall(r"\$[a-zA-Z]+", json.dumps(conditions)))
    assert operators == {
        "$eq",
        "$ne",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$in",
        "$nin",
        "$exists",
        "$startsWith",
        "$and",
        "$or",
    }


BAD_FILTERS = [
    ({"nested": {"color": "red"}}, "filter.nested.color"),
    ({"color": ["red"]}, "filter.color"),
    ({"color": None}, "filter.color"),
    ({"price": {"$gt": "10"}}, "filter.price.$gt"),
    ({"price": {"$gt": True}}, "filter.price.$gt"),
    ({"color": {"$in": []}}, "filter.color.$in"),
    ({"color": {"$nin": "red"}}, "filter.color.$nin"),
    ({"color": {"$exists": 1}}, "filter.color.$exists"),
    ({"color": {"$startsWith": ""}}, "filter.color.$startsWith"),
    ({"color": {"$startsWith": 1}}, "filter.color.$startsWith"),
    ({"color": {"$regex": "r.*"}}, "filter.color.$regex"),
    ({"$not": {"color": "red"}}, "filter.$not"),
    ({"$and": []}, "filter.$and"),
    ({"$or": [{"color": "red"}, {"size": {"$lt": [1]}}]}, "filter.$or[1].size.$lt"),
    ({"color": {}}, "filter.color"),
    ({"__imsim__": "x"}, "filter.__imsim__"),
]


@pytest.mark.parametrize(("conditions", "path"), BAD_FILTERS)
def test_a_bad_filter_names_the_operator_and_its_path(store, conditions, path):
    store.create_library("lib", VERSION)
    with pytest.raises(BadRequest) as refused:
        search(store, "lib", unit(1), filter=conditions)
    assert refused.value.code == "invalid_filter"
    assert refused.value.message.startswith(path + ":"), refused.value.message


def nested_filter(levels: int, inner: dict) -> dict:
    for _ in range(levels):
        inner = {"$and": [inner]}
    return inner


def test_the_filter_cost_bound_is_the_same_on_both_stores(store):
    """100 constraints, 8 levels and 100-value lists are searched on either store; the attack's
    10,000 and 49,990 empty filters, and one step past each limit, are refused alike (filters.py)."""
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), image_id="hit", metadata={"color": "red", "size": 3})
    add(store, "lib", unit(2), image_id="miss", metadata={"color": "blue", "size": 3})
    sizes = list(range(100))
    hundred = {"$and": [{"color": "red"}, *[{"size": {"$gte": 1}}] * 98, {"size": {"$in": sizes}}]}
    assert [match.id for match in search(store, "lib", unit(1), filter=hundred)] == ["hit"]
    assert [match.id for match in search(store, "lib", unit(1), filter=nested_filter(7, {"color": "red"}))] == ["hit"]
    refused = {
        "at most 100 constraints": [{"$and": [{}] * 10_000}, {"$and": [{}] * 49_990}, {**hundred, "size": 3}],
        "nested more than 8 levels": [nested_filter(8, {"color": "red"})],
        "a list of 1 to 100": [{"size": {"$in": [*sizes, 100]}}],
    }
    for limit, filters in refused.items():
        for conditions in filters:
            with pytest.raises(BadRequest) as refusal:
                search(store, "lib", unit(1), filter=conditions)
            assert refusal.value.code == "invalid_filter"
            assert limit in refusal.value.message


def test_filter_finds_matches_beyond_the_unfiltered_top_k(store):
    store.create_library("lib", VERSION)
    query = unit(7)
    images = [NewImage(at_cosine(query, 0.9, seed=1000 + i), f"near{i}", {"kind": "near"}) for i in range(30)]
    images.append(NewImage(at_cosine(query, -0.5, seed=77), "far", {"kind": "far"}))
    store.add_images("lib", images, model_version=VERSION, dedup=None)
    assert [match.id for match in search(store, "lib", query, top_k=5, filter={"kind": "far"})] == ["far"]


def test_model_version_is_enforced(store):
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1))
    for call in (
        lambda: store.add_image("lib", unit(2), model_version="other/v2"),
        lambda: store.search("lib", unit(2), model_version="other/v2"),
    ):
        with pytest.raises(Conflict) as refused:
            call()
        assert refused.value.code == "model_version_mismatch"
        assert VERSION in refused.value.message and "other/v2" in refused.value.message
    assert store.get_library("lib").image_count == 1


def test_metadata_limits(store):
    store.create_library("lib", VERSION)
    nested_4k = {"info": {"text": "x" * 4000}}
    assert isinstance(add(store, "lib", unit(1), metadata=nested_4k), Added)  # stored, not filterable
    cases = [
        ({"info": {"text": "x" * 4100}}, "metadata_too_large"),
        ({"caption": "x" * 1600}, "metadata_too_large"),  # filterable part over 1.5 KB
        ({f"k{i}": i for i in range(41)}, "metadata_too_large"),
        ({"__imsim__": "mine"}, "invalid_metadata"),
        ({"": 1}, "invalid_metadata"),
        ({"n": float("nan")}, "invalid_metadata"),
        (["not", "an", "object"], "invalid_metadata"),
    ]
    for metadata, code in cases:
        with pytest.raises(BadRequest) as refused:
            add(store, "lib", unit(2), metadata=metadata)
        assert refused.value.code == code, metadata
        assert refused.value.message.startswith("metadata")
    assert store.get_library("lib").image_count == 1


def test_deleting_a_library_deletes_its_images(store):
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), image_id="a")
    store.delete_library("lib")
    store.create_library("lib", VERSION)
    assert store.get_library("lib").image_count == 0
    assert search(store, "lib", unit(1)) == []
    with pytest.raises(NotFound):
        store.get_image("lib", "a")


def test_concurrent_duplicates_add_exactly_one(store):
    """The dedup check and the insert are one step: 8 writers of one image leave one copy."""
    store.create_library("lib", VERSION)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: add(store, "lib", unit(5), dedup=Dedup(0.97)), range(8)))
    assert sum(isinstance(result, Added) for result in results) == 1
    assert store.get_library("lib").image_count == 1


@pytest.mark.slow
def test_concurrent_distinct_adds_are_all_kept(store):
    store.create_library("lib", VERSION)

    def writer(client: int) -> list[str]:
        return [add(store, "lib", unit(client * 100 + i), image_id=f"c{client}-{i}").id for i in range(15)]

    with ThreadPoolExecutor(8) as pool:
        ids = [image_id for batch in pool.map(writer, range(8)) for image_id in batch]
    assert len(set(ids)) == 120
    assert store.get_library("lib").image_count == 120
    for client in range(8):
        assert search(store, "lib", unit(client * 100 + 3), top_k=1)[0].id == f"c{client}-3"


def test_data_survives_reopening(make_store):
    first = make_store()
    first.create_library("lib", VERSION)
    add(first, "lib", unit(1), image_id="a", metadata={"k": 1})
    add(first, "lib", unit(2), image_id="b")
    first.delete_image("lib", "b")
    first.close()
    second = make_store()
    assert second.get_library("lib").image_count == 1
    assert second.get_image("lib", "a").metadata == {"k": 1}
    assert search(second, "lib", unit(1), top_k=1)[0].id == "a"


# --- the S3 Vectors store only -----------------------------------------------------------


@pytest.fixture
def s3_store(aws):
    vectors, dynamodb, fake = aws
    settings = Settings(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE)
    return S3VectorsStore(settings, DIM, s3vectors=vectors, dynamodb=dynamodb), fake


def test_s3_index_names_are_valid_and_mapped_in_the_registry(s3_store, aws):
    store, fake = s3_store
    store.create_library("商品图库", VERSION)
    created, files = fake.operations("CreateIndex")
    for index in (created, files):
        assert INDEX_NAME.match(index["indexName"]) and len(index["indexName"]) <= 63
    assert (created["dataType"], created["dimension"], created["distanceMetric"]) == ("float32", DIM, "cosine")
    assert files["indexName"] == created["indexName"] + "-files" and files["dimension"] == 1
    item = aws[1].get_item(TableName=TABLE, Key={"name": {"S": "商品图库"}})["Item"]
    assert item["index_name"]["S"] == created["indexName"]
    assert item["files_index"]["S"] == files["indexName"]
    assert item["model_version"]["S"] == VERSION


def test_s3_puts_are_batched_within_the_service_limit(s3_store):
    store, fake = s3_store
    store.create_library("bulk", VERSION)
    images = [NewImage(unit(seed), f"i{seed}") for seed in range(1201)]
    results = store.add_images("bulk", images, model_version=VERSION, dedup=None)
    assert len(results) == 1201
    assert [len(call["vectors"]) for call in fake.operations("PutVectors")] == [500, 500, 201]
    assert store.get_library("bulk").image_count == 1201
    assert all(len(call["keys"]) <= 100 for call in fake.operations("GetVectors"))


def test_s3_query_pages_are_followed(s3_store):
    store, fake = s3_store
    store.create_library("lib0", VERSION)
    fake.page_size = 3
    vectors = np.stack([unit(seed) for seed in range(40)])
    store.add_images("lib0", [NewImage(v, f"v{i}") for i, v in enumerate(vectors)], model_version=VERSION, dedup=None)
    fake.calls.clear()
    query = unit(500)
    matches = search(store, "lib0", query, top_k=10)
    assert [match.id for match in matches] == [f"v{i}" for i in np.argsort(-(vectors @ query))[:10]]
    pages = fake.operations("QueryVectors")
    assert len(pages) == 4 and [page.get("nextToken") for page in pages] == [None, "3", "6", "9"]


def test_s3_registry_scan_pages_are_followed(s3_store, aws):
    store, _ = s3_store
    store.registry.page_size = 2
    scans = []
    aws[1].meta.events.register("before-call.dynamodb.Scan", lambda params, **_: scans.append(params) and None)
    for i in range(5):
        store.create_library(f"lib{i}", VERSION)
    scans.clear()
    assert len(store.list_libraries()) == 5
    assert len(scans) >= 3


def test_s3_fake_validates_like_the_service(aws, s3_store):
    vectors, _, _ = aws
    store, _ = s3_store
    store.create_library("lib", VERSION)
    index = store.registry.get("lib")["index_name"]
    query = {"vectorBucketName": BUCKET, "indexName": index, "returnDistance": True}
    bad_calls = [
        dict(query, topK=101, queryVector={"float32": unit(1).tolist()}),
        dict(query, topK=1, queryVector={"float32": [0.0] * DIM}),
        dict(query, topK=1, queryVector={"float32": [float("nan")] * DIM}),
        dict(query, topK=1, queryVector={"float32": [1.0] * (DIM + 1)}),
        dict(query, topK=1, queryVector={"float32": unit(1).tolist()}, filter={"a": {"$regex": "x"}}),
        dict(query, indexName="Bad_Name", topK=1, queryVector={"float32": unit(1).tolist()}),
    ]
    for call in bad_calls:
        with pytest.raises(vectors.exceptions.ValidationException):
            vectors.query_vectors(**call)
    with pytest.raises(vectors.exceptions.ValidationException):
        vectors.put_vectors(
            vectorBucketName=BUCKET, indexName=index, vectors=[{"key": "z", "data": {"float32": [0.0] * DIM}}]
        )
    with pytest.raises(vectors.exceptions.ValidationException):
        vectors.put_vectors(
            vectorBucketName=BUCKET,
            indexName=index,
            vectors=[{"key": "big", "data": {"float32": unit(1).tolist()}, "metadata": {"caption": "x" * 2100}}],
        )


def test_s3_a_crashed_writers_lease_expires(aws):
    vectors, dynamodb, _ = aws
    settings = Settings(
        store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE, library_lease_s=0.5, library_wait_s=5
    )
    store = S3VectorsStore(settings, DIM, s3vectors=vectors, dynamodb=dynamodb)
    store.create_library("lib", VERSION)
    crashed = store.registry._acquire("lib")  # taken and never released, as by a crashed function
    assert crashed.owner
    started = time.monotonic()
    assert isinstance(add(store, "lib", unit(1)), Added)
    assert time.monotonic() - started >= 0.3
    impatient = S3VectorsStore(
        settings.replace(library_lease_s=60, library_wait_s=0.3), DIM, s3vectors=vectors, dynamodb=dynamodb
    )
    impatient.registry._acquire("lib")
    with pytest.raises(Overloaded) as busy:
        add(impatient, "lib", unit(2))
    assert busy.value.code == "library_busy" and busy.value.status_code == 503


def test_s3_a_failed_index_delete_keeps_the_library_for_a_retry(s3_store, aws):
    vectors, _, _ = aws
    store, _ = s3_store
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), image_id="kept")
    index = store.registry.get("lib")["index_name"]
    failures = [error("not allowed", code="AccessDeniedException", status=403)]  # not retried by botocore
    vectors.meta.events.register_first(
        "before-call.s3vectors.DeleteIndex", lambda **_: failures.pop() if failures else None
    )
    with pytest.raises(ApiError) as failed:
        store.delete_library("lib")
    assert failed.value.status_code == 502 and "DeleteIndex" in failed.value.message
    assert [library.name for library in store.list_libraries()] == ["lib"]
    assert store.get_image("lib", "kept").id == "kept"  # the index is still there, and still found

    store.delete_library("lib")
    assert store.list_libraries() == []
    assert index not in [found["indexName"] for found in vectors.list_indexes(vectorBucketName=BUCKET)["indexes"]]

    store.create_library("gone", VERSION)  # an index already deleted (a retry after the item delete failed)
    vectors.delete_index(vectorBucketName=BUCKET, indexName=store.registry.get("gone")["index_name"])
    store.delete_library("gone")
    assert store.list_libraries() == []


def test_s3_store_refuses_a_top_k_limit_over_the_service_s(aws):
    vectors, dynamodb, _ = aws
    settings = Settings(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE, max_top_k=101)
    with pytest.raises(ValueError, match="IMSIM_MAX_TOP_K"):
        S3VectorsStore(settings, DIM, s3vectors=vectors, dynamodb=dynamodb)


def test_s3_service_errors_are_502(s3_store):
    store, _ = s3_store
    store.bucket = "missing-bucket"
    with pytest.raises(ApiError) as failed:
        store.create_library("lib", VERSION)
    assert failed.value.status_code == 502 and failed.value.code == "store_error"
    assert "CreateIndex" in failed.value.message


# --- the embedded store only -------------------------------------------------------------


def test_one_process_per_data_directory(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    first = LocalStore(settings, DIM)
    first.create_library("lib", VERSION)
    second = LocalStore(settings, DIM)
    with pytest.raises(ApiError) as locked:
        second.list_libraries()
    assert locked.value.status_code == 503 and locked.value.code == "store_unavailable"
    first.close()
    assert [library.name for library in second.list_libraries()] == ["lib"]
    second.close()


def test_a_failed_open_releases_the_data_directory(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    store = LocalStore(settings, DIM)
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), image_id="a")
    store.close()

    def set_metadata(text: str) -> None:
        db = sqlite3.connect(tmp_path / "libraries.sqlite3", isolation_level=None)
        db.execute("UPDATE images SET metadata = ?", (text,))
        db.close()

    set_metadata("not json")  # loading the library fails
    for attempt in (store, LocalStore(settings, DIM), store):
        with pytest.raises(json.JSONDecodeError):  # the real cause each time, not "in use by another process"
            attempt.list_libraries()
    set_metadata("{}")
    assert [library.name for library in store.list_libraries()] == ["lib"]
    store.close()


def test_the_local_store_opens_lazily(tmp_path):
    folder = tmp_path / "never-used"
    store = open_store(Settings(data_dir=str(folder)), DIM)
    assert isinstance(store, LocalStore) and not folder.exists()
    store.close()
    assert open_store(Settings(store="off"), DIM) is None
    with pytest.raises(ValueError):
        open_store(Settings(store="redis"), DIM)


# --- the library API a catalog team needs: rules, paging, updates, more-like-this, exact duplicates ---


def deep(levels: int) -> dict:
    """Metadata ``levels`` deep, the object itself being level 1 (lists count as levels too)."""
    value: object = "bottom"
    for level in range(levels - 1, 0, -1):
        value = {"down": value} if level % 2 else [value]
    return {"kind": "deep", "down": value}


def test_the_deepest_accepted_metadata_stays_readable_and_searchable(store):
    store.create_library("lib", VERSION)
    accepted = deep(10)
    add(store, "lib", unit(1), image_id="deep", metadata=accepted)
    assert store.get_image("lib", "deep").metadata == accepted
    assert search(store, "lib", unit(1), top_k=1, filter={"kind": "deep"})[0].metadata == accepted
    assert store.list_images("lib").images[0].metadata == accepted
    for call in (
        lambda: add(store, "lib", unit(2), image_id="deeper", metadata=deep(11)),
        lambda: store.update_metadata("lib", "deep", deep(11)),
        lambda: add(store, "lib", unit(2), metadata={"a": [[[[[[[[[[[1]]]]]]]]]]]}),
    ):
        with pytest.raises(BadRequest) as refused:
            call()
        assert refused.value.code == "invalid_metadata"
        assert "nested more than 10 levels deep" in refused.value.message
    assert store.get_library("lib").image_count == 1


def test_metadata_keys_may_not_look_like_operators(store):
    store.create_library("lib", VERSION)
    with pytest.raises(BadRequest) as refused:
        add(store, "lib", unit(1), metadata={"$and": 1})
    assert refused.value.code == "invalid_metadata" and "'$'" in refused.value.message


def test_image_ids_are_nfc_normalised(store):
    store.create_library("lib", VERSION)
    decomposed, composed = unicodedata.normalize("NFD", "café-1"), "café-1"
    assert decomposed != composed
    assert add(store, "lib", unit(1), image_id=decomposed).id == composed
    assert store.get_image("lib", composed).id == composed
    assert store.get_image("lib", decomposed).id == composed
    with pytest.raises(Conflict):
        add(store, "lib", unit(2), image_id=composed)


@pytest.mark.parametrize("name", ["\u3164", "\u115f\u1160", "\uffa0\u3164", "\u200b", "\u3164\u200b"])
def test_names_and_ids_of_only_invisible_characters_are_refused(store, name):
    with pytest.raises(BadRequest) as refused:
        store.create_library(name, VERSION)
    assert refused.value.code == "invalid_library_name"
    store.create_library("lib", VERSION)
    with pytest.raises(BadRequest) as refused:
        add(store, "lib", unit(1), image_id=name)
    assert refused.value.code == "invalid_image_id"


def test_a_hangul_filler_beside_visible_letters_is_still_a_name(store):
    assert store.create_library("한\u3164글", VERSION).name == "한\u3164글"


def all_pages(store, name, limit, between=None) -> list[str]:
    seen, token, page_number = [], None, 0
    while True:
        page = store.list_images(name, limit=limit, next_token=token)
        assert len(page.images) <= limit
        seen.extend(image.id for image in page.images)
        if page.next_token is None:
            return seen
        if between:
            between(page_number)
        token, page_number = page.next_token, page_number + 1


def test_list_images_pages_with_metadata_and_create_time(store):
    store.create_library("lib", VERSION)
    before = time.time()
    store.add_images(
        "lib",
        [NewImage(unit(i), f"img{i:02d}", {"n": i}) for i in range(25)],
        model_version=VERSION,
        dedup=None,
    )
    first = store.list_images("lib", limit=10)
    assert len(first.images) == 10 and first.next_token
    image = first.images[0]
    assert image.metadata == {"n": int(image.id[3:])} and before - 1 <= image.create_time <= time.time() + 1
    assert sorted(all_pages(store, "lib", 10)) == [f"img{i:02d}" for i in range(25)]
    assert len(all_pages(store, "lib", 25)) == 25
    assert store.list_images("lib", limit=1000).next_token is None
    for bad in (0, 1001):
        with pytest.raises(BadRequest) as refused:
            store.list_images("lib", limit=bad)
        assert refused.value.code == "invalid_value"
    with pytest.raises(BadRequest) as refused:
        store.list_images("lib", next_token="not a token!")
    assert refused.value.code == "invalid_next_token"


def test_a_page_token_survives_inserts_and_deletes_between_pages(store):
    """Every image present from the first page to the last is listed exactly once; a deleted one never
    comes back; the token resumes where it left off."""
    store.create_library("lib", VERSION)
    store.add_images("lib", [NewImage(unit(i), f"k{i:03d}") for i in range(40)], model_version=VERSION, dedup=None)
    deleted, inserted = set(), set()

    def write(page_number: int) -> None:
        victim = f"k{39 - page_number:03d}"  # ahead of the cursor
        store.delete_image("lib", victim)
        deleted.add(victim)
        for new_id in (f"a-new{page_number}", f"z-new{page_number}"):  # one behind, one ahead of the cursor
            add(store, "lib", unit(1000 + len(inserted)), image_id=new_id)
            inserted.add(new_id)

    listed = all_pages(store, "lib", 7, between=write)
    assert len(listed) == len(set(listed)), "an image was listed twice"
    kept = {f"k{i:03d}" for i in range(40)} - deleted
    assert kept <= set(listed), kept - set(listed)
    assert not deleted & set(listed)
    assert set(listed) - kept <= inserted


def test_update_metadata_replaces_it_and_keeps_the_vector(store):
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), image_id="sku-1", metadata={"color": "red", "price": 5})
    add(store, "lib", unit(2), image_id="sku-2", metadata={"color": "red"})
    created = store.get_image("lib", "sku-1").create_time
    updated = store.update_metadata("lib", "sku-1", {"color": "blue", "tags": ["a"]})
    assert (updated.id, updated.metadata, updated.create_time) == ("sku-1", {"color": "blue", "tags": ["a"]}, created)
    assert store.get_image("lib", "sku-1").metadata == {"color": "blue", "tags": ["a"]}
    best = search(store, "lib", unit(1), top_k=1)[0]
    assert best.id == "sku-1" and best.score == pytest.approx(1.0, abs=1e-5)
    assert [m.id for m in search(store, "lib", unit(1), filter={"color": "red"})] == ["sku-2"]
    assert [m.id for m in search(store, "lib", unit(1), filter={"tags": "a"})] == ["sku-1"]
    with pytest.raises(NotFound) as missing:
        store.update_metadata("lib", "sku-9", {})
    assert missing.value.code == "image_not_found"
    with pytest.raises(BadRequest):
        store.update_metadata("lib", "sku-1", {"caption": "x" * 1600})
    assert store.get_library("lib").image_count == 2


def test_search_like_a_stored_image_leaves_it_out(store):
    store.create_library("lib", VERSION)
    base = unit(1)
    images = [NewImage(at_cosine(base, c, seed=100 + i), f"n{i}", {"i": i}) for i, c in enumerate((0.9, 0.8, 0.7))]
    store.add_images("lib", [NewImage(base, "sku-1"), *images], model_version=VERSION, dedup=None)
    like = store.search_like("lib", "sku-1", model_version=VERSION, top_k=2).matches
    assert [m.id for m in like] == ["n0", "n1"]
    filtered = store.search_like("lib", "sku-1", model_version=VERSION, filter={"i": {"$gte": 1}}).matches
    assert [m.id for m in filtered] == ["n1", "n2"]
    with pytest.raises(NotFound) as missing:
        store.search_like("lib", "nope", model_version=VERSION)
    assert missing.value.code == "image_not_found"
    with pytest.raises(Conflict):
        store.search_like("lib", "sku-1", model_version="other/v2")


def file_hash(seed: int) -> str:
    return content_hash(f"image file {seed}".encode())


def test_exact_duplicates_are_found_by_content_hash(store):
    store.create_library("lib", VERSION)
    first = add(store, "lib", unit(1), image_id="a", metadata={"m": 1}, dedup=Dedup(0.97), content_hash=file_hash(1))
    assert isinstance(first, Added)
    found = store.find_exact("lib", [file_hash(1), file_hash(2)])
    assert list(found) == [file_hash(1)]
    match = found[file_hash(1)]
    assert (match.id, match.score, match.metadata) == ("a", 1.0, {"m": 1})
    # The same file is refused whatever its vector (no model work is needed to know it).
    again = add(store, "lib", unit(7), image_id="b", dedup=Dedup(0.97), content_hash=file_hash(1))
    assert isinstance(again, Duplicate) and again.exact and again.match.id == "a"
    near = add(store, "lib", unit(1), image_id="c", dedup=Dedup(0.97), content_hash=file_hash(3))
    assert isinstance(near, Duplicate) and not near.exact
    # Within one call: the second copy of a file is an exact duplicate of the first.
    batch = store.add_images(
        "lib",
        [NewImage(unit(10), "d", content_hash=file_hash(4)), NewImage(unit(11), "e", content_hash=file_hash(4))],
        model_version=VERSION,
        dedup=Dedup(0.97),
    )
    assert isinstance(batch[0], Added) and isinstance(batch[1], Duplicate) and batch[1].exact
    assert batch[1].match.id == "d"
    # Dedup off adds the file again; deleting an image frees its file.
    assert isinstance(add(store, "lib", unit(12), image_id="f", content_hash=file_hash(1)), Added)
    store.delete_image("lib", "a")
    store.delete_image("lib", "f")
    assert store.find_exact("lib", [file_hash(1)]) == {}
    assert isinstance(add(store, "lib", unit(1), image_id="g", dedup=Dedup(0.97), content_hash=file_hash(1)), Added)
    with pytest.raises(ValueError):
        add(store, "lib", unit(13), content_hash="not-a-sha256")


def test_add_batch_refuses_bad_items_and_adds_the_rest(store):
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), image_id="taken")
    results = store.add_batch(
        "lib",
        [
            NewImage(unit(2), "ok-1"),
            NewImage(unit(3), "taken"),
            NewImage(unit(4), "bad id!"),
            NewImage(unit(5), "ok-2", {"deep": deep(11)}),
            NewImage(unit(6), "ok-1"),
            NewImage(unit(7), "ok-3"),
        ],
        model_version=VERSION,
        dedup=None,
    )
    kinds = [type(result).__name__ for result in results]
    assert kinds == ["Added", "Refused", "Refused", "Refused", "Refused", "Added"]
    codes = [result.error.code for result in results if isinstance(result, Refused)]
    assert codes == ["image_exists", "invalid_image_id", "invalid_metadata", "image_exists"]
    assert results[2].error.message.startswith("images[2].id")
    assert store.get_library("lib").image_count == 3


def test_s3_filters_go_to_query_vectors_verbatim(s3_store):
    store, fake = s3_store
    store.create_library("lib", VERSION)
    add(store, "lib", unit(1), metadata={"color": "red", "price": 5})
    conditions = {"$or": [{"color": {"$in": ["red", "blue"]}}, {"price": {"$gt": 10}}], "sold": {"$exists": False}}
    search(store, "lib", unit(1), filter=conditions)
    assert fake.operations("QueryVectors")[-1]["filter"] == conditions
    search(store, "lib", unit(1))
    assert "filter" not in fake.operations("QueryVectors")[-1]


def test_s3_a_library_from_before_exact_screening_gets_its_files_index(s3_store, aws):
    store, fake = s3_store
    store.create_library("old", VERSION)
    aws[1].update_item(TableName=TABLE, Key={"name": {"S": "old"}}, UpdateExpression="REMOVE files_index")
    add(store, "old", unit(1), image_id="a", content_hash=file_hash(1))
    item = aws[1].get_item(TableName=TABLE, Key={"name": {"S": "old"}})["Item"]
    assert item["files_index"]["S"].endswith("-files")
    assert store.find_exact("old", [file_hash(1)])[file_hash(1)].id == "a"


def test_s3_every_index_is_made_enhanced_so_filters_apply_before_the_search(s3_store, aws):
    store, fake = s3_store
    store.create_library("new", VERSION)
    (created, _files) = fake.operations("CreateIndex")
    assert fake.modes == {created["indexName"]: "ENHANCED"}  # the files index has no metadata to filter
    add(store, "new", unit(1), image_id="a", metadata={"sku": "AB-1"})
    assert [m.id for m in search(store, "new", unit(1), filter={"sku": {"$startsWith": "AB"}})] == ["a"]
    assert len(fake.operations("UpdateIndexMode")) == 1


def test_s3_a_library_made_before_index_modes_is_made_enhanced_once_when_opened(s3_store, aws):
    store, fake = s3_store
    store.create_library("old", VERSION)
    index = fake.operations("CreateIndex")[0]["indexName"]
    aws[1].update_item(TableName=TABLE, Key={"name": {"S": "old"}}, UpdateExpression="REMOVE index_mode")
    fake.modes[index] = "CLASSIC"  # as in a bucket made before 2026-09-30
    fake.calls.clear()
    with pytest.raises(Exception, match="ENHANCED"):  # what the service answers a CLASSIC index
        aws[0].query_vectors(
            vectorBucketName=BUCKET,
            indexName=index,
            topK=1,
            queryVector={"float32": unit(1).tolist()},
            filter={"sku": {"$startsWith": "A"}},
        )
    assert search(store, "old", unit(1), filter={"sku": {"$startsWith": "A"}}) == []
    search(store, "old", unit(1))
    add(store, "old", unit(2), image_id="b")
    assert fake.modes[index] == "ENHANCED"
    assert [call["indexName"] for call in fake.operations("UpdateIndexMode")] == [index]
    item = aws[1].get_item(TableName=TABLE, Key={"name": {"S": "old"}})["Item"]
    assert item["index_mode"]["S"] == "ENHANCED"


def answer_with(client, operation: str, code: str, status: int):
    """Every call of ``operation`` fails with this AWS error, as the service would answer it."""
    service = client.meta.service_model.endpoint_prefix
    client.meta.events.register_first(f"before-call.{service}.{operation}", lambda **_: error(code, code, status))


@pytest.mark.parametrize(
    ("client", "operation", "code", "status", "expected"),
    [
        (0, "QueryVectors", "TooManyRequestsException", 429, (503, "library_busy")),
        (0, "PutVectors", "ServiceUnavailableException", 503, (503, "library_busy")),
        (0, "QueryVectors", "RequestTimeoutException", 408, (503, "library_busy")),
        (1, "GetItem", "ProvisionedThroughputExceededException", 400, (503, "overloaded")),
        (1, "GetItem", "ThrottlingException", 400, (503, "overloaded")),
        (0, "QueryVectors", "AccessDeniedException", 403, (502, "store_error")),
        (0, "PutVectors", "ValidationException", 400, (502, "store_error")),
        (1, "GetItem", "InternalServerError", 500, (502, "store_error")),
    ],
)
def test_s3_throttling_is_busy_and_every_other_fault_is_a_store_error(
    s3_store, aws, client, operation, code, status, expected
):
    store, _ = s3_store
    store.create_library("lib", VERSION)
    answer_with(aws[client], operation, code, status)
    with pytest.raises(ApiError) as failed:
        if operation == "PutVectors":
            add(store, "lib", unit(1), image_id="a")
        else:
            search(store, "lib", unit(1))
    assert (failed.value.status_code, failed.value.code) == expected
    assert code in failed.value.message


def test_s3_list_images_passes_the_page_size_and_token(s3_store):
    store, fake = s3_store
    store.create_library("lib", VERSION)
    store.add_images("lib", [NewImage(unit(i), f"i{i}") for i in range(5)], model_version=VERSION, dedup=None)
    page = store.list_images("lib", limit=2)
    store.list_images("lib", limit=2, next_token=page.next_token)
    first, second = fake.operations("ListVectors")[-2:]
    assert (first["maxResults"], first["returnMetadata"], "nextToken" in first) == (2, True, False)
    assert second["nextToken"] == "i1"


def test_a_data_directory_from_before_content_hashes_is_upgraded(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    db = sqlite3.connect(folder / "libraries.sqlite3")
    db.executescript(
        "CREATE TABLE libraries (name TEXT PRIMARY KEY, model_version TEXT NOT NULL, dimension INTEGER NOT NULL,"
        " create_time REAL NOT NULL);"
        "CREATE TABLE images (library TEXT NOT NULL, id TEXT NOT NULL, vector BLOB NOT NULL, metadata TEXT NOT NULL,"
        " create_time REAL NOT NULL, UNIQUE (library, id));"
    )
    db.execute("INSERT INTO libraries VALUES ('lib', ?, ?, 1.0)", (VERSION, DIM))
    db.execute("INSERT INTO images VALUES ('lib', 'old', ?, '{}', 2.0)", (unit(1).astype("<f4").tobytes(),))
    db.commit()
    db.close()
    store = LocalStore(Settings(data_dir=str(folder)), DIM)
    try:
        assert store.get_image("lib", "old").create_time == 2.0
        add(store, "lib", unit(2), image_id="new", dedup=Dedup(0.97), content_hash=file_hash(1))
        assert store.find_exact("lib", [file_hash(1)])[file_hash(1)].id == "new"
    finally:
        store.close()


def test_concurrent_adds_of_one_file_add_it_once(store):
    """Requests racing with the same file (each missed it in its pre-check) are screened under the lock."""
    store.create_library("lib", VERSION)

    def adder(client: int):
        vector = unit(500 + client)  # different vectors: only the content hash can tell they are one file
        return add(store, "lib", vector, image_id=f"c{client}", dedup=Dedup(0.97), content_hash=file_hash(9))

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(adder, range(6)))
    added = [result for result in results if isinstance(result, Added)]
    assert len(added) == 1
    assert all(result.exact and result.match.id == added[0].id for result in results if isinstance(result, Duplicate))
    assert store.get_library("lib").image_count == 1


# --- thumbnails --------------------------------------------------------------------------


@pytest.mark.parametrize("keeps", [True, False])
def test_a_library_keeps_thumbnails_when_it_says_so(store, keeps):
    from runtime.libraries.store import NewImage
    from runtime.libraries.thumbnails import make_thumbnail

    pixels = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    thumbnail = make_thumbnail(pixels)
    library = store.create_library("pictures", VERSION, thumbnails=keeps)
    assert library.thumbnails is keeps and store.get_library("pictures").thumbnails is keeps
    image = NewImage(unit(11), "one", {"k": "v"}, "ab" * 32, thumbnail)
    store.add_images("pictures", [image], model_version=VERSION, dedup=None)
    store.update_metadata("pictures", "one", {"k": "w"})  # an update keeps the thumbnail
    if keeps:
        assert store.get_thumbnail("pictures", "one") == thumbnail
    else:
        with pytest.raises(ApiError) as none:
            store.get_thumbnail("pictures", "one")
        assert none.value.code == "thumbnail_not_found"
    with pytest.raises(ApiError) as missing:
        store.get_thumbnail("pictures", "two")
    assert missing.value.code == "image_not_found"


def test_the_default_is_the_store_s(store):
    library = store.create_library("defaults", VERSION)
    assert library.thumbnails is store.thumbnails_by_default


@pytest.mark.parametrize("kind", ["local", "s3vectors"])
def test_a_library_of_a_768_d_model_works_on_both_stores(kind, tmp_path, request):
    """A SigLIP 2 model's 768-d vectors: the S3 Vectors index is created with the model's dimension."""
    dimension, version = 768, "ViT-B-32-SigLIP2-256/webli"
    if kind == "local":
        store = LocalStore(Settings(data_dir=str(tmp_path)), dimension)
    else:
        vectors, dynamodb, fake = request.getfixturevalue("aws")
        settings = Settings(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE)
        store = S3VectorsStore(settings, dimension, s3vectors=vectors, dynamodb=dynamodb)
    try:
        store.create_library("siglip", version)
        if kind == "s3vectors":
            assert fake.operations("CreateIndex")[0]["dimension"] == dimension
        rng = np.random.default_rng(5)
        stored = [v / np.linalg.norm(v) for v in rng.normal(size=(3, dimension)).astype(np.float32)]
        images = [NewImage(vector, f"img-{n}") for n, vector in enumerate(stored)]
        store.add_images("siglip", images, model_version=version, dedup=None)
        found = store.search("siglip", stored[1], model_version=version, top_k=1).matches
        assert found[0].id == "img-1" and found[0].score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ValueError, match="the store holds 768"):  # a 512-d vector does not go into it
            store.add_images("siglip", [NewImage(stored[0][:512], "short")], model_version=version, dedup=None)
    finally:
        store.close()
