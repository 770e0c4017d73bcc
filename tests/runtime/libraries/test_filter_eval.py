"""The local filter evaluator (runtime/libraries/filter_eval.py); the store suite compares it with the
S3 Vectors fake's independent reading."""

from __future__ import annotations

import pytest

from runtime.libraries.filter_eval import matches_filter
from runtime.libraries.filters import check_filter


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
