"""Filter validation (runtime/libraries/filters.py)."""

from __future__ import annotations

import pytest

from runtime.errors import BadRequest
from runtime.libraries.filters import (
    MAX_FILTER_CONSTRAINTS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_LIST,
    check_filter,
    constraints_of,
    filtered_candidates,
)


def refusal(conditions) -> str:
    with pytest.raises(BadRequest) as refused:
        check_filter(conditions)
    assert refused.value.code == "invalid_filter"
    return refused.value.message


def nested(levels: int) -> dict:
    conditions: dict = {"a": 1}
    for _ in range(levels):
        conditions = {"$and": [conditions]}
    return conditions


def test_the_limits_are_s3_vectors_own():
    assert (MAX_FILTER_CONSTRAINTS, MAX_FILTER_DEPTH, MAX_FILTER_LIST) == (100, 8, 100)


def test_filter_depth_is_bounded():
    assert check_filter(nested(7)) == nested(7)  # the top level and 7 of $and: 8 levels
    assert refusal(nested(8)).startswith("filter" + ".$and[0]" * 8 + ": nested more than 8 levels")
    assert check_filter(None) == {}


def test_a_filter_holds_at_most_100_constraints():
    hundred = {f"k{i}": i for i in range(100)}
    assert check_filter(hundred) == hundred
    assert check_filter({"a": {"$gt": 1, "$lt": 9}, "$or": [{f"k{i}": i} for i in range(98)]})
    assert "at most 100 constraints" in refusal({f"k{i}": i for i in range(101)})
    assert "at most 100 constraints" in refusal({"a": {"$gt": 1, "$lt": 9}, "$or": [{f"k{i}": i} for i in range(99)]})


@pytest.mark.parametrize("clauses", [101, 10_000, 49_990])
def test_empty_filters_count_as_constraints(clauses):
    """The attack: ``$and`` of 10,000 empty filters passed every check, and cost a step each per image."""
    message = refusal({"$and": [{}] * clauses})
    assert message.startswith("filter.$and[100]: a filter takes at most 100 constraints"), message
    assert check_filter({"$and": [{}] * 100}) == {"$and": [{}] * 100}


def test_in_and_nin_lists_hold_at_most_100_values():
    for operator in ("$in", "$nin"):
        assert check_filter({"a": {operator: list(range(100))}})
        assert "a list of 1 to 100" in refusal({"a": {operator: list(range(101))}})


def test_constraints_are_counted_as_the_check_counts_them():
    assert constraints_of({}) == 1
    assert constraints_of({"a": 1, "b": {"$gt": 1, "$lt": 9}}) == 3
    assert constraints_of({"$and": [{}, {"a": 1}], "$or": [{"$and": [{"b": {"$in": [1, 2]}}]}]}) == 3
    hundred = {"$or": [{}, *[{f"k{i}": i} for i in range(99)]]}
    assert constraints_of(hundred) == 100 and check_filter(hundred)


def test_a_longer_filter_checks_fewer_images():
    assert [filtered_candidates({f"k{i}": i for i in range(n)}) for n in (1, 20, 21, 100)] == [
        10_000,
        10_000,
        9_523,
        2_000,
    ]
