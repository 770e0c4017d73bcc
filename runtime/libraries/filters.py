"""Filter validation: a ``filter`` is accepted only when every operator, operand and path is valid.

Filters are the S3 Vectors filter language, checked here once for every store: the embedded store
evaluates them (``filter_eval.py``, where their meaning is written down) and the AWS store sends them to
QueryVectors as the caller wrote them. Field operators are ``$eq $ne $gt $gte $lt $lte $in $nin $exists
$startsWith`` on top-level metadata keys, logical ones ``$and $or``. A bad filter is a 400 ``invalid_filter``
naming the operator and its path (``filter.$and[1].price.$gt``).

What a filter may cost is bounded here, the same for both stores (S3 Vectors takes at most 100 constraints
a query): at most ``MAX_FILTER_CONSTRAINTS`` constraints, ``MAX_FILTER_DEPTH`` levels of ``$and`` / ``$or``
and ``MAX_FILTER_LIST`` values in an ``$in`` / ``$nin`` list. A constraint is one operator on one key
(``{"color": "red"}`` is one, ``{"price": {"$gt": 1, "$lt": 9}}`` two) or an empty filter ``{}`` (it
matches everything, but costs a step of the evaluation all the same: ``$and`` of 10,000 of them was the
attack). With every leaf counted and the depth bounded, the local evaluator's work per image is linear in
the constraints; ``filtered_candidates`` bounds the images a local filtered search checks.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import BadRequest
from runtime.libraries.metadata import RESERVED_METADATA_KEY, is_number, is_scalar

MAX_FILTER_CONSTRAINTS = 100
"""Constraints a filter holds at most: S3 Vectors' own limit a query."""
MAX_FILTER_DEPTH = 8
"""Levels of ``$and`` / ``$or`` a filter nests at most."""
MAX_FILTER_LIST = 100
"""Values an ``$in`` / ``$nin`` list holds at most."""
MAX_FILTERED_CANDIDATES = 10_000
"""Images a local filtered search checks at most, best first, before it answers with what passed
(``partial``: fewer than ``top_k`` matches, more may pass further down the ranking)."""
MAX_FILTER_CHECKS = 200_000
"""Constraint checks a local filtered search makes at most: a filter of n constraints checks at most
``MAX_FILTER_CHECKS // n`` images (10,000 up to 20 constraints, 2,000 at 100)."""
COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
FIELD_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$exists", "$startsWith", *COMPARISONS})
LOGICAL_OPERATORS = frozenset({"$and", "$or"})

Filter = dict[str, Any]


def check_filter(conditions: Any, field: str = "filter") -> Filter:
    """The filter as given (``{}`` for none) once every operator, value and path is valid, or a 400
    ``invalid_filter`` naming the operator and its path."""
    if conditions is None:
        return {}
    counter = [0]
    _check_clause(conditions, field, 1, counter)
    checked: Filter = conditions
    return checked


def _check_clause(clause: Any, path: str, depth: int, counter: list[int]) -> None:
    if not isinstance(clause, dict):
        raise invalid_filter(path, "must be a JSON object of metadata key: condition")
    if depth > MAX_FILTER_DEPTH:
        raise invalid_filter(path, f"nested more than {MAX_FILTER_DEPTH} levels of $and / $or")
    if not clause:
        _count_constraint(path, counter)
    for key, value in clause.items():
        where = f"{path}.{key}"
        if not isinstance(key, str):
            raise invalid_filter(where, "keys are strings")
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, list) or not value:
                raise invalid_filter(where, "takes a non-empty list of filters")
            for position, inner in enumerate(value):
                _check_clause(inner, f"{where}[{position}]", depth + 1, counter)
        elif key.startswith("$"):
            raise invalid_filter(where, f"unknown operator; use {', '.join(sorted(LOGICAL_OPERATORS))} here")
        else:
            if key == RESERVED_METADATA_KEY or not key:
                raise invalid_filter(where, "not a metadata key a filter can match")
            _check_condition(value, where, counter)


def _check_condition(condition: Any, path: str, counter: list[int]) -> None:
    operators = condition if isinstance(condition, dict) else {"$eq": condition}
    if not operators:
        raise invalid_filter(path, "an empty condition; give a value or an operator")
    for operator, operand in operators.items():
        where = f"{path}.{operator}" if isinstance(condition, dict) else path
        _count_constraint(where, counter)
        if operator not in FIELD_OPERATORS:
            if operator.startswith("$"):
                raise invalid_filter(where, f"unknown operator; use one of {', '.join(sorted(FIELD_OPERATORS))}")
            raise invalid_filter(where, "nested values are not filterable; filter on top-level metadata keys")
        _check_operand(operator, operand, where)


def _count_constraint(where: str, counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_FILTER_CONSTRAINTS:
        raise invalid_filter(
            where,
            f"a filter takes at most {MAX_FILTER_CONSTRAINTS} constraints (one operator on one key, or an "
            "empty filter, each), as S3 Vectors does",
        )


def _check_operand(operator: str, operand: Any, where: str) -> None:
    if operator in ("$eq", "$ne") and not is_scalar(operand):
        raise invalid_filter(where, "takes a string, number or boolean")
    if operator in COMPARISONS and not is_number(operand):
        raise invalid_filter(where, "takes a number")
    if operator == "$exists" and not isinstance(operand, bool):
        raise invalid_filter(where, "takes true or false")
    if operator == "$startsWith" and (not isinstance(operand, str) or not operand):
        raise invalid_filter(where, "takes a non-empty string")
    if operator in ("$in", "$nin") and (
        not isinstance(operand, list)
        or not 1 <= len(operand) <= MAX_FILTER_LIST
        or not all(is_scalar(item) for item in operand)
    ):
        raise invalid_filter(where, f"takes a list of 1 to {MAX_FILTER_LIST} strings, numbers or booleans")


def filtered_candidates(conditions: Filter) -> int:
    """How many images, at most, a local search checks against this (checked) filter."""
    return min(MAX_FILTERED_CANDIDATES, MAX_FILTER_CHECKS // constraints_of(conditions))


def constraints_of(clause: Filter) -> int:
    """The constraints a checked filter holds, counted as ``check_filter`` counts them."""
    if not clause:
        return 1
    count = 0
    for key, value in clause.items():
        if key in LOGICAL_OPERATORS:
            count += sum(constraints_of(inner) for inner in value)
        else:
            count += len(value) if isinstance(value, dict) else 1
    return count


def invalid_filter(path: str, reason: str) -> BadRequest:
    return BadRequest(f"{path}: {reason}", code="invalid_filter")
