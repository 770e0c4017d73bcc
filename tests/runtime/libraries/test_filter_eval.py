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


STORED_LISTS = [[1, 2.5, "ab", True], ["b", "abc", "a"], [False, 0], [-3, 7], ["x"], [1.0, "1", True, "10"]]
OPERANDS = {
    "$eq": [1, "a", True, 0, "1"],
    "$ne": [1, "a", False],
    "$gt": [0, 2.5, 7],
    "$gte": [2.5, 7, -3],
    "$lt": [0, -3, 1],
    "$lte": [-3, 0, 1],
    "$in": [[1, "a"], [True], ["10", 7], [False, "z"]],
    "$nin": [[1, "a"], ["x"], [0]],
    "$startsWith": ["a", "ab", "abc", "abcd", "1", "x"],
}


def element_wise(values: list, operator: str, operand) -> bool:
    """The documented meaning read element by element: a stored list holds when any element does."""
    numbers = [value for value in values if isinstance(value, int | float) and not isinstance(value, bool)]
    if operator in ("$eq", "$ne"):
        equal = any(value == operand and (isinstance(value, bool) == isinstance(operand, bool)) for value in values)
        return equal if operator == "$eq" else not equal
    if operator in ("$in", "$nin"):
        found = any(element_wise(values, "$eq", choice) for choice in operand)
        return found if operator == "$in" else not found
    if operator == "$startsWith":
        return any(isinstance(value, str) and value.startswith(operand) for value in values)
    compare = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}[operator]
    return any(compare(float(number), float(operand)) for number in numbers)


@pytest.mark.parametrize("values", STORED_LISTS, ids=str)
def test_a_summarised_list_answers_as_its_elements_would(values):
    """Lists are read through one summary (``StoredList``); each operator answers as the walk of the list would."""
    for operator, operands in OPERANDS.items():
        for operand in operands:
            conditions = check_filter({"n": {operator: operand}})
            expected = element_wise(values, operator, operand)
            assert matches_filter({"n": values}, conditions) is expected, (values, operator, operand)
