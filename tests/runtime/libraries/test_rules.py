"""The library rules one by one (the store suite runs them through both stores)."""

from __future__ import annotations

import pytest

from runtime.errors import BadRequest
from runtime.libraries.rules import (
    MAX_METADATA_DEPTH,
    check_filter,
    check_image_id,
    check_library_name,
    check_metadata,
    content_hash,
    filterable_part,
    matches_filter,
)


def nested(levels: int, container: str = "object") -> dict:
    value: object = 1
    for _ in range(levels - 1):
        value = {"k": value} if container == "object" else [value]
    return {"top": value}


def test_content_hash_is_sha256_hex():
    assert content_hash(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("container", ["object", "list"])
def test_metadata_depth_limit_counts_objects_and_lists(container):
    assert check_metadata(nested(MAX_METADATA_DEPTH, container), 10**6)
    with pytest.raises(BadRequest) as refused:
        check_metadata(nested(MAX_METADATA_DEPTH + 1, container), 10**6)
    assert refused.value.code == "invalid_metadata"
    assert refused.value.message.startswith("metadata: nested more than 10 levels deep")


def test_absurd_depth_is_refused_without_recursion():
    value: object = 1
    for _ in range(100_000):
        value = [value]
    with pytest.raises(BadRequest) as refused:
        check_metadata({"a": value}, 10**9)
    assert refused.value.code == "invalid_metadata"


def test_metadata_errors_name_the_item():
    with pytest.raises(BadRequest) as refused:
        check_metadata({"$gt": 1}, 4096, "images[4]")
    assert refused.value.message.startswith("images[4].metadata: key '$gt'")


def test_filterable_part_keeps_scalars_and_lists_of_them():
    metadata = {"a": 1, "b": "x", "c": [1, "y", True], "d": [], "e": [{"f": 1}], "g": {"h": 1}, "i": None}
    assert filterable_part(metadata) == {"a": 1, "b": "x", "c": [1, "y", True]}


def test_names_and_ids_are_nfc_and_need_a_visible_character():
    assert check_library_name("cafe\u0301") == "caf\u00e9"
    assert check_image_id("cafe\u0301") == "caf\u00e9"
    for invisible in ("\u3164", "\u115f", "\u1160\uffa0"):
        with pytest.raises(BadRequest):
            check_library_name(invisible)
        with pytest.raises(BadRequest):
            check_image_id(invisible)


@pytest.mark.parametrize(
    ("metadata", "conditions", "expected"),
    [
        ({"n": 1}, {"n": 1.0}, True),
        ({"n": True}, {"n": 1}, False),
        ({"n": 1}, {"n": True}, False),
        ({"n": "1"}, {"n": {"$gte": 1}}, False),
        ({"n": [3, "a"]}, {"n": {"$gt": 2}}, True),
        ({"n": ["a", "b"]}, {"n": {"$ne": "a"}}, False),
        ({}, {"n": {"$ne": "a"}}, True),
        ({}, {"n": {"$nin": ["a"]}}, True),
        ({}, {"n": {"$in": ["a"]}}, False),
        ({"n": False}, {"n": {"$exists": True}}, True),
        ({"n": {"deep": 1}}, {"n": {"$exists": True}}, False),
        ({"a": 1, "b": 2}, {"$or": [{"a": 2}, {"$and": [{"b": {"$gt": 1}}, {"a": {"$lte": 1}}]}]}, True),
    ],
)
def test_filter_semantics(metadata, conditions, expected):
    assert matches_filter(metadata, check_filter(conditions)) is expected


def test_filter_depth_and_size_are_bounded():
    conditions: dict = {"a": 1}
    for _ in range(9):
        conditions = {"$and": [conditions]}
    with pytest.raises(BadRequest) as refused:
        check_filter(conditions)
    assert "nested more than 8 levels" in refused.value.message
    with pytest.raises(BadRequest) as refused:
        check_filter({f"k{i}": i for i in range(65)})
    assert "at most 64 conditions" in refused.value.message
    assert check_filter(None) == {}
